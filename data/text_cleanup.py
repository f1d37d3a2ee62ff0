"""Turning messy real-world text files into clean documents: decoding, Gutenberg boilerplate, splitting."""

from __future__ import annotations

import re
from dataclasses import dataclass

from data.extract.charset import sniff_bom


class UndecodableText(ValueError):
    """Bytes that are not text in any encoding we accept (e.g. a binary file named .txt)."""


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    fallback: bool  # True when the bytes were not UTF-8 and a legacy encoding was assumed


def decode_text(raw: bytes) -> Decoded:
    """Decode a text file: BOM, else strict UTF-8, else cp1252 (a superset of ISO-8859-1's printable range)."""
    encoding, bom_length = sniff_bom(raw)  # a BOM is the one certain statement a file makes about itself
    if encoding:
        return Decoded(raw[bom_length:].decode(encoding), encoding, fallback=False)
    if b"\0" in raw[:8192]:
        raise UndecodableText("NUL bytes without a UTF-16/32 byte-order mark: a binary file, not text")
    try:
        return Decoded(raw.decode("utf-8"), "utf-8", fallback=False)
    except UnicodeDecodeError:
        pass
    try:
        return Decoded(raw.decode("cp1252"), "cp1252", fallback=True)
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; ISO-8859-1 maps every byte.
        return Decoded(raw.decode("latin-1"), "iso-8859-1", fallback=True)


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG EBOOK[^\n]*$", re.I | re.M)
_GUTENBERG_END = re.compile(
    r"^(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG EBOOK|End of (the )?Project Gutenberg)[^\n]*$", re.I | re.M
)
_PRODUCED_BY = re.compile(r"\A\s*(Produced by|E-text prepared by|Transcribed by)[^\n]*(\n[^\n]+)*\n\s*\n", re.I)


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Drop the Project Gutenberg header and footer (licence, credits); returns (body, stripped?)."""
    start = _GUTENBERG_START.search(text)
    if not start:
        return text, False
    body = text[start.end() :]
    end = _GUTENBERG_END.search(body)
    if end:
        body = body[: end.start()]
    body = _PRODUCED_BY.sub("", body, count=1)
    return body.strip("\n"), True


_HEADING = re.compile(
    r"^(CHAPTER|Chapter|BOOK|Book|PART|Part|STAVE|Stave|LETTER|Letter|VOLUME|Volume)\b[^\n]{0,80}$"
    r"|^[IVXLC]+\.(\s[^\n]{0,80})?$"
)
_BLANK_LINES = re.compile(r"\n\s*\n")


def paragraphs(text: str) -> list[str]:
    """Paragraphs with their hard line wraps joined: Gutenberg texts wrap prose at ~70 columns."""
    result = []
    for block in _BLANK_LINES.split(text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if lines:
            result.append(" ".join(lines))
    return result


def split_documents(text: str, min_chars: int = 2000, max_chars: int = 16000) -> list[str]:
    """Split a long text into documents at chapter headings, else into paragraph groups.

    A chapter heading starts a new document once the current one has `min_chars` (so a table of
    contents stays together); no document grows past `max_chars` except a single huge paragraph.
    """
    documents: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in paragraphs(text):
        starts_chapter = bool(_HEADING.match(paragraph)) and size >= min_chars
        if current and (starts_chapter or size + len(paragraph) > max_chars):
            documents.append("\n\n".join(current))
            current, size = [], 0
        current.append(paragraph)
        size += len(paragraph) + 2
    if current:
        documents.append("\n\n".join(current))
    return documents
