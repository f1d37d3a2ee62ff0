"""The token shard format: a versioned header the reader checks, then the tokens.

Layout of `train_{stage}_{suffix}.bin` (and every other token file we write):

    bytes 0..7      magic b"CGPTTOK\\0"
    bytes 8..11     format version, little-endian uint32
    bytes 12..15    length N of the JSON metadata, little-endian uint32
    bytes 16..16+N  JSON metadata: n_tokens, dtype, tokenizer, vocab_size, eot_token, sha256 of the
                    token bytes, source fingerprint, ...
    ... zero padding up to HEADER_BYTES (4096), so tokens start page-aligned for np.memmap
    HEADER_BYTES..  n_tokens little-endian uint16 (or uint32 for vocabularies over 65,536)

The header is written last, after every token, and the file is renamed into place only then:
a killed writer leaves a temporary file that no reader opens, never a short `.bin`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.atomic import fsync_dir, remove_stale_tmp, tmp_path_for
from data.errors import UserError

MAGIC = b"CGPTTOK\0"
FORMAT_VERSION = 1
HEADER_BYTES = 4096
_PREFIX = struct.Struct("<8sII")
PREPARE_HINT = (
    "re-run data preparation to regenerate it: python flows/curriculum.py --type <type> (or --config FILE.yaml) "
    "--prepare-only, with the same --data-dir and --set options as the run"
)


class ShardError(UserError, ValueError):
    """A token file is missing parts, damaged or made for another tokenizer; the message says how to fix it."""


class ShardMissing(UserError, FileNotFoundError):
    """A token file is not where the run expects it; the message says how to prepare it again."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass(frozen=True)
class Shard:
    path: Path
    meta: dict[str, Any]
    tokens: np.ndarray  # read-only memmap, shape (n_tokens,)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def sha256(self) -> str:
        return str(self.meta["sha256"])


class ShardWriter:
    """Append token arrays, then `commit(meta)`; nothing appears at `path` before the commit.

    Use as a context manager: leaving the block without a commit (an exception) removes the
    temporary file.
    """

    def __init__(self, path: str | Path, vocab_size: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(self.path)
        self.dtype = dtype_for_vocab(vocab_size)
        self.vocab_size = vocab_size
        self.n_tokens = 0
        self._digest = hashlib.sha256()
        self._tmp = tmp_path_for(self.path)
        self._file = open(self._tmp, "wb")
        self._file.write(b"\0" * HEADER_BYTES)

    def write(self, tokens: np.ndarray) -> None:
        if tokens.size == 0:
            return
        if tokens.dtype != self.dtype:
            if int(tokens.max()) >= self.vocab_size or int(tokens.min()) < 0:
                raise ValueError(f"token id out of range for vocabulary of {self.vocab_size} while writing {self.path}")
            tokens = tokens.astype(self.dtype)
        payload = np.ascontiguousarray(tokens).astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
        self._digest.update(payload)
        self._file.write(payload)
        self.n_tokens += tokens.size

    def commit(self, **meta: Any) -> dict[str, Any]:
        header = {
            "format_version": FORMAT_VERSION,
            "n_tokens": self.n_tokens,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "sha256": self._digest.hexdigest(),
            **meta,
        }
        blob = json.dumps(header, sort_keys=True).encode("utf-8")
        if _PREFIX.size + len(blob) > HEADER_BYTES:
            raise ValueError(f"shard metadata too large ({len(blob)} bytes) for {self.path}")
        self._file.seek(0)
        self._file.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return header

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # after a commit this only finds nothing left to remove


def read_header(path: str | Path, hint: str = PREPARE_HINT) -> dict[str, Any]:
    """The metadata of a token file, after checking magic, version and that the size matches."""
    path = Path(path)
    if not path.is_file():
        raise ShardMissing(f"Dataset file not found: {path}; {hint}")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise ShardError(f"{path} is truncated ({size} bytes, shorter than its {HEADER_BYTES}-byte header); {hint}")
    magic, version, length = _PREFIX.unpack_from(head)
    if magic != MAGIC:
        raise ShardError(f"{path} is not a token shard of this project (bad magic {magic!r}); {hint}")
    if version != FORMAT_VERSION:
        raise ShardError(f"{path} has shard format version {version}, this code reads {FORMAT_VERSION}; {hint}")
    try:
        meta = json.loads(head[_PREFIX.size : _PREFIX.size + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ShardError(f"{path} has an unreadable header; {hint}") from None
    expected = HEADER_BYTES + int(meta["n_tokens"]) * np.dtype(meta["dtype"]).itemsize
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says (padded or appended to)"
        raise ShardError(f"{path} is {what}: {size} bytes, header says {expected}; {hint}")
    return meta


def read_shard(
    path: str | Path,
    *,
    verify: bool = True,
    expect: dict[str, Any] | None = None,
    hint: str = PREPARE_HINT,
) -> Shard:
    """Open a token file as a read-only memmap after checking it.

    `verify` recomputes the SHA-256 of the tokens; `expect` (e.g. tokenizer, vocab_size) must
    match the header, so shards made with another tokenizer are refused.
    """
    path = Path(path)
    meta = read_header(path, hint)
    for key, want in (expect or {}).items():
        if meta.get(key) != want:
            raise ShardError(f"{path} was made with {key}={meta.get(key)!r}, this run expects {want!r}; {hint}")
    tokens = np.memmap(path, dtype=np.dtype(meta["dtype"]).newbyteorder("<"), mode="r", offset=HEADER_BYTES,
                       shape=(int(meta["n_tokens"]),)) if meta["n_tokens"] else np.zeros(0, meta["dtype"])
    if verify:
        digest = hashlib.sha256()
        step = 1 << 24
        for start in range(0, tokens.size, step):
            digest.update(tokens[start : start + step].tobytes())
        if digest.hexdigest() != meta["sha256"]:
            raise ShardError(f"{path} is corrupted: its tokens do not match the checksum in its header; {hint}")
    return Shard(path=path, meta=meta, tokens=tokens)
