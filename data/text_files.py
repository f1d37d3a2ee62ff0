"""The `local-files` source: .txt files from folders, files or globs, decoded and cleaned."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from data.documents import Document, SkipReport
from data.errors import UserError
from data.local_files import files_fingerprint, find_files
from data.text_cleanup import UndecodableText, decode_text, normalize_newlines, split_documents, strip_gutenberg

DEFAULT_FILES = ("files",)


class NoTextFiles(UserError, FileNotFoundError):
    """The configured locations hold no .txt file at all."""


def find_text_files(locations: list[str] | tuple[str, ...]) -> list[Path]:
    """Every .txt file under the given folders, files and globs, sorted, without repeats."""
    return find_files(locations, (".txt",))


class TextFilesReader:
    """Reads local .txt files: any of UTF-8, UTF-8 with BOM, UTF-16/32 with BOM, cp1252/ISO-8859-1.

    Each file is stripped of Project Gutenberg boilerplate and split into documents at chapter
    headings or paragraph groups, so the train/val split has documents to choose from.
    """

    def __init__(self, locations: list[str] | None, stage: str = "local-files"):
        self.locations = list(locations or DEFAULT_FILES)
        self.stage = stage
        self._files: list[Path] | None = None

    @property
    def files(self) -> list[Path]:
        if self._files is None:
            self._files = find_text_files(self.locations)
            if not self._files:
                raise NoTextFiles(
                    f"stage {self.stage!r} (local-files) found no .txt files in {self.locations}; "
                    f"put .txt files there (default folder: {DEFAULT_FILES[0]}/) or set "
                    f"`files:` for the stage, e.g. --set stages.{self.stage}.files=[path/to/books]"
                )
        return self._files

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)

    def documents(self, report: SkipReport) -> Iterator[Document]:
        for path in self.files:
            raw = path.read_bytes()
            if not raw.strip():
                report.skip(str(path), "empty")
                continue
            try:
                decoded = decode_text(raw)
            except UndecodableText as error:
                report.skip(str(path), "undecodable", str(error))
                continue
            if decoded.fallback:
                report.note(f"{path.name}: not valid UTF-8, decoded as {decoded.encoding}")
            text, stripped = strip_gutenberg(normalize_newlines(decoded.text))
            if stripped:
                report.note(f"{path.name}: Project Gutenberg header and footer removed")
            parts = split_documents(text)
            if not parts:
                report.skip(str(path), "empty", "no text left after cleaning")
                continue
            for index, part in enumerate(parts):
                yield Document(id=f"{path.name}#{index}", text=part)
