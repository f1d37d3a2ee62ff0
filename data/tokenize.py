"""Tokenize a documents file with tiktoken into one token file plus a per-document index.

Throughput matters (millions of tokens per second): documents are encoded in chunks on every core
(tiktoken releases the GIL while encoding), and a chunk is joined with `<|endoftext|>` and encoded
in one call, so there is no per-document Python work on the hot path. The output is the same as
encoding each document with `encode_ordinary` and appending the end-of-text token.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from data.atomic import atomic_open
from data.shards import ShardWriter, dtype_for_vocab, read_header, read_shard

EOT_TEXT = "<|endoftext|>"


@dataclass(frozen=True)
class Tokenizer:
    name: str
    vocab_size: int
    eot_token: int

    @property
    def meta(self) -> dict:
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "eot_token": self.eot_token}


def get_encoding(name: str):
    """tiktoken's encoding, with an error that says how to work offline."""
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except ValueError as error:
        raise ValueError(f"unknown tokenizer {name!r}; tiktoken offers {tiktoken.list_encoding_names()}") from error
    except Exception as error:  # requests/urllib errors when the BPE file cannot be downloaded
        raise ConnectionError(
            f"could not load the {name!r} BPE ranks ({type(error).__name__}: {error}). Offline, set "
            "TIKTOKEN_CACHE_DIR to a folder holding tiktoken's cached file (e.g. ../shared/tiktoken)"
        ) from error


_thread_state = threading.local()
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _encoding_pool(threads: int) -> ThreadPoolExecutor:
    """The process's encoding threads (per count asked for): they live as long as the process, so each builds its
    encoding copy (thread_encoding) once, not once per file. Keyed by process id too: a forked child has none of
    its parent's threads and gets pools of its own."""
    key = (os.getpid(), threads)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(threads, f"tokenize-{threads}")
        return _pools[key]


def thread_encoding(name: str):
    """An encoding for the calling thread alone, first used by it.

    tiktoken's pre-tokenizing regex keeps its matching caches in a pool whose first user (a thread) gets a lock-free
    fast path; every other thread goes through the pool's slow path. Measured here (tiktoken 0.14, 4.4M tokens),
    a thread that is not the first user of an encoding encodes 20 % slower (1.18-1.21 s against 0.98-0.99 s).
    So each encoding worker builds its own copy from the shared one's ranks (about 25 ms, once per thread)."""
    encodings = _thread_state.__dict__.setdefault("encodings", {})
    if name not in encodings:
        encodings[name] = copy_of_encoding(get_encoding(name))
    return encodings[name]


def copy_of_encoding(shared):
    """A new encoding with `shared`'s pattern, ranks and special tokens (so the same tokens), whose regex caches
    belong to the first thread that uses it. With a tiktoken lacking these attributes: `shared` itself."""
    import tiktoken

    try:
        # No explicit_n_vocab: encodings with gaps in their ids (cl100k_base) would fail its check.
        return tiktoken.Encoding(shared.name, pat_str=shared._pat_str, mergeable_ranks=shared._mergeable_ranks,
                                 special_tokens=shared._special_tokens)
    except AttributeError:
        return shared


@dataclass(frozen=True)
class TokenizeSummary:
    n_documents: int
    n_tokens: int
    sha256: str


def _encode_chunk(encoding, ids: list[str], texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens of every text, each followed by end-of-text; where each document ends; its split key).

    Runs on a worker thread: besides encoding, the conversions here (numpy releases the GIL on large
    arrays) keep the writer thread free to only hash and write.
    """
    if any(EOT_TEXT in text for text in texts):
        # A document that contains the literal marker must keep it as ordinary text: encode one by one.
        parts = [np.append(np.asarray(encoding.encode_ordinary(t), np.uint32), encoding.eot_token) for t in texts]
        tokens = np.concatenate(parts).astype(np.uint32)
    else:
        joined = EOT_TEXT.join(texts) + EOT_TEXT
        tokens = encoding.encode_to_numpy(joined, allowed_special={EOT_TEXT}).astype(np.uint32, copy=False)
    ends = np.flatnonzero(tokens == encoding.eot_token) + 1
    if ends.size != len(texts):
        raise RuntimeError(f"tokenizer produced {ends.size} documents for {len(texts)} texts")
    return tokens.astype(dtype_for_vocab(encoding.n_vocab)), ends, _doc_keys(ids)


def _doc_keys(ids: list[str]) -> np.ndarray:
    """A stable 64-bit key per document id: the train/val split is decided from it, not from order."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )


