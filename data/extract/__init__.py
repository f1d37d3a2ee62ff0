"""Main-text extraction of HTML pages and PDFs, and a sandbox that runs it safely on hostile input."""

from data.extract.errors import REASONS, ExtractionSkipped
from data.extract.html import extract_html
from data.extract.pdf import extract_pdf
from data.extract.sandbox import Extracted, ExtractionPool, extract_bytes

__all__ = [
    "REASONS", "ExtractionSkipped", "Extracted", "ExtractionPool", "extract_bytes", "extract_html", "extract_pdf",
]
