"""The `custom-scrape` source: polite fetching of pages and PDFs, and main-text extraction."""
