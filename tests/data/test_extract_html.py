"""Main-text extraction of real pages: quality on the dev set, boilerplate gone, charsets right."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from selectolax.lexbor import LexborHTMLParser

from data.extract import extract_html
from data.extract.charset import decode_html
from data.extract.html_settings import DEFAULTS, ExtractionSettings

# The target; measured 0.966 when written, trafilatura 0.925 on the same pages.
F1_FLOOR = 0.93
MOJIBAKE = re.compile(r"Ã[\u0080-\u00bf]|â€|Ð[\u0080-\u00bf]|ï»¿|\ufffd")


@pytest.fixture(scope="module")
def web_html(shared: Path) -> Path:
    return shared / "corpora" / "web" / "html"


def _scorer(shared: Path):
    spec = importlib.util.spec_from_file_location("extract_f1", shared / "tools" / "extract_f1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_set_f1_stays_above_the_target(shared: Path):
    dev = shared / "corpora" / "extraction-dev"
    scorer = _scorer(shared)
    truth = json.loads((dev / "ground-truth.json").read_text(encoding="utf-8"))
    precisions, recalls = [], []
    for page_id, entry in sorted(truth.items()):
        html = gzip.decompress((dev / "html" / f"{page_id}.html.gz").read_bytes())
        scores = scorer.page_scores(entry.get("articleBody", ""), extract_html(html, entry.get("url")))
        if scores:
            precisions.append(scores[0])
            recalls.append(scores[1])
    assert len(precisions) == 124
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    f1 = 2 * p * r / (p + r)
    assert f1 >= F1_FLOOR, f"dev-set F1 {f1:.3f} (precision {p:.3f}, recall {r:.3f}) fell under {F1_FLOOR}"


@pytest.mark.parametrize(
    "page, article, boilerplate",
    [
        (
            "readability/wikipedia.html",
            ["Mozilla is a free-software community", "Mozilla Foundation"],
            ["Navigation menu", "Personal tools", "Privacy policy", "Random article", "Main page"],
        ),
        (
            "trafilatura/theguardian.com.academics.html",
            ["Thousands of UK academics", "Report claims higher education institutions"],
            ["Support The Guardian", "Sign in", "Search jobs", "All rights reserved"],
        ),
        (
            "trafilatura/netzpolitik.org.abmahnungen.html",
            ["Zwei Männer Arm in Arm", "Cider Connection"],
            ["Dossiers & Recherchen", "Suche nach:", "Transparenz"],
        ),
    ],
)
def test_navigation_and_footers_are_removed_article_kept(web_html: Path, page, article, boilerplate):
    raw = web_html / page
    text = extract_html(raw.read_bytes())
    whole_page = " ".join(LexborHTMLParser(decode_html(raw.read_bytes())).body.text(separator=" ").split())
    for phrase in article:
        assert phrase in text, f"{page}: article text {phrase!r} missing"
    for phrase in boilerplate:
        assert phrase in whole_page, f"{page}: {phrase!r} is not on the page, so its absence proves nothing"
        assert phrase not in text, f"{page}: boilerplate {phrase!r} kept"


def test_paragraphs_are_separated_by_blank_lines(web_html: Path):
    text = extract_html((web_html / "trafilatura/theguardian.com.academics.html").read_bytes())
    paragraphs = text.split("\n\n")
    assert len(paragraphs) >= 8
    assert all(p.strip() == p and p for p in paragraphs)
    assert "\n\n\n" not in text
    assert not re.search(r"[ \t]{2,}", text)


def test_no_page_of_the_web_corpus_comes_out_as_mojibake(web_html: Path):
    pages = sorted(web_html.rglob("*.htm*"))
    assert len(pages) == 106
    for page in pages:
        text = extract_html(page.read_bytes())
        assert not MOJIBAKE.search(text), f"{page.name}: {MOJIBAKE.findall(text)[:5]}"


def test_page_declaring_the_wrong_charset_is_read_as_what_it_is(web_html: Path):
    # qq.html says gb2312 in its <meta>; its bytes are UTF-8.
    text = extract_html((web_html / "readability/qq.html").read_bytes())
    assert "人工智能" in text and "DeepMind" in text


def test_wrong_charset_in_the_http_header_is_overruled_by_the_bytes(web_html: Path):
    # A server that labels every page iso-8859-1: a real UTF-8 page must read the same as without the label.
    body = (web_html / "trafilatura/franceculture.fr.idees.html").read_bytes()
    assert extract_html(body, charset="iso-8859-1") == extract_html(body)
    assert "é" in extract_html(body)


@pytest.mark.parametrize(
    "page, expected",
    [
        ("trafilatura/landwirt.com.sensortechnik.html", "Viertelleitfähigkeitssensor"),
        ("trafilatura/cdu-fraktion-erfurt.de.waldorfschule.html", "ü"),
    ],
)
def test_genuine_latin1_pages_decode(web_html: Path, page, expected):
    assert expected in extract_html((web_html / page).read_bytes())


def test_windows_1256_declared_by_http_equiv_decodes(web_html: Path):
    text = decode_html((web_html / "gumbo/arabic_newspapers.html").read_bytes())
    assert "الصحف" in text and "\ufffd" not in text


@pytest.mark.parametrize("name", ["jsoup-bom_utf16be.html", "jsoup-bom_utf32le.html"])
def test_utf16_and_utf32_pages_with_a_bom_decode(shared: Path, name):
    text = extract_html((shared / "corpora" / "hostile" / "html" / name).read_bytes())
    assert "다음은 현대 한국어의 한글 음절을" in text


def test_utf16_without_bom_decodes_when_the_http_header_says_so(shared: Path):
    page = (shared / "corpora" / "hostile" / "html" / "jsoup-bom_utf16be.html").read_bytes()
    assert "다음은 현대 한국어의" in extract_html(page[2:], charset="UTF-16BE")


def test_undeclared_legacy_bytes_are_detected(shared: Path):
    # No declaration at all, GB2312 bytes that are not UTF-8: detection picks a CJK codec, never mojibake.
    text = decode_html((shared / "corpora" / "hostile" / "html" / "jsoup-meta-charset-2.html").read_bytes())
    assert "\ufffd" not in text and not MOJIBAKE.search(text)


def test_str_input_and_empty_pages(web_html: Path):
    body = (web_html / "trafilatura/theguardian.com.academics.html").read_bytes()
    assert extract_html(body.decode("utf-8")) == extract_html(body)
    assert extract_html(b"") == ""
    assert extract_html("<html><body><nav>Home | About</nav></body></html>") == ""


def test_settings_reach_the_extractor(web_html: Path):
    body = (web_html / "trafilatura/theguardian.com.academics.html").read_bytes()
    paragraph = "Thousands of academic staff at British universities"
    assert extract_html(body, settings=DEFAULTS) == extract_html(body)
    assert paragraph in extract_html(body)
    never_p = replace(DEFAULTS, never_content=DEFAULTS.never_content + ", p")
    assert paragraph not in extract_html(body, settings=never_p)


def test_a_settings_pattern_that_does_not_compile_fails_when_made_and_names_the_field():
    with pytest.raises(ValueError, match=r"ExtractionSettings\.commas='\[' is not a regular expression"):
        ExtractionSettings(commas="[")
