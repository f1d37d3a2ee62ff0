"""Extraction that hostile input cannot crash, hang or exhaust: each document goes to a worker process with a
wall-clock limit (the worker is killed and replaced on timeout), an address-space cap and a PDF page cap.

Workers are fresh interpreters (`python -m data.extract.worker`) started lazily, not forks: the parent may hold
torch, Prefect and threads, none of which a fork copies safely, and a fresh interpreter that imports only the
extractors starts in a fraction of a second (bench/bench_extract.py prints the figure). Requests and answers cross a
pipe as length-prefixed JSON and bytes; no pickle comes back from a process that has parsed hostile input, and an
answer whose length prefix is over the pool's cap is refused before it is read. Workers get a minimal environment
(locale, PATH, temp folder): nothing of the parent's API URLs, tokens or keys is there for hostile input to find.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from data.extract.errors import (
    ANSWER_TOO_LARGE,
    EMPTY,
    MEMORY,
    NOT_HTML,
    REASONS,
    TIMEOUT,
    WORKER_CRASH,
    ExtractionSkipped,
)

KINDS = ("html", "pdf")
_HEADER = struct.Struct("!Q")  # length of the frame that follows
_SNIFF = 4096
_CONTROL = bytes(range(0, 9)) + bytes(range(14, 32))  # never in text, whatever the encoding (UTF-16/32 aside)
_START_TIMEOUT = 60.0  # importing pypdf on a loaded machine; a worker that cannot start is a bug, not a document
_LOG_TAIL = 600
_LOG_LIMIT = 1 << 20
# Extracted text is at most a few times its body (10 MB HTML, 500 PDF pages); more is a worker gone wrong.
MAX_ANSWER_BYTES = 64 << 20
# What a worker inherits: enough to run Python and decode text, none of the parent's credentials or API URLs.
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT")
_ENV_KEEP_PREFIXES = ("LC_",)


class AnswerTooLarge(ValueError):
    """A frame's length prefix is over the cap; nothing of it was read."""


@dataclass(frozen=True)
class Extracted:
    text: str | None  # None when skipped
    reason: str | None  # skip reason (one of data.extract.errors.REASONS) when text is None
    detail: str  # human-readable detail for the log
    seconds: float


def extract_bytes(
    body: bytes, kind: str, url: str | None = None, charset: str | None = None, max_pdf_pages: int = 500
) -> str:
    """Main text of a fetched body, in this process; raises ExtractionSkipped with the reason it has none.

    `kind` is "html" or "pdf" (the fetcher sniffs it); `charset` is the HTTP header's value for HTML.
    """
    if kind == "pdf":
        from data.extract.pdf import extract_pdf

        text = extract_pdf(body, max_pages=max_pdf_pages)
    elif kind == "html":
        from data.extract.html import extract_html

        _check_looks_like_text(body, charset)
        text = extract_html(body, url, charset=charset)
    else:
        raise ValueError(f"kind={kind!r} is not extractable; use one of {KINDS} (sniff the body: %PDF- is a PDF)")
    if not text.strip():
        raise ExtractionSkipped(EMPTY, "no main text found")
    return text


def _check_looks_like_text(body: bytes, charset: str | None) -> None:
    head = body[:_SNIFF]
    if head.startswith(b"\x1f\x8b"):
        raise ExtractionSkipped(NOT_HTML, "a gzip stream: undo the Content-Encoding before extraction")
    if head.lstrip().startswith(b"%PDF-"):
        raise ExtractionSkipped(NOT_HTML, "a PDF served as HTML: extract it with kind='pdf'")
    from data.extract.charset import codec_for, sniff_bom

    wide = sniff_bom(head)[0] or codec_for(charset) or ""
    if wide.startswith(("utf-16", "utf-32")):
        return  # NUL bytes are expected there
    control = len(head) - len(head.translate(None, _CONTROL))
    if control > len(head) // 100:
        raise ExtractionSkipped(NOT_HTML, f"{control} control bytes in the first {len(head)}: binary, not a page")


