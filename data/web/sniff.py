"""What a body is: PDF, HTML or something we do not take, from its first bytes as well as its headers.

Servers mislabel: PDFs come as application/octet-stream, images and archives as text/html. The bytes
decide; the header only breaks ties (and picks the charset the extractor starts from).
"""

from __future__ import annotations

from dataclasses import dataclass

SNIFF_BYTES = 1024  # what the WHATWG MIME sniffing standard looks at, and where PDF readers find `%PDF-`
PDF_MAGIC = b"%PDF-"
HTML_TYPES = ("text/html", "application/xhtml+xml")
PDF_TYPES = ("application/pdf", "application/x-pdf")
# Types that may hold a mislabelled page: we look inside before refusing.
SNIFFABLE_TYPES = ("", "application/octet-stream", "text/plain", "application/xml", "text/xml", "binary/octet-stream")
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")  # UTF-32 LE/BE start with the UTF-16 LE / a NUL pair
UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
# Bytes that never occur in text in any ASCII-compatible encoding (WHATWG "binary data bytes").
BINARY_BYTES = frozenset([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
# WHATWG's HTML signatures, checked where a document starts (after a BOM and whitespace) ...
HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font", b"<table",
               b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p", b"<!--")
# ... and these anywhere in the first bytes (after an XML declaration or a comment, say).
HTML_ANYWHERE = (b"<!doctype html", b"<html")
BINARY_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"PK\x03\x04": "a ZIP archive (or docx/epub)",
    b"\x1f\x8b": "gzip data",
    b"RIFF": "a RIFF file (WebP, WAV, AVI)",
}


@dataclass(frozen=True)
class ContentType:
    mime: str  # lower case, no parameters; "" when absent
    charset: str | None


def parse_content_type(header: str | None) -> ContentType:
    if not header:
        return ContentType("", None)
    mime, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("'\"").lower()
    return ContentType(mime.strip().lower(), charset)


@dataclass(frozen=True)
class Sniffed:
    kind: str | None  # "html" or "pdf"; None when refused
    reason: str  # "" when taken; else not-html, not-pdf or unsupported-type
    detail: str


def _has_bom(prefix: bytes) -> bool:
    return prefix.startswith(BOMS) or prefix.startswith(UTF32_BOMS)


def _binary_what(prefix: bytes, charset: str | None) -> str | None:
    """What binary thing the prefix is, or None when it can be text."""
    if _has_bom(prefix) or (charset or "").startswith(("utf-16", "utf-32")):
        return None  # NUL bytes are expected in UTF-16/32 text
    for magic, what in BINARY_MAGIC.items():
        if prefix.startswith(magic):
            return what
    # A few stray control bytes happen in real pages (pasted text); binary data has them everywhere.
    control = sum(byte in BINARY_BYTES for byte in prefix)
    if control > len(prefix) // 100:
        return f"binary data ({control} control bytes in the first {len(prefix)}, which no text encoding uses)"
    return None


def _looks_like_html(prefix: bytes) -> bool:
    for bom in UTF32_BOMS + BOMS:
        if prefix.startswith(bom):
            prefix = prefix[len(bom) :]
            break
    # Dropping NULs reads UTF-16/32 tags as ASCII; other bodies with NULs were refused as binary already.
    head = prefix.replace(b"\x00", b"").lstrip().lower()
    starts = any(head.startswith(mark) and head[len(mark) : len(mark) + 1] in (b" ", b">", b"\t", b"\n", b"\r")
                 for mark in HTML_STARTS if mark != b"<!--") or head.startswith(b"<!--")
    return starts or any(mark in head for mark in HTML_ANYWHERE)


def sniff(prefix: bytes, content_type: ContentType) -> Sniffed:
    """Decide from the first SNIFF_BYTES bytes of a decoded body and its Content-Type."""
    prefix = prefix[:SNIFF_BYTES]
    declared = content_type.mime
    # PDF readers accept junk before the header, but an HTML page may mention "%PDF-" in its head.
    if prefix.lstrip().startswith(PDF_MAGIC) or (PDF_MAGIC in prefix and not _looks_like_html(prefix)):
        return Sniffed("pdf", "", "")
    if declared in PDF_TYPES:
        return Sniffed(None, "not-pdf", f"served as {declared} but has no {PDF_MAGIC!r} header: {prefix[:16]!r}")
    binary = _binary_what(prefix, content_type.charset)
    if binary is not None:
        if declared in HTML_TYPES:
            return Sniffed(None, "not-html", f"served as {declared} but the body is {binary}")
        return Sniffed(None, "unsupported-type", f"served as {declared or 'no type'}; the body is {binary}")
    if declared in HTML_TYPES:
        return Sniffed("html", "", "")
    if declared in SNIFFABLE_TYPES and _looks_like_html(prefix):
        return Sniffed("html", "", "")
    return Sniffed(
        None,
        "unsupported-type",
        f"served as {declared or 'no type'} and not HTML or PDF by its first bytes; "
        "the web source takes HTML pages and PDFs (plain text belongs to a local-files stage)",
    )
