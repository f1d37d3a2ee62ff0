"""PDF text of real files: reading order, hyphenation, running heads, and the typed skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data.extract import ExtractionSkipped, extract_pdf
from data.extract.errors import BROKEN_PDF, ENCRYPTED, GARBLED, NO_TEXT_LAYER, NOT_PDF, TOO_MANY_PAGES


@pytest.fixture(scope="module")
def pdfs(shared: Path) -> Path:
    return shared / "corpora" / "web" / "pdf"


def _skip_reason(path: Path, **kwargs) -> str:
    with pytest.raises(ExtractionSkipped) as caught:
        extract_pdf(path.read_bytes(), **kwargs)
    assert caught.value.detail, "a skip must say why, for the log"
    return caught.value.reason


def test_two_columns_read_in_order_with_hyphenation_undone(pdfs: Path):
    text = extract_pdf((pdfs / "sf-026-latex-multicolumn.pdf").read_bytes())
    # The left column's first paragraph, whole: its lines joined, "adip-/iscing" and "con-/sectetuer" mended.
    assert (
        "Lorem ipsum dolor sit amet, consectetuer adipiscing elit. Ut purus elit, vestibulum ut, placerat ac, "
        "adipiscing vitae, felis. Curabitur dictum gravida mauris. Nam arcu libero, nonummy eget, consectetuer id"
    ) in text
    assert not re.search(r"\w-\n\w", text)
    assert "adip-" not in text and "ﬁ" not in text  # ligatures spelled out
    assert text.index("Abstract") < text.index("Lorem ipsum dolor sit amet")


def test_running_heads_and_page_numbers_are_dropped(pdfs: Path):
    text = extract_pdf((pdfs / "pdfminer-dmca.pdf").read_bytes())  # 18 pages, also empty-password encrypted
    assert "Copyright Office Summary December 1998 Page" not in text
    assert text.count("The Digital Millennium Copyright Act of 1998") <= 1  # was at the top of all 18 pages
    assert "anti-circumvention" in text or "circumvention" in text
    lines = text.split("\n")
    assert not [line for line in lines if re.fullmatch(r"\d{1,3}", line.strip())]


def test_bare_page_numbers_of_a_short_document_are_dropped(pdfs: Path):
    text = extract_pdf((pdfs / "sf-004-pdflatex-4-pages.pdf").read_bytes())
    assert "Hello, here is some text without a meaning." in text
    assert not [p for p in text.split("\n\n") if p.strip().isdigit()]


def test_empty_user_password_opens(pdfs: Path):
    assert "Digital Millennium Copyright Act" in extract_pdf((pdfs / "pdfminer-dmca.pdf").read_bytes())


@pytest.mark.parametrize(
    "name", ["pypdf-crazyones-encrypted-256.pdf", "pypdf-encrypted-file.pdf", "sf-005-libreoffice-writer-password.pdf"]
)
def test_password_protected_files_are_skipped_as_encrypted(pdfs: Path, name):
    assert _skip_reason(pdfs / name) == ENCRYPTED


@pytest.mark.parametrize(
    "name", ["pdfminer-pdf-with-jbig2.pdf", "sf-007-imagemagick-CCITTFax.pdf", "sf-019-grayscale-image.pdf"]
)
def test_image_only_files_are_skipped_as_without_text_layer(pdfs: Path, name):
    assert _skip_reason(pdfs / name) == NO_TEXT_LAYER


def test_scanned_pages_with_an_ocr_layer_keep_their_text(pdfs: Path):
    assert "VICKSBURG" in extract_pdf((pdfs / "pypdf-Seige_of_Vicksburg_Sample_OCR.pdf").read_bytes())


def test_broken_xref_is_recovered_or_skipped_as_broken(pdfs: Path):
    try:
        text = extract_pdf((pdfs / "pypdf-issue-297-broken-xref.pdf").read_bytes())
    except ExtractionSkipped as e:
        assert e.reason == BROKEN_PDF
    else:
        assert text.strip()
    assert _skip_reason(pdfs / "sf-017-unreadable-metadata.pdf") in (BROKEN_PDF, NO_TEXT_LAYER)


def test_font_without_unicode_map_is_skipped_as_garbled(pdfs: Path):
    # pypdf maps these Japanese glyphs to Greek, Bengali, Armenian... code points.
    assert _skip_reason(pdfs / "pdfminer-jo.pdf") == GARBLED


def test_right_to_left_text_survives(pdfs: Path):
    assert "حَبيبي" in extract_pdf((pdfs / "sf-015-arabic-habibi.pdf").read_bytes())


def test_page_cap(pdfs: Path):
    assert _skip_reason(pdfs / "sf-009-GeoTopo-komprimiert.pdf", max_pages=100) == TOO_MANY_PAGES


def test_bytes_that_are_not_a_pdf(shared: Path):
    assert _skip_reason(shared / "corpora" / "hostile" / "pdf" / "pypdf-lzw_decoder_table_overflow.bin") == NOT_PDF


def test_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown skip reason"):
        ExtractionSkipped("too-ugly", "")