def _encode_row_group(tokenizer: str, docs_path: Path, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one row group of the documents file and encode it: reading happens on the workers too, so
    the decompression and the conversion to Python strings are spread over the cores as well."""
    table = pq.ParquetFile(docs_path).read_row_group(index, columns=["id", "text"])
    return _encode_chunk(thread_encoding(tokenizer), table.column("id").to_pylist(), table.column("text").to_pylist())


def row_group_chunks(docs_path: str | Path, per_chunk: int) -> list[range]:
    """The documents file's row groups in contiguous runs of at most `per_chunk`, in order: the chunks a stage's
    tokenization is split into. Concatenated in order their outputs are the whole file's, whatever `per_chunk`."""
    if per_chunk < 1:
        raise ValueError(f"row groups per chunk must be at least 1, got {per_chunk}")
    n_groups = pq.ParquetFile(docs_path).num_row_groups
    return [range(start, min(start + per_chunk, n_groups)) for start in range(0, n_groups, per_chunk)] or [range(0)]


def tokenize_documents(
    docs_path: str | Path,
    tokens_path: str | Path,
    index_path: str | Path,
    tokenizer: str = "r50k_base",
    threads: int = 0,
    meta: dict | None = None,
    on_progress: Callable[[int], None] | None = None,
    row_groups: range | None = None,
) -> TokenizeSummary:
    """Write all documents' tokens to `tokens_path` (shard format) and `index_path` (.npz: ends, keys).

    The documents file's row groups are the units of work (write_documents bounds their size); a few of
    them are in flight at a time, so memory stays flat whatever the dataset size. `on_progress(documents
    so far)` follows each row group. `row_groups`: only those (a chunk, see row_group_chunks); default all."""
    encoding = get_encoding(tokenizer)
    info = Tokenizer(tokenizer, encoding.n_vocab, encoding.eot_token)
    threads = threads or os.cpu_count() or 1
    ends: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    offset = n_docs = 0
    pool = _encoding_pool(threads)
    with ShardWriter(tokens_path, info.vocab_size) as writer:
        pending: collections.deque[Future] = collections.deque()

        def drain_one() -> None:
            nonlocal offset, n_docs
            tokens, doc_ends, doc_keys = pending.popleft().result()
            writer.write(tokens)
            ends.append(doc_ends + offset)
            keys.append(doc_keys)
            offset += tokens.size
            n_docs += doc_keys.size
            if on_progress:
                on_progress(n_docs)

        if row_groups is None:
            row_groups = range(pq.ParquetFile(docs_path).num_row_groups)
        try:
            for index in row_groups:
                pending.append(pool.submit(_encode_row_group, tokenizer, Path(docs_path), index))
                if len(pending) >= 2 * threads:
                    drain_one()
            while pending:
                drain_one()
        finally:  # after a failure, the row groups not started yet leave the shared pool to other files' work
            for future in pending:
                future.cancel()
        header = writer.commit(**info.meta, **(meta or {}))
    all_ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    with atomic_open(index_path) as handle:
        np.savez(handle, ends=all_ends.astype(np.int64), keys=all_keys)
    return TokenizeSummary(n_documents=int(all_ends.size), n_tokens=int(header["n_tokens"]), sha256=header["sha256"])


def merge_token_files(
    parts: list[tuple[Path, Path]], tokens_path: str | Path, index_path: str | Path, meta: dict | None = None
) -> TokenizeSummary:
    """Concatenate chunks' (token file, index) pairs, in the given order, into one token file and index: the same
    bytes tokenize_documents writes for the whole documents file given the same `meta`."""
    if not parts:
        raise ValueError("no chunks to merge")
    first = read_header(parts[0][0])
    info = {key: first[key] for key in ("tokenizer", "vocab_size", "eot_token")}
    ends: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    offset = 0
    with ShardWriter(tokens_path, info["vocab_size"]) as writer:
        for part_tokens, part_index in parts:
            # The chunks' checksums were checked when their records were; reading them again would cost a pass.
            shard = read_shard(part_tokens, verify=False, expect=info)
            for start in range(0, shard.n_tokens, _MERGE_BLOCK):
                writer.write(np.asarray(shard.tokens[start : start + _MERGE_BLOCK]))
            part_ends, part_keys = load_index(part_index)
            ends.append(part_ends + offset)
            keys.append(part_keys)
            offset += shard.n_tokens
        header = writer.commit(**info, **(meta or {}))
    all_ends, all_keys = np.concatenate(ends), np.concatenate(keys)
    with atomic_open(index_path) as handle:
        np.savez(handle, ends=all_ends.astype(np.int64), keys=all_keys)
    return TokenizeSummary(n_documents=int(all_ends.size), n_tokens=int(header["n_tokens"]), sha256=header["sha256"])


_MERGE_BLOCK = 1 << 24  # tokens copied at a time: memory stays flat whatever a chunk's size


def load_index(index_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ends, keys): document i spans tokens [ends[i-1], ends[i]) and has split key keys[i]."""
    with np.load(index_path) as index:
        return index["ends"], index["keys"]
