"""Main-text extraction of HTML pages and PDFs, and a sandbox that runs it safely on hostile input."""

from data.extract.errors import REASONS, ExtractionSkipped
from data.extract.html import extract_html
from data.extract.pdf import extract_pdf

__all__ = ["REASONS", "ExtractionSkipped", "extract_html", "extract_pdf"]
