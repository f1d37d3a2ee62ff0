"""Text of a PDF with pypdf, as paragraphs in reading order, without running heads, page numbers or hyphenation.

pypdf's plain mode follows the content stream, which for typeset documents is reading order: on the two-column
sample it reads the left column, then the right; layout mode interleaves the columns line by line.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections import Counter
from statistics import median

from data.extract.errors import (
    BROKEN_PDF,
    EMPTY,
    ENCRYPTED,
    GARBLED,
    NO_TEXT_LAYER,
    NOT_PDF,
    TOO_MANY_PAGES,
    ExtractionSkipped,
)

# pypdf logs a warning for every oddity it repairs; a crawl of real PDFs would drown the log in them.
logging.getLogger("pypdf").setLevel(logging.ERROR)

_MAGIC_WINDOW = 1024  # the header may follow some junk; readers accept it within the first kilobyte
_EDGE_LINES = 3  # lines at the top and at the bottom of a page where running heads and page numbers sit
_RUNNING_SHARE = 0.4  # on two-sided layouts a running head alternates, so it is on half the pages
# A head that carries the page number ("8 1.2. METRISCHE RÄUME") names the chapter, which lasts a few pages.
_NUMBERED_HEAD = re.compile(r"^\d{1,5}\s|\s\d{1,5}$")
_MIN_RUNNING_PAGES = 3
_PAGE_NUMBER = re.compile(
    r"^[\W_]*(?:(?:page|seite|p\.)\s*)?(?:\d{1,5}|[xvi]{1,6})(?:\s*(?:of|/|von)\s*\d{1,5})?[\W_]*$"
)
_NOT_LETTERS = re.compile(r"[\W\d_]+")
_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_SHORT_LINE = 0.7  # of the typical line length: a line this short ends a paragraph or is a heading
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCRIPT_SAMPLE = 20_000
_MIN_LETTERS_TO_JUDGE = 200
_TOP_SCRIPTS = 4  # Japanese alone uses three (kanji, hiragana, katakana), plus Latin
_TOP_SCRIPTS_SHARE = 0.9


def extract_pdf(data: bytes, *, max_pages: int | None = None) -> str:
    """The text of a PDF, paragraphs separated by a blank line.

    Raises ExtractionSkipped with reason not-pdf, broken-pdf, encrypted (a password is needed; an empty user
    password is tried), too-many-pages (over `max_pages`), empty (no pages), no-text-layer (images only) or
    garbled (a font without a Unicode map turned the text into symbols).
    """
    if b"%PDF-" not in data[:_MAGIC_WINDOW]:
        raise ExtractionSkipped(NOT_PDF, f"no %PDF- header in the first {_MAGIC_WINDOW} bytes (starts {data[:16]!r})")
    pages = _read_pages(data, max_pages)
    page_lines = [_lines(text) for text in pages]
    if not any(line.strip() for lines in page_lines for line in lines):
        raise ExtractionSkipped(NO_TEXT_LAYER, f"{len(pages)} page(s) without text: scanned images need OCR")
    text = "\n\n".join(_paragraphs(_without_running_heads(page_lines)))
    _check_not_garbled(text)
    return _without_lone_surrogates(text)


def _read_pages(data: bytes, max_pages: int | None) -> list[str]:
    # Imported here: the HTML path and the sandbox's parent process never pay for pypdf.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionSkipped(ENCRYPTED, "needs a password (the empty user password does not open it)")
        count = len(reader.pages)
    except (ExtractionSkipped, MemoryError):
        raise
    except DependencyError as e:  # AES, even with an empty password, needs the `cryptography` package
        raise ExtractionSkipped(ENCRYPTED, f"cannot decrypt: {e} (pip install cryptography)") from e
    except FileNotDecryptedError as e:
        raise ExtractionSkipped(ENCRYPTED, str(e)) from e
    except Exception as e:  # pypdf raises its own errors and, on hostile files, KeyError, ValueError, RecursionError...
        raise ExtractionSkipped(BROKEN_PDF, f"{type(e).__name__}: {e}"[:300]) from e
    if count == 0:
        raise ExtractionSkipped(EMPTY, "the PDF has no pages")
    if max_pages is not None and count > max_pages:
        raise ExtractionSkipped(TOO_MANY_PAGES, f"{count} pages, over the cap of {max_pages} (max_pdf_pages)")

    texts, failures = [], []
    for number in range(count):
        try:
            texts.append(reader.pages[number].extract_text() or "")
        except MemoryError:
            raise
        except Exception as e:  # one broken page costs that page, not the document
            failures.append(f"page {number + 1}: {type(e).__name__}: {e}"[:200])
            texts.append("")
    if len(failures) == count:
        raise ExtractionSkipped(BROKEN_PDF, f"no page could be read; {failures[0]}")
    return texts


def _lines(page_text: str) -> list[str]:
    text = page_text.translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n")
    return [" ".join(line.split()) for line in text.split("\n")]


def _without_running_heads(pages: list[list[str]]) -> list[str]:
    """All lines, page after page, less page numbers and running heads and feet.

    A running head is a line at the top or bottom of its page that recurs, digits aside, at the edge of most
    pages (anywhere on a page, once known: content-stream order may put it after the footnotes), or of at least
    three pages when it carries a page number (a chapter's head lasts a few pages).
    """
    edges = [_edge_positions(lines) for lines in pages]
    seen: Counter[str] = Counter()
    for lines, positions in zip(pages, edges, strict=True):
        seen.update({_running_key(lines[i]) for i in positions} - {""})
    everywhere = max(_MIN_RUNNING_PAGES, _RUNNING_SHARE * len(pages))
    out = []
    for lines, positions in zip(pages, edges, strict=True):
        for i, line in enumerate(lines):
            key = _running_key(line)
            pages_seen = seen[key] if key else 0
            if pages_seen >= everywhere:
                continue
            if i in positions and (
                _PAGE_NUMBER.match(line) or pages_seen >= _MIN_RUNNING_PAGES and _NUMBERED_HEAD.search(line)
            ):
                continue
            out.append(line)
        out.append("")  # a page ends a line, never a word; the paragraph joiner decides the rest
    return out


def _edge_positions(lines: list[str]) -> set[int]:
    filled = [i for i, line in enumerate(lines) if line]
    return set(filled[:_EDGE_LINES] + filled[-_EDGE_LINES:])


def _running_key(line: str) -> str:
    # Letters only: the page number inside a head changes from page to page, and odd and even pages put it on
    # either side ("49 THE SIEGE" / "THE SIEGE 50").
    return _NOT_LETTERS.sub("", line.lower())


def _paragraphs(lines: list[str]) -> list[str]:
    """Join lines into paragraphs: a short line ends one, a word hyphenated at a line end is made whole.

    pypdf's plain mode rarely emits blank lines, so line length is the witness: a line well short of the
    typical one is the last of its paragraph or a heading.
    """
    lengths = [len(line) for line in lines if len(line) > 1]
    short = _SHORT_LINE * (median(lengths) if lengths else 0)
    paragraphs: list[str] = []
    current = ""
    last_len = 0
    for line in lines:
        if not line:
            continue
        if current and last_len >= short:
            current = _join(current, line)
        else:
            if current:
                paragraphs.append(current)
            current = line
        last_len = len(line)
    if current:
        paragraphs.append(current)
    return paragraphs


def _join(text: str, line: str) -> str:
    if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[0].isalnum():
        # "exam-" + "ple" is one word; "COVID-" + "19" and "Jean-" + "Paul" keep their hyphen.
        return text[:-1] + line if line[0].islower() else text + line
    if _CJK.match(text[-1]) and _CJK.match(line[0]):
        return text + line  # CJK has no spaces between words
    return f"{text} {line}"


def _without_lone_surrogates(text: str) -> str:
    """A broken ToUnicode map can yield half a UTF-16 pair, which no UTF-8 writer downstream accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def _check_not_garbled(text: str) -> None:
    """A font without a Unicode map yields code points from a dozen scripts (Greek, Bengali, Thaana...) where
    the page shows one or two. Real text keeps almost all its letters in a few scripts."""
    scripts: Counter[str] = Counter()
    for char in text[:_SCRIPT_SAMPLE]:
        if char.isalpha():
            name = unicodedata.name(char, "")
            scripts[name.split(" ", 1)[0]] += 1
    letters = sum(scripts.values())
    if letters < _MIN_LETTERS_TO_JUDGE:
        return
    top = sum(count for _, count in scripts.most_common(_TOP_SCRIPTS))
    if top < _TOP_SCRIPTS_SHARE * letters:
        common = ", ".join(f"{name} {count / letters:.0%}" for name, count in scripts.most_common(6))
        raise ExtractionSkipped(GARBLED, f"letters spread over {len(scripts)} scripts ({common}): no Unicode map")
