"""What a custom-scrape stage reads: URL lists (with their bad lines) and saved files under `paths:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from curriculum.presets import DEFAULT_URLS_FILE
from data.web.urls import UrlListError, expand_paths, load_url_list


def test_url_file_comments_blanks_fragments_and_bad_lines(tmp_path: Path):
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# my pages\n"
        "\n"
        "https://example.org/a  # a comment after a space\n"
        "https://example.org/b#section\n"
        "   https://example.org/c   \n"
        "file:///etc/passwd\n"
        "ftp://example.org/file.pdf\n"
        "data:text/html,<p>hi</p>\n"
        "example.org/no-scheme\n"
        "https://example.org/a\n"
        "https://example.org/x https://example.org/y\n",
        encoding="utf-8",
    )
    listed = load_url_list(["https://example.org/first"], listing)
    assert listed.urls == [
        "https://example.org/first",
        "https://example.org/a",
        "https://example.org/b",
        "https://example.org/c",
    ]
    reasons = [(bad.item.split(":")[1], bad.reason) for bad in listed.bad]
    assert reasons == [
        ("6", "unsupported-scheme"),
        ("7", "unsupported-scheme"),
        ("8", "unsupported-scheme"),
        ("9", "invalid-url"),
        ("10", "duplicate"),
        ("11", "invalid-url"),
    ]
    assert str(listing) in listed.origin
    assert "https://example.org/no-scheme" in listed.bad[3].detail  # the fix is in the message


def test_missing_url_file_names_it_and_the_fix(tmp_path: Path):
    with pytest.raises(UrlListError, match=r"urls_file .*nope\.txt.* does not exist.*urls_file"):
        load_url_list([], tmp_path / "nope.txt")


def test_default_list_is_all_valid_https():
    listed = load_url_list([], DEFAULT_URLS_FILE)
    assert listed.bad == []
    assert len(listed.urls) >= 10 and all(url.startswith("https://") for url in listed.urls)


def test_paths_take_html_and_pdf_never_txt(shared: Path, tmp_path: Path):
    books = shared / "corpora" / "books"
    page = shared / "corpora" / "web" / "html" / "gutenberg"
    pdf = shared / "corpora" / "web" / "pdf" / "sf-001-minimal-document.pdf"
    files, bad = expand_paths([page, pdf, books, tmp_path / "missing", pdf])
    assert [str(f.path) for f in files] == sorted(str(f.path) for f in files)
    assert {f.kind for f in files} == {"html", "pdf"}
    assert len(files) == len(list(page.iterdir())) + 1  # the PDF listed twice is read once
    reasons = {b.reason for b in bad}
    assert reasons == {"local-txt", "missing-path"}
    assert sum(b.reason == "local-txt" for b in bad) == len(list(books.glob("*.txt")))
