"""The extraction worker: `python -m data.extract.worker MEMORY_MB`, started by data.extract.sandbox.

Reads requests (a JSON frame, then the body) on stdin and answers each with one JSON frame on stdout, until
stdin closes. It imports the extractors before capping its address space, so the cap is left for documents.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback

from data.extract.errors import EXTRACTOR_ERROR, MEMORY, ExtractionSkipped
from data.extract.sandbox import _HEADER, _TEST_KINDS, _read_exactly, _send, extract_bytes

# Freed on MemoryError so that reporting it does not fail for want of memory too.
_RESERVE_BYTES = 8 << 20
_CPU_GRACE_SECONDS = 2


def main() -> None:
    memory_mb = int(sys.argv[1])
    # stdout is the answer channel; anything a library prints would corrupt it, so fd 1 goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer

    # Imported before the cap, so that their size is not counted against the documents.
    import pypdf  # noqa: F401

    import data.extract.html  # noqa: F401
    import data.extract.pdf  # noqa: F401
    try:
        import charset_normalizer  # noqa: F401  (optional: detection of undeclared legacy encodings)
    except ImportError:
        pass
    try:
        _cap_memory(memory_mb)
    except ValueError as e:
        _send(answers, json.dumps({"error": str(e)}).encode())
        return
    _send(answers, json.dumps({"ready": os.getpid()}).encode())

    reserve = bytearray(_RESERVE_BYTES)
    while True:
        try:
            request = json.loads(_read_frame(requests))
            body = _read_frame(requests)
            _send(answers, b'{"received": true}')
            _limit_cpu(request["timeout"])
            answer = _handle(request, body)
        except EOFError:
            return  # the pool closed our input: done
        except MemoryError:
            del reserve
            answer = {"reason": MEMORY, "detail": f"over the {memory_mb} MiB memory cap (extract_memory_mb)"}
            _send(answers, _encode(answer))
            return  # the pool starts a fresh worker: C libraries may not recover from a failed malloc
        _send(answers, _encode(answer))


def _encode(answer: dict) -> bytes:
    # Raw UTF-8 rather than \u escapes (6 bytes a CJK character); json.loads(bytes) reads surrogatepass back, so
    # a lone surrogate from a PDF font survives instead of failing the whole answer.
    return json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _handle(request: dict, body: bytes) -> dict:
    kind = request["kind"]
    if kind in _TEST_KINDS:
        return _test_kind(kind, body)
    try:
        text = extract_bytes(body, kind, request.get("url"), request.get("charset"), request["max_pdf_pages"])
    except ExtractionSkipped as e:
        return {"reason": e.reason, "detail": e.detail}
    except MemoryError:
        raise
    except RecursionError as e:
        return {"reason": EXTRACTOR_ERROR, "detail": f"RecursionError in the extractor: {e}"}
    except Exception as e:  # a bug or a parser failure on hostile input: report it with where it happened
        where = "".join(traceback.format_exception(e)[-3:])[-500:]
        return {"reason": EXTRACTOR_ERROR, "detail": f"{type(e).__name__}: {e}; {where}"}
    return {"text": text}


def _test_kind(kind: str, body: bytes) -> dict:
    number = float(body.decode() or 0)
    if kind == "test-sleep":
        time.sleep(number)
    elif kind == "test-allocate":
        block = bytearray(int(number * (1 << 20)))
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    elif kind == "test-spin":
        end = time.process_time() + number
        while time.process_time() < end:
            pass
    elif kind == "test-crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"text": f"{kind} {number:g} done"}


def _limit_cpu(timeout: float) -> None:
    """A backstop for a pool that cannot kill us any more (its process died while we looped on a document):
    the kernel ends this document with SIGXCPU a little after the pool's own wall-clock limit would have."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + timeout) + _CPU_GRACE_SECONDS
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _cap_memory(memory_mb: int) -> None:
    used_mb = _address_space_mb()
    if used_mb is not None and used_mb + 64 > memory_mb:
        raise ValueError(
            f"memory_mb={memory_mb} leaves no room: the worker itself maps {used_mb} MiB before any document; "
            f"set extract_memory_mb to at least {used_mb + 256}"
        )
    limit = memory_mb << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space_mb() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None  # not Linux: the cap is still set, without the early check
    return None


def _read_frame(pipe) -> bytes:
    return _read_exactly(pipe, _HEADER.unpack(_read_exactly(pipe, _HEADER.size, None))[0], None)


if __name__ == "__main__":
    main()