class ExtractionPool:
    """Runs extract_bytes() in worker processes; never raises for a bad document, returns Extracted instead.

    Use as a context manager. Thread-safe: each call borrows one of `workers` workers, so up to that many
    documents are extracted at once and further callers wait their turn.
    """

    def __init__(self, timeout: float = 30.0, memory_mb: int = 1024, max_pdf_pages: int = 500, workers: int = 1,
                 max_answer_bytes: int = MAX_ANSWER_BYTES):
        if timeout <= 0 or memory_mb <= 0 or max_pdf_pages <= 0 or workers <= 0 or max_answer_bytes <= 0:
            raise ValueError(
                f"ExtractionPool needs positive limits, got timeout={timeout}, memory_mb={memory_mb}, "
                f"max_pdf_pages={max_pdf_pages}, workers={workers}, max_answer_bytes={max_answer_bytes}"
            )
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_pdf_pages = max_pdf_pages
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all = [_Worker(memory_mb, max_answer_bytes) for _ in range(workers)]
        for worker in self._all:
            self._idle.put(worker)
        self._closed = threading.Event()

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (they exit when their input closes; stragglers are killed)."""
        self._closed.set()
        for worker in self._all:
            worker.stop()

    def extract(self, body: bytes, kind: str, url: str | None = None, charset: str | None = None) -> Extracted:
        if kind not in KINDS and kind not in _TEST_KINDS:
            raise ValueError(f"kind={kind!r} is not extractable; use one of {KINDS}")
        if self._closed.is_set():
            raise RuntimeError("ExtractionPool is closed; create a new one (use it as a `with` block)")
        worker = self._idle.get()
        try:
            request = {
                "kind": kind, "url": url, "charset": charset, "max_pdf_pages": self.max_pdf_pages,
                "timeout": self.timeout,
            }
            return worker.extract(request, body, self.timeout)
        finally:
            self._idle.put(worker)

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for tests and logs)."""
        return [worker.pid for worker in self._all if worker.pid is not None]


# Kinds only the worker knows, to prove the limits with deterministic inputs: the body holds a number.
_TEST_KINDS = ("test-sleep", "test-spin", "test-allocate", "test-crash")


