"""The `local-records` source: JSON Lines (.jsonl) and Parquet (.parquet) files, one document per record.

Each record's `text_field` is a document's text; its `id_field` (when given) the document's id, else
`<file name>#<record number>`. Files come from folders (every .jsonl and .parquet under them), files or globs, in
sorted order. A record that is not a JSON object, whose text is missing, empty or not a string, is skipped and
counted with its reason; a text field that no record of a file has is a mistake in the config, and stops the fetch
naming the fields the file's records do have.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data.documents import Document, SkipReport
from data.errors import UserError
from data.local_files import files_fingerprint, find_files
from data.text_cleanup import normalize_newlines

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".parquet")
BATCH_ROWS = 1024  # Parquet rows read at a time: memory stays bounded whatever the file's size


class NoRecordFiles(UserError, FileNotFoundError):
    """The configured locations hold no .jsonl or .parquet file."""


class MissingField(UserError, KeyError):
    """A file's records have no field of the configured name; the message lists the fields they have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RecordsReader:
    """Reads documents from local JSON Lines and Parquet files (module docstring)."""

    def __init__(self, locations: list[str] | None, *, text_field: str = "text", id_field: str | None = None,
                 stage: str = "local-records", exclude: tuple[Path, ...] = ()):
        """`exclude`: folders never read (the data folder: its documents files are Parquet too)."""
        self.locations = list(locations or ())
        self.exclude = tuple(Path(folder).resolve() for folder in exclude)
        self.text_field = text_field
        self.id_field = id_field
        self.stage = stage
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            found = find_files(self.locations, SUFFIXES)
            self._files = [path for path in found if not any(path.is_relative_to(folder) for folder in self.exclude)]
            if len(self._files) < len(found):
                log.warning("stage %r (local-records): %d file(s) under the data folder %s left out (the pipeline's "
                            "own files, not the corpus)", self.stage, len(found) - len(self._files),
                            ", ".join(map(str, self.exclude)))
            if not self._files:
                raise NoRecordFiles(
                    f"stage {self.stage!r} (local-records) found no .jsonl or .parquet files in {self.locations}; "
                    f"give `files:` (folders, files or globs), e.g. --set 'stages.{self.stage}.files=[corpus/*.jsonl]'"
                )
        return self._files

    def fingerprint(self) -> str:
        """Hash of each file's name and bytes (the fields read are in the fetch step's key beside it)."""
        return files_fingerprint(self.files)

    def documents(self, report: SkipReport) -> Iterator[Document]:
        for path in self.files:
            records = _parquet_records(path, self) if path.suffix.lower() == ".parquet" else _jsonl_records(path)
            yield from self._documents_of(path, records, report)

    def _documents_of(self, path: Path, records: Iterator[tuple[int, Any]], report: SkipReport) -> Iterator[Document]:
        had_text = had_id = False
        fields_seen: set[str] = set()
        for number, record in records:
            where = f"{path}:{number}"
            if isinstance(record, _Unreadable):
                report.skip(where, "unreadable", record.reason)
                continue
            if not isinstance(record, dict):
                report.skip(where, "not an object", f"a {type(record).__name__}, not a JSON object")
                continue
            fields_seen.update(record)
            had_id = had_id or (self.id_field in record)
            if self.text_field not in record:
                report.skip(where, "no text field", f"the record has no {self.text_field!r}")
                continue
            had_text = True
            text = record[self.text_field]
            if text is None:
                report.skip(where, "empty", f"{self.text_field!r} is null")
                continue
            if not isinstance(text, str):
                report.skip(where, "not text", f"{self.text_field!r} is a {type(text).__name__}")
                continue
            text = normalize_newlines(text).strip()
            if not text:
                report.skip(where, "empty")
                continue
            yield Document(id=self._id(path, number, record), text=text)
        # A field no record of the file has is the config's mistake, not the data's (checked once the file is read,
        # so a file cut short by n_items is not judged).
        for field, name, had in (("text_field", self.text_field, had_text), ("id_field", self.id_field, had_id)):
            if name is not None and fields_seen and not had:
                raise MissingField(
                    f"stage {self.stage!r} (local-records): the records of {path} have no field {name!r} ({field}); "
                    f"their fields: {', '.join(sorted(fields_seen))}. {_set_hint(self.stage, field)}"
                )

    def _id(self, path: Path, number: int, record: dict[str, Any]) -> str:
        if self.id_field is not None and record.get(self.id_field) not in (None, ""):
            return str(record[self.id_field])
        return f"{path.name}#{number}"


def _set_hint(stage: str, field: str) -> str:
    what = "the one that holds the text" if field == "text_field" else "one of them, or leave it unset (<file>#<n>)"
    if "." in stage:  # `mix.books`: a source of a mixed stage, set in the YAML file (--set addresses stages only)
        mixed, source = stage.split(".", 1)
        return f"Set {field} of the source {source!r} of stage {mixed!r} in the YAML file to {what}"
    return f"Set {field} to {what}: {field}: NAME in the stage, or --set stages.{stage}.{field}=NAME"


class _Unreadable:
    def __init__(self, reason: str):
        self.reason = reason


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, the parsed record) for every non-blank line; a line that is no JSON as _Unreadable."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError alike
                yield number, _Unreadable(f"not JSON: {error}")


def _parquet_records(path: Path, reader: RecordsReader) -> Iterator[tuple[int, Any]]:
    """(row number, {field: value}) with the text and id columns only; a file without either column is the
    config's mistake (MissingField names its columns)."""
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if reader.text_field not in names:
        raise MissingField(
            f"stage {reader.stage!r} (local-records): {path} has no column {reader.text_field!r}; its columns: "
            f"{', '.join(sorted(names)) or 'none'}. {_set_hint(reader.stage, 'text_field')}"
        )
    if reader.id_field is not None and reader.id_field not in names:
        raise MissingField(
            f"stage {reader.stage!r} (local-records): {path} has no column {reader.id_field!r} (id_field); its "
            f"columns: {', '.join(sorted(names))}. {_set_hint(reader.stage, 'id_field')}"
        )
    columns = [reader.text_field] + ([reader.id_field] if reader.id_field is not None else [])
    number = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row
