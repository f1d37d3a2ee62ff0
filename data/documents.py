"""Documents, the source interface every dataset kind implements, and the report of skipped inputs."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from data.atomic import atomic_write_text, fsync_dir, remove_stale_tmp, tmp_path_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    """One unit of text: the train/val split never cuts through a document."""

    id: str
    text: str


@dataclass
class SkipReport:
    """Inputs a source left out, each logged with its reason and counted by reason."""

    source: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, item: str, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < 5:
            bucket.append(item)
        log.warning("skipped %s (%s)%s", item, reason, f": {detail}" if detail else "")

    def note(self, message: str) -> None:
        """Something the user should know that is not a skipped input (e.g. a decoding fallback)."""
        self.notes.append(message)
        log.info(message)

    def as_dict(self) -> dict[str, Any]:
        return {"skipped": dict(self.counts), "examples": self.examples, "notes": self.notes[:50]}


class Source(Protocol):
    """What the fetch step needs from a dataset kind (Hugging Face, local files, web)."""

    def fingerprint(self) -> str | None:
        """A hash of the input content (not of paths), or None when only reading it can tell."""

    def documents(self, report: SkipReport) -> Iterator[Document]:
        """Documents in a fixed order; inputs left out go to `report.skip` with a reason."""


DOCUMENTS_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


@dataclass(frozen=True)
class DocumentsSummary:
    n_documents: int
    n_chars: int
    sha256: str  # of the file's bytes, hashed as they were written


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes the bytes passing through it, so the content hash costs no second read."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self._digest = hashlib.sha256()
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._digest.update(data)
        self._size += len(data)
        return self._handle.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._handle.flush()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def write_documents(
    documents: Iterator[Document],
    path: str | Path,
    n_items: int | None = None,
    rows_per_group: int = 2048,
    on_progress: Callable[[int], None] | None = None,
    chars_per_group: int = 16_000_000,
) -> DocumentsSummary:
    """Stream documents into a Parquet file (id, text), at most `n_items`, in bounded memory.

    A row group closes at `rows_per_group` documents or `chars_per_group` characters, whichever comes
    first: readers (the tokenizer) take a row group at a time. The file appears at `path` only when
    complete; `on_progress(documents so far)` follows each row group.
    """
    path = Path(path)
    return _write_then_rename(documents, path, lambda _: path, n_items, rows_per_group, on_progress, chars_per_group)


def write_documents_by_content(
    documents: Iterator[Document],
    folder: str | Path,
    stem: str = "documents",
    n_items: int | None = None,
    rows_per_group: int = 2048,
    on_progress: Callable[[int], None] | None = None,
    chars_per_group: int = 16_000_000,
) -> tuple[Path, DocumentsSummary]:
    """As `write_documents`, into `<folder>/<stem>-<first 16 hex of its SHA-256>.parquet`: a name that only
    these bytes can have, so two writers (or a cached record and a later run) never share a file."""
    folder = Path(folder)

    def named(sha256: str) -> Path:
        return folder / f"{stem}-{sha256[:16]}.parquet"

    summary = _write_then_rename(
        documents, folder / f"{stem}.parquet", named, n_items, rows_per_group, on_progress, chars_per_group
    )
    return named(summary.sha256), summary


def _write_then_rename(
    documents: Iterator[Document],
    nominal: Path,
    final: Callable[[str], Path],
    n_items: int | None,
    rows_per_group: int,
    on_progress: Callable[[int], None] | None,
    chars_per_group: int,
) -> DocumentsSummary:
    """Write to a temporary sibling of `nominal`, then rename it to `final(sha256 of the bytes)`."""
    nominal.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(nominal)
    tmp = tmp_path_for(nominal)
    n_docs = n_chars = group_chars = 0
    ids: list[str] = []
    texts: list[str] = []
    try:
        with open(tmp, "wb") as handle:
            hashing = _HashingFile(handle)
            with pq.ParquetWriter(hashing, DOCUMENTS_SCHEMA, compression="zstd") as writer:
                for doc in documents:
                    if n_items is not None and n_docs >= n_items:
                        break
                    ids.append(doc.id)
                    texts.append(doc.text)
                    n_docs += 1
                    n_chars += len(doc.text)
                    group_chars += len(doc.text)
                    if len(ids) >= rows_per_group or group_chars >= chars_per_group:
                        writer.write_table(pa.table({"id": ids, "text": texts}, schema=DOCUMENTS_SCHEMA))
                        ids, texts, group_chars = [], [], 0
                        if on_progress:
                            on_progress(n_docs)
                if ids:
                    writer.write_table(pa.table({"id": ids, "text": texts}, schema=DOCUMENTS_SCHEMA))
            handle.flush()
            os.fsync(handle.fileno())
        sha256 = hashing.hexdigest()
        path = final(sha256)
        tmp.replace(path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return DocumentsSummary(n_documents=n_docs, n_chars=n_chars, sha256=sha256)


def write_json(path: str | Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