class _Worker:
    """One worker process, started on first use and replaced after it times out, crashes or runs out of memory."""

    def __init__(self, memory_mb: int, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.memory_mb = memory_mb
        self.max_answer_bytes = max_answer_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None  # the worker's stderr, kept to explain a crash

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def extract(self, request: dict, body: bytes, timeout: float) -> Extracted:
        header = json.dumps(request).encode()
        for attempt in (1, 2):
            # A new worker starts before the clock does: a worker's start-up is not the document's time.
            proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
            started = time.monotonic()
            deadline = started + timeout
            try:
                _send(proc.stdin, header, body)
                _receive(proc.stdout, deadline)  # the receipt: from here on the document is the worker's
                break
            except TimeoutError:
                return self._timed_out(timeout, started)
            except (OSError, EOFError, ValueError) as e:
                # Died before taking the document (killed while idle, say): not the document's fault, so a
                # fresh worker gets it once more.
                if attempt == 2:
                    return Extracted(None, WORKER_CRASH, self._death_notice(e), time.monotonic() - started)
                self._kill()
        try:
            answer = _receive(proc.stdout, deadline, self.max_answer_bytes)
        except TimeoutError:
            return self._timed_out(timeout, started)
        except AnswerTooLarge as e:
            # The rest of the frame is still in the pipe: only a fresh worker gives a clean channel.
            self._kill()
            return Extracted(None, ANSWER_TOO_LARGE, f"{e}; worker replaced", time.monotonic() - started)
        except (OSError, EOFError, ValueError) as e:  # the pipe closed: the worker died on this document
            return Extracted(None, WORKER_CRASH, self._death_notice(e), time.monotonic() - started)
        elapsed = time.monotonic() - started
        self._trim_log()
        if answer.get("reason") == MEMORY:
            self._kill()  # a C library that met a failed malloc may be left in any state: start afresh
        if answer.get("text") is not None:
            return Extracted(answer["text"], None, "", elapsed)
        reason = answer.get("reason")
        if reason not in REASONS:
            raise RuntimeError(f"worker answered an unknown reason {reason!r}: a bug in data.extract.worker")
        return Extracted(None, reason, answer.get("detail", ""), elapsed)

    def _trim_log(self) -> None:
        """Keep the stderr file small over a long crawl: only the lines before a crash are of use. The worker
        shares the file's offset, so its next line lands at the start."""
        assert self.log is not None  # _start opened it with the worker that just answered
        fd = self.log.fileno()
        if os.fstat(fd).st_size > _LOG_LIMIT:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def _timed_out(self, timeout: float, started: float) -> Extracted:
        self._kill()
        return Extracted(None, TIMEOUT, f"over the {timeout:g} s limit; worker killed", time.monotonic() - started)

    def _start(self) -> subprocess.Popen[bytes]:
        self._kill()
        root = str(Path(__file__).resolve().parents[2])
        env = worker_environment(os.environ, root)
        self.log = tempfile.TemporaryFile()
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "data.extract.worker", str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, close_fds=True,
        )
        try:
            ready = _receive(proc.stdout, deadline=time.monotonic() + _START_TIMEOUT)
        except (TimeoutError, OSError, EOFError, ValueError) as e:
            detail = self._death_notice(e)
            raise RuntimeError(f"extraction worker failed to start: {detail}") from e
        if "error" in ready:
            self._kill()
            raise RuntimeError(f"extraction worker failed to start: {ready['error']}")
        return proc

    def _death_notice(self, error: Exception) -> str:
        proc = self.proc
        try:
            code = proc.wait(timeout=5) if proc is not None else None
        except subprocess.TimeoutExpired:
            self._kill()
            code = None
        if code is not None and code < 0:
            cause = f"worker died by {signal.Signals(-code).name}"
        elif code is not None:
            cause = f"worker exited with status {code}"
        else:
            cause = f"worker stopped answering ({type(error).__name__})"
        tail = self._log_tail()
        self._kill()
        return f"{cause}; stderr: {tail}" if tail else cause

    def _log_tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - _LOG_TAIL))
        return self.log.read().decode("utf-8", "replace").strip().replace("\n", " | ")

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is None:  # never: _start opens both as pipes
                    continue
                try:
                    pipe.close()
                except OSError:
                    pass  # a broken pipe to a dead process has nothing left to flush
        if self.log is not None:
            self.log.close()
            self.log = None

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                if proc.stdin is not None:  # always, as _start opens it as a pipe
                    proc.stdin.close()  # end of input: the worker's loop returns
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass  # it is killed just below either way
        self._kill()


def worker_environment(parent: Mapping[str, str], root: str) -> dict[str, str]:
    """The allow-listed part of the parent's environment, with the project root on PYTHONPATH."""
    env = {k: v for k, v in parent.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, parent.get("PYTHONPATH")]))
    return env


def _send(pipe, *frames: bytes) -> None:
    for frame in frames:
        pipe.write(_HEADER.pack(len(frame)))
        pipe.write(frame)
    pipe.flush()


def _receive(pipe, deadline: float | None = None, max_bytes: int = MAX_ANSWER_BYTES) -> dict:
    """One JSON frame; TimeoutError past the deadline, EOFError if the other side closed, AnswerTooLarge (nothing
    read past the length prefix) if it announces more than `max_bytes`."""
    size = _HEADER.unpack(_read_exactly(pipe, _HEADER.size, deadline))[0]
    if size > max_bytes:
        raise AnswerTooLarge(f"the worker's answer is {size} bytes, over the cap of {max_bytes} bytes")
    return json.loads(_read_exactly(pipe, size, deadline))


def _read_exactly(pipe, size: int, deadline: float | None) -> bytes:
    fd = pipe.fileno()
    chunks, missing = [], size
    while missing:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the pipe")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
