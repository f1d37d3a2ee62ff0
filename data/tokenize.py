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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from data.atomic import atomic_open
from data.documents import read_document_batches
from data.shards import ShardWriter

EOT_TEXT = "<|endoftext|>"
CHUNK_DOCS = 512


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


def tokenizer_info(name: str) -> Tokenizer:
    encoding = get_encoding(name)
    return Tokenizer(name=name, vocab_size=encoding.n_vocab, eot_token=encoding.eot_token)


@dataclass(frozen=True)
class TokenizeSummary:
    n_documents: int
    n_tokens: int
    sha256: str


def _encode_chunk(encoding, ids: list[str], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of every text, each followed by end-of-text, and the documents' split keys."""
    if any(EOT_TEXT in text for text in texts):
        # A document that contains the literal marker must keep it as ordinary text: encode one by one.
        parts = [np.append(np.asarray(encoding.encode_ordinary(t), np.uint32), encoding.eot_token) for t in texts]
        tokens = np.concatenate(parts).astype(np.uint32)
    else:
        joined = EOT_TEXT.join(texts) + EOT_TEXT
        tokens = encoding.encode_to_numpy(joined, allowed_special={EOT_TEXT}).astype(np.uint32, copy=False)
    return tokens, _doc_keys(ids)


def _doc_keys(ids: list[str]) -> np.ndarray:
    """A stable 64-bit key per document id: the train/val split is decided from it, not from order."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little") for i in ids],
        dtype=np.uint64,
    )


def _chunks(docs_path: Path) -> Iterator[tuple[list[str], list[str]]]:
    for batch in read_document_batches(docs_path, batch_size=CHUNK_DOCS):
        yield batch["id"], batch["text"]


def tokenize_documents(
    docs_path: str | Path,
    tokens_path: str | Path,
    index_path: str | Path,
    tokenizer: str = "r50k_base",
    threads: int = 0,
    meta: dict | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TokenizeSummary:
    """Write all documents' tokens to `tokens_path` (shard format) and `index_path` (.npz: ends, keys).

    `on_progress(documents so far)` follows each chunk."""
    encoding = get_encoding(tokenizer)
    info = Tokenizer(tokenizer, encoding.n_vocab, encoding.eot_token)
    threads = threads or os.cpu_count() or 1
    ends: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    offset = 0
    with ShardWriter(tokens_path, info.vocab_size) as writer, ThreadPoolExecutor(threads) as pool:
        # A bounded window of chunks in flight keeps memory flat whatever the dataset size.
        pending: collections.deque[Future] = collections.deque()

        def drain_one() -> None:
            nonlocal offset
            tokens, doc_keys = pending.popleft().result()
            doc_ends = np.flatnonzero(tokens == info.eot_token) + 1
            if doc_ends.size != doc_keys.size:
                raise RuntimeError(f"tokenizer produced {doc_ends.size} documents for {doc_keys.size} in {docs_path}")
            writer.write(tokens)
            ends.append(doc_ends + offset)
            keys.append(doc_keys)
            offset += tokens.size
            if on_progress:
                on_progress(sum(chunk.size for chunk in ends))

        for ids, texts in _chunks(Path(docs_path)):
            pending.append(pool.submit(_encode_chunk, encoding, ids, texts))
            if len(pending) >= 2 * threads:
                drain_one()
        while pending:
            drain_one()
        header = writer.commit(**info.meta, **(meta or {}))
    all_ends = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    with atomic_open(index_path) as handle:
        np.savez(handle, ends=all_ends.astype(np.int64), keys=all_keys)
    return TokenizeSummary(n_documents=int(all_ends.size), n_tokens=int(header["n_tokens"]), sha256=header["sha256"])


def load_index(index_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ends, keys): document i spans tokens [ends[i-1], ends[i]) and has split key keys[i]."""
    with np.load(index_path) as index:
        return index["ends"], index["keys"]
