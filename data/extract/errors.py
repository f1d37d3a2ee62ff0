"""Why a document was skipped: a small fixed vocabulary, so the web source can count skips by reason."""

from __future__ import annotations

ENCRYPTED = "encrypted"  # a PDF that needs a password
NO_TEXT_LAYER = "no-text-layer"  # a PDF of scanned images: there is no text to read without OCR
GARBLED = "garbled"  # text came out, but as symbols from a dozen scripts (a font without a Unicode map)
BROKEN_PDF = "broken-pdf"  # the PDF parser gave up on the file
NOT_PDF = "not-pdf"  # no %PDF- header: the body is something else
NOT_HTML = "not-html"  # binary or compressed bytes where HTML was expected
EMPTY = "empty"  # parsed fine, but no main text
TOO_MANY_PAGES = "too-many-pages"  # over the page cap
TIMEOUT = "timeout"  # over the per-document time limit; the worker was killed
MEMORY = "memory"  # over the worker's memory cap
WORKER_CRASH = "worker-crash"  # the worker died (a segfault in a parser, a kill from outside)
EXTRACTOR_ERROR = "extractor-error"  # an exception the extractors did not anticipate: a bug to report
ANSWER_TOO_LARGE = "answer-too-large"  # the worker's answer is over the pool's cap; the worker was replaced

REASONS = frozenset(
    {ENCRYPTED, NO_TEXT_LAYER, GARBLED, BROKEN_PDF, NOT_PDF, NOT_HTML, EMPTY, TOO_MANY_PAGES, TIMEOUT, MEMORY,
     WORKER_CRASH, EXTRACTOR_ERROR, ANSWER_TOO_LARGE}
)


class ExtractionSkipped(Exception):
    """A document that yields no text, with the reason (one of REASONS) and a detail for the log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; use one of {sorted(REASONS)} from data.extract.errors")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # survives pickling with its two arguments
        return (type(self), (self.reason, self.detail))
