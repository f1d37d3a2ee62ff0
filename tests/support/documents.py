"""Documents files written around write_documents, for tests that need row groups of their own making."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curriculum.prepare import DocumentsRecord


def documents_file(path: Path, groups: list[list[str | None]], stage: str = "web") -> DocumentsRecord:
    """A documents file with these row groups (a text may be missing: None), and its record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("text", pa.string())])) as writer:
        for number, texts in enumerate(groups):
            writer.write_table(pa.table({"id": [f"{number}-{i}" for i in range(len(texts))], "text": texts}))
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return DocumentsRecord(stage=stage, path=path, sha256=sha256, n_documents=sum(map(len, groups)), n_chars=0,
                           skipped={}, notes=[])
