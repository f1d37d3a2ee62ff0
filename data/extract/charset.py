"""Decoding an HTML body to text: BOM, then the declared charset checked against the bytes, then detection.

Declarations lie (a page says iso-8859-1 or gb2312 and is UTF-8), so no declaration is trusted on its word:
bytes that are valid UTF-8 and hold non-ASCII text are UTF-8 whatever the page says, because a legacy encoding
almost never yields valid multi-byte UTF-8 sequences by chance; a declared charset that cannot decode the bytes
is dropped in favour of detection.
"""

from __future__ import annotations

import codecs
import re

# Longest first: a UTF-32LE BOM starts with the UTF-16LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels browsers read as a superset (WHATWG Encoding Standard): a page labelled latin-1 uses cp1252's
# curly quotes, one labelled gb2312 uses GBK characters.
_SUPERSETS = {
    "ascii": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gbk",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}

# `<meta charset=x>` and `<meta http-equiv="content-type" content="text/html; charset=x">` alike.
_META = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:+-]{1,40})""", re.IGNORECASE)
_META_WINDOW = 16_384  # the Standard looks at 1,024 bytes; real pages put the tag after long scripts

# Detection is slow on big pages and a sample is as good a witness of the encoding.
_DETECT_SAMPLE = 65_536


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label, or None for labels that are unknown or not text encodings."""
    if not label:
        return None
    try:
        info = codecs.lookup(label.strip().strip("\"'").lower())
    except LookupError:
        return None
    # base64, rot13 and friends are codecs too; a page must not pick one.
    if not getattr(info, "_is_text_encoding", True):
        return None
    name = info.name
    return _SUPERSETS.get(name, name)


def sniff_bom(body: bytes) -> tuple[str | None, int]:
    """(codec, BOM length) when the body starts with a byte-order mark, else (None, 0)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name, len(bom)
    return None, 0


def meta_charset(body: bytes) -> str | None:
    """The codec a `<meta>` tag near the top of the page declares, if any and if known."""
    match = _META.search(body, 0, _META_WINDOW)
    return codec_for(match.group(1).decode("ascii")) if match else None


def decode_html(body: bytes, charset: str | None = None) -> str:
    """The text of an HTML body; `charset` is the HTTP header's value when the fetcher has one."""
    return _decode(body, charset)[0]


def utf8_html(body: bytes, charset: str | None = None) -> bytes:
    """The body as UTF-8 bytes for the parser: the very same object when it already is UTF-8 (most pages), which
    spares the parser a copy; decoded as decode_html() would and re-encoded otherwise."""
    text, unchanged = _decode(body, charset)
    return body if unchanged else text.encode("utf-8", errors="replace")


def _decode(body: bytes, charset: str | None) -> tuple[str, bool]:
    """(text, whether the body's bytes are that text's UTF-8 encoding)."""
    bom_codec, skip = sniff_bom(body)
    if bom_codec:
        return body[skip:].decode(bom_codec, errors="replace"), False

    non_ascii = len(body.translate(None, _ASCII))  # deletes the ASCII bytes
    if non_ascii:
        text = _utf8_strict(body)
        if text is not None:
            return text, True

    for declared, in_header in ((codec_for(charset), True), (meta_charset(body), False)):
        # A UTF-16/32 label in a <meta> is a mistake: we could not have read the tag if it were true. Browsers
        # ignore it too; in the HTTP header it can be right.
        if declared and (in_header or not declared.startswith(("utf-16", "utf-32"))):
            try:
                text = body.decode(declared)
            except UnicodeDecodeError:
                continue  # the label lies; the next witness or detection decides
            # ASCII bytes read through an ASCII-compatible codec are unchanged; ISO-2022-JP's escapes are not.
            return text, not non_ascii and len(text) == len(body) and text.isascii()
    if not non_ascii:
        return body.decode("ascii"), True

    # A UTF-8 page with a few stray legacy bytes (a pasted quote, a truncated tail) is still UTF-8. In a legacy
    # encoding nearly every non-ASCII byte is invalid UTF-8, so the share of invalid bytes tells them apart.
    text = body.decode("utf-8", errors="replace")
    if (text.count("\ufffd") - body.count(_REPLACEMENT_UTF8)) * _STRAY_RATIO <= non_ascii:
        return text, False
    return _detect(body), False


_ASCII = bytes(range(128))
_REPLACEMENT_UTF8 = "\ufffd".encode()
_STRAY_RATIO = 20  # at most 1 invalid byte per 20 non-ASCII bytes


def _utf8_strict(body: bytes) -> str | None:
    """The body as UTF-8 if it is valid, forgiving a character cut in half at the end (a size-capped body)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        return decoder.decode(body, final=False)
    except UnicodeDecodeError:
        return None


def _detect(body: bytes) -> str:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: without it, cp1252 is the web's most common legacy encoding
        best = None
    else:
        best = from_bytes(body[:_DETECT_SAMPLE]).best()
    if best is not None:
        name = codec_for(best.encoding)
        if name:
            return body.decode(name, errors="replace")
    return body.decode("cp1252", errors="replace")
