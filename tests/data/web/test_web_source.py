"""The custom-scrape source end to end: a stage full of misbehaving URLs still completes with its good documents.

One crawl (module fixture) mixes good pages and PDFs with every hostile case; each test then checks one
case's row in the crawl report and that the good documents came through, in list order.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from curriculum.presets import DEFAULT_URLS_FILE
from data.documents import Document, SkipReport
from data.extract.errors import ENCRYPTED, NO_TEXT_LAYER, REASONS
from data.web.config import ScrapeConfig
from data.web.report import CrawlRow, crawl_summary, read_crawl_report
from data.web.source import WebReader
from data.web.urls import ScrapeError
from tests.data.web.server import WebTestServer

# What a loaded 2-core machine may add to work that takes about a second here: upper bounds on time are this plus
# what the behaviour under test allows, far below what the failure they rule out would take.
SLACK_S = 10.0

GOOD_PAGES = [
    "html/readability/ars-1.html",
    "html/gutenberg/alice_pg11-h.htm",
    "html/trafilatura/lemire.me.json.html",
    "html/readability/qq.html",  # declares gb2312, is UTF-8
    "html/trafilatura/cdu-fraktion-erfurt.de.waldorfschule.html",  # ISO-8859-1
    "hostile/html/jsoup-bom_utf16be.html",  # UTF-16BE with a BOM
]
# Served with a Content-Type header whose charset is wrong too, as misconfigured servers do.
WRONG_HEADER = {
    "html/readability/qq.html": "text/html; charset=gb2312",
    "html/trafilatura/cdu-fraktion-erfurt.de.waldorfschule.html": "text/html; charset=utf-8",
}
GOOD_PDFS = [
    "pdf/sf-001-minimal-document.pdf",
    "pdf/sf-004-pdflatex-4-pages.pdf",
    "pdf/pdfminer-dmca.pdf",  # encrypted with the empty password: opens
]
ENCRYPTED_PDFS = [
    "pdf/pypdf-crazyones-encrypted-256.pdf",
    "pdf/pypdf-encrypted-file.pdf",
    "pdf/sf-005-libreoffice-writer-password.pdf",
]
IMAGE_ONLY_PDF = "pdf/sf-007-imagemagick-CCITTFax.pdf"


@dataclass
class Crawl:
    docs: list[Document]
    rows: dict[str, CrawlRow]
    report: SkipReport
    seconds: float
    urls: dict[str, str]  # case name -> URL
    config: ScrapeConfig
    report_path: Path


def read_stage(reader: WebReader) -> tuple[list[Document], SkipReport]:
    report = SkipReport(source="custom-scrape")
    return list(reader.documents(report)), report


@pytest.fixture(scope="module")
def crawl(web_server: WebTestServer, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Crawl:
    server = web_server
    server.reset()
    server.state.robots["127.0.0.1"] = "User-agent: *\nDisallow: /files/html/edge/\n"
    hostile_pdfs = sorted((shared / "corpora" / "hostile" / "pdf").iterdir())
    cases = {
        "robots": server.file_url("html/edge/readability-ol.html"),
        "404": server.url("/status?code=404"),
        "500-then-200": server.url("/flaky?key=stage-500&code=500&n=1&path=/files/html/readability/bbc-1.html"),
        "429": server.url("/retry-after?key=stage-429&seconds=1&path=/files/html/readability/cnn.html"),
        "slow-drip": server.url("/drip?interval=0.2"),
        "endless": server.url("/endless"),
        "gzip-bomb": server.url("/gzip-bomb"),
        "redirect-loop": server.url("/loop/a"),
        "redirect-to-file": server.url("/redirect?to=file:///etc/passwd"),
        "binary-as-html": server.url("/binary"),
        "duplicate": server.file_url(GOOD_PAGES[0], host="localhost"),
        "too-short": server.file_url("hostile/html/jsoup-meta-charset-2.html"),
        "image-only": server.file_url(IMAGE_ONLY_PDF),
        **{f"encrypted:{rel}": server.file_url(rel) for rel in ENCRYPTED_PDFS},
        **{f"hostile:{p.name}": server.file_url(f"hostile/pdf/{p.name}") for p in hostile_pdfs},
        **{f"good:{rel}": server.file_url(rel, **({"type": WRONG_HEADER[rel]} if rel in WRONG_HEADER else {}))
           for rel in GOOD_PAGES + GOOD_PDFS},
    }
    folder = tmp_path_factory.mktemp("stage")
    listing = folder / "urls.txt"
    # Good ones interleaved with bad ones, so list order is tested against completion order; the
    # duplicate comes last so that the first copy is the one kept.
    good = [n for n in cases if n.startswith("good:")]
    bad = [n for n in cases if not n.startswith("good:") and n != "duplicate"]
    names = [n for pair in itertools.zip_longest(bad, good) for n in pair if n] + ["duplicate"]
    listing.write_text("# test stage\n" + "\n".join(cases[n] for n in names) + "\n", encoding="utf-8")
    config = ScrapeConfig(
        per_host_delay=0.0, connect_timeout=2, read_timeout=2, url_deadline=3, retries=2, backoff=0.05,
        backoff_max=0.2, max_html_bytes=2_000_000, max_pdf_bytes=5_000_000, extract_timeout=3, min_chars=100,
        allow_private=["127.0.0.1"],
    )
    saved_page = shared / "corpora" / "web" / "html" / "gutenberg" / "devils-dictionary_pg972-h.htm"
    book = shared / "corpora" / "books" / "bierce_devils-dictionary_pg972.txt"
    report_path = folder / "reports" / "crawl_pretrain.json"
    reader = WebReader(
        urls_file=listing, paths=[saved_page, book], config=config, cache_dir=folder / "web-cache",
        report_path=report_path,
    )
    started = time.monotonic()
    docs, report = read_stage(reader)
    seconds = time.monotonic() - started
    rows = {row.item: row for row in read_crawl_report(report_path).rows}
    return Crawl(docs, rows, report, seconds, {n: cases[n] for n in names}, config, report_path)


def row(crawl: Crawl, case: str) -> CrawlRow:
    return crawl.rows[crawl.urls[case]]


def test_good_documents_come_through_in_list_order(crawl: Crawl, shared: Path):
    good = [url for name, url in crawl.urls.items() if name.startswith("good:") or name in ("500-then-200", "429")]
    saved = str(shared / "corpora" / "web" / "html" / "gutenberg" / "devils-dictionary_pg972-h.htm")
    assert [doc.id for doc in crawl.docs] == good + [saved]
    assert all(len(doc.text) >= crawl.config.min_chars for doc in crawl.docs)
    assert crawl.seconds < 40


@pytest.mark.parametrize(
    "case, status, reason",
    [
        ("robots", "skipped", "robots-disallowed"),
        ("404", "failed", "http-404"),
        ("slow-drip", "failed", "deadline"),
        ("endless", "skipped", "too-large"),
        ("gzip-bomb", "skipped", "too-large"),
        ("redirect-loop", "failed", "redirect-loop"),
        ("redirect-to-file", "skipped", "unsupported-scheme"),
        ("binary-as-html", "skipped", "not-html"),
        ("duplicate", "skipped", "duplicate"),
        ("too-short", "skipped", "too-short"),
    ],
)
def test_each_bad_url_ends_with_its_reason(crawl: Crawl, case: str, status: str, reason: str):
    found = row(crawl, case)
    assert (found.status, found.reason) == (status, reason), found
    assert crawl.report.counts[reason] >= 1


def test_retried_urls_succeed(crawl: Crawl, web_server: WebTestServer):
    assert row(crawl, "500-then-200").attempts == 2
    assert row(crawl, "429").attempts == 2
    first, second = web_server.requests("/retry-after?key=stage-429")
    assert second.start - first.end >= 0.95


def test_wrong_charset_and_utf16_pages_are_readable(crawl: Crawl):
    texts = {doc.id: doc.text for doc in crawl.docs}
    qq = texts[crawl.urls["good:html/readability/qq.html"]]
    german = texts[crawl.urls["good:html/trafilatura/cdu-fraktion-erfurt.de.waldorfschule.html"]]
    korean = texts[crawl.urls["good:hostile/html/jsoup-bom_utf16be.html"]]
    assert "\ufffd" not in qq and sum("\u4e00" <= ch <= "\u9fff" for ch in qq) > 100  # Chinese, not mojibake
    assert "\ufffd" not in german and "großer Mehrheit" in german
    assert "한국어" in korean and "Hangul syllables" in korean


def test_encrypted_pdfs_open_with_the_empty_password_only(crawl: Crawl):
    assert row(crawl, "good:pdf/pdfminer-dmca.pdf").status == "ok"
    for rel in ENCRYPTED_PDFS:
        found = row(crawl, f"encrypted:{rel}")
        assert (found.status, found.reason) == ("skipped", ENCRYPTED), found


def test_image_only_pdf_is_skipped_with_its_reason(crawl: Crawl):
    found = row(crawl, "image-only")
    assert (found.status, found.reason) == ("skipped", NO_TEXT_LAYER), found


def test_hostile_pdfs_are_skipped_within_the_time_bound(crawl: Crawl):
    hostile = [name for name in crawl.urls if name.startswith("hostile:")]
    assert len(hostile) == 9
    for name in hostile:
        found = row(crawl, name)
        # The extractor's reason, or the fetcher's for a file that is not a PDF at all (a raw LZW stream).
        assert found.status == "skipped" and (found.reason in REASONS or found.reason == "unsupported-type"), found
        assert found.extract_seconds <= crawl.config.extract_timeout + SLACK_S, found


def test_local_txt_never_enters_and_report_is_complete(crawl: Crawl, shared: Path):
    book = str(shared / "corpora" / "books" / "bierce_devils-dictionary_pg972.txt")
    assert (crawl.rows[book].status, crawl.rows[book].reason) == ("skipped", "local-txt")
    assert set(crawl.urls.values()) <= set(crawl.rows)
    ok = [r for r in crawl.rows.values() if r.status == "ok"]
    assert len(ok) == len(crawl.docs) and all(r.chars > 0 and r.seconds >= 0 for r in ok)
    assert all(r.bytes > 0 for r in ok)
    summary = crawl_summary(crawl.report_path)
    assert summary["ok"] == len(crawl.docs)
    assert sum(summary.values()) == len(crawl.rows)


def test_rerun_uses_conditional_get_and_gives_identical_documents(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    urls = [server.file_url(GOOD_PAGES[0]), server.file_url(GOOD_PDFS[1])]

    def run() -> list[Document]:
        reader = WebReader(urls, config=fast_config, cache_dir=tmp_path / "cache", report_path=tmp_path / "r.json")
        return read_stage(reader)[0]

    first = run()
    second = run()
    assert first == second and len(first) == 2
    revalidations = [e for e in server.requests("/files/") if "if-none-match" in e.headers]
    assert len(revalidations) == 2 and {e.status for e in revalidations} == {304}
    assert all(r.revalidated for r in read_crawl_report(tmp_path / "r.json").rows)


def test_stopping_early_ends_the_crawl_and_reports_the_rest(
    server: WebTestServer, fast_config: ScrapeConfig, tmp_path: Path
):
    # Slow enough that waiting for them (20 x 5 s, two at a time) could never pass for stopping early.
    urls = [server.file_url(GOOD_PAGES[0])] + [server.url(f"/sleep?s=5&path=/files/{GOOD_PAGES[2]}&n={i}")
                                                 for i in range(20)]
    reader = WebReader(urls, config=fast_config, cache_dir=tmp_path / "cache", report_path=tmp_path / "r.json")
    started = time.monotonic()
    documents = reader.documents(SkipReport(source="custom-scrape"))
    next(documents)
    documents.close()  # what write_documents does once it has n_items
    assert time.monotonic() - started < SLACK_S
    rows = read_crawl_report(tmp_path / "r.json").rows
    assert len(rows) == len(urls) and sum(r.reason == "not-read" for r in rows) == len(urls) - 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_stage_fails_fast_with_a_clear_error(fast_config: ScrapeConfig, tmp_path: Path):
    listing = tmp_path / "my_urls.txt"
    listing.write_text("\n".join(
        [f"http://nonexistent.invalid/{i}" for i in range(10)] + [f"http://127.0.0.1:{_closed_port()}/x"]
    ))
    reader = WebReader(urls_file=listing, config=fast_config, cache_dir=tmp_path / "c", report_path=tmp_path / "r.json")
    started = time.monotonic()
    with pytest.raises(ScrapeError) as error:
        read_stage(reader)
    assert time.monotonic() - started < SLACK_S
    message = str(error.value)
    assert "every URL" in message and str(listing) in message
    assert "host-unreachable: 11" in message and "network" in message and "paths:" in message
    assert crawl_summary(tmp_path / "r.json") == {"host-unreachable": 11}


def test_offline_with_saved_pages_proceeds_with_a_warning(
    fast_config: ScrapeConfig, shared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    saved = shared / "corpora" / "web" / "html" / "gutenberg"
    reader = WebReader(["http://nonexistent.invalid/page"], paths=[saved], config=fast_config,
                       cache_dir=tmp_path / "c", report_path=tmp_path / "r.json")
    with caplog.at_level(logging.WARNING, logger="data.web.source"):
        docs, _ = read_stage(reader)
    assert [Path(d.id).name for d in docs] == sorted(p.name for p in saved.iterdir())
    assert any("host-unreachable: 1" in r.getMessage() and "paths:" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # the default config's back-off: 4-5 s of waiting
def test_default_url_list_offline_fails_in_seconds(tmp_path: Path):
    try:
        socket.getaddrinfo("www.gutenberg.org", 443)
    except socket.gaierror:
        pass
    else:
        pytest.skip("the network is up: this test is about running offline")
    reader = WebReader(urls_file=DEFAULT_URLS_FILE, config=ScrapeConfig(), cache_dir=tmp_path / "c",
                       report_path=tmp_path / "r.json")
    started = time.monotonic()
    with pytest.raises(ScrapeError, match="default_urls.txt"):
        read_stage(reader)
    assert time.monotonic() - started < 15  # default retries and back-off, every host in parallel
