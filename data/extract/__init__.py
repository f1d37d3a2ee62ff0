"""Main-text extraction of HTML pages and PDFs, and a sandbox that runs it safely on hostile input."""

from data.extract.html import extract_html

__all__ = ["extract_html"]
