"""Typing bodies by their bytes: real pages and PDFs from ../shared, whatever their servers call them."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from data.web.decode import BoundedDecoder
from data.web.sniff import ContentType, sniff

UNTYPED = ContentType("", None)
AS_HTML = ContentType("text/html", None)


def test_every_real_page_is_html_without_a_content_type(shared: Path):
    pages = [p for p in (shared / "corpora" / "web" / "html").rglob("*") if p.is_file()]
    assert len(pages) == 106
    assert {p.name: sniff(p.read_bytes(), UNTYPED).kind for p in pages} == {p.name: "html" for p in pages}


def test_every_real_pdf_is_pdf_whatever_it_is_served_as(shared: Path):
    for pdf in (shared / "corpora" / "web" / "pdf").glob("*.pdf"):
        for served in ("application/octet-stream", "text/html", ""):
            assert sniff(pdf.read_bytes(), ContentType(served, None)).kind == "pdf", (pdf.name, served)


def test_binary_as_html_is_refused_but_a_page_mentioning_pdf_is_not(shared: Path):
    noise = random.Random(3).randbytes(4096)
    assert sniff(noise, AS_HTML).reason == "not-html"
    assert sniff(gzip.compress(b"<html>" * 500), AS_HTML).reason == "not-html"
    page = (shared / "corpora" / "web" / "html" / "readability" / "ars-1.html").read_bytes()
    mentions_pdf = page.replace(b"<title>", b"<title>%PDF-1.7 explained: ", 1)
    assert sniff(mentions_pdf, AS_HTML).kind == "html"
    with_stray_controls = page[:300] + b"\x01\x02" + page[300:]  # pasted junk in a real page
    assert sniff(with_stray_controls, AS_HTML).kind == "html"


def test_utf16_and_utf32_pages_with_bom_are_html(shared: Path):
    hostile = shared / "corpora" / "hostile" / "html"
    for name in ("jsoup-bom_utf16be.html", "jsoup-bom_utf32le.html"):
        assert sniff((hostile / name).read_bytes(), UNTYPED).kind == "html", name


def test_decoder_never_inflates_past_the_room_it_is_given():
    bomb = gzip.compress(b"a" * (20 << 20))
    decoder = BoundedDecoder("gzip")
    out = decoder.feed(bomb, 1000)
    assert len(out) == 1001  # one byte past the cap proves the excess; the rest is never produced
