"""scrape.extract_workers: several sandboxed extraction workers give the same documents, in the same order, with the
same report, as one."""

from __future__ import annotations

import shutil
from pathlib import Path

from data.documents import SkipReport
from data.web.config import ScrapeConfig
from data.web.report import read_crawl_report
from data.web.source import WebReader


def saved_pages(shared: Path, folder: Path) -> list[Path]:
    """Real pages and PDFs (one encrypted, which extraction refuses) and a copy of a page under another name, which
    must be dropped as a duplicate of whichever came first in the input order, never of whichever finished first."""
    web = shared / "corpora" / "web"
    pages = sorted((web / "html" / "trafilatura").iterdir())[:8] + sorted((web / "pdf").glob("*.pdf"))[:3]
    copy = folder / "zz-copy-of-first.html"
    shutil.copy(pages[0], copy)
    return [*pages, copy]


def read_stage(paths: list[Path], folder: Path, workers: int) -> tuple[list[tuple[str, str]], list, dict]:
    reader = WebReader(paths=[str(p) for p in paths], config=ScrapeConfig(extract_workers=workers),
                       cache_dir=folder / "cache", report_path=folder / "crawl.json")
    report = SkipReport(source="custom-scrape")
    documents = [(doc.id, doc.text) for doc in reader.documents(report)]
    rows = [(r.item, r.status, r.reason, r.chars) for r in read_crawl_report(folder / "crawl.json").rows]
    return documents, rows, dict(report.counts)


def test_two_extraction_workers_give_what_one_gives_document_for_document(shared, tmp_path):
    paths = saved_pages(shared, tmp_path)
    one = read_stage(paths, tmp_path / "one", workers=1)
    two = read_stage(paths, tmp_path / "two", workers=2)
    documents, rows, skipped = one
    assert len(documents) >= 6
    # Saved files are read in sorted order: the later name of the two is the repeat.
    assert [row[0] for row in rows if row[2] == "duplicate"] == [max(str(paths[0]), str(paths[-1]))]
    assert skipped["duplicate"] == 1
    assert two == one


def test_a_stage_that_stops_early_reports_the_inputs_it_read_ahead_as_not_read(shared, tmp_path):
    paths = saved_pages(shared, tmp_path)
    reader = WebReader(paths=[str(p) for p in paths], config=ScrapeConfig(extract_workers=2),
                       cache_dir=tmp_path / "cache", report_path=tmp_path / "crawl.json")
    documents = reader.documents(SkipReport(source="custom-scrape"))
    first = [next(documents) for _ in range(3)]
    documents.close()  # as a stage with n_items=3 does
    rows = read_crawl_report(tmp_path / "crawl.json").rows
    assert [row.item for row in rows if row.status == "ok"] == [doc.id for doc in first]
    assert len(rows) == len(paths)
    assert {row.reason for row in rows if row.status != "ok"} <= {"not-read", "duplicate", "encrypted"}


def first_documents(shared: Path, folder: Path, workers: int, n: int) -> tuple[list[str], list, dict]:
    """The first `n` documents of every saved page and PDF, then stop (as a stage with n_items does), with a size
    cap that leaves the larger pages out as they are read."""
    reader = WebReader(paths=[str(shared / "corpora" / "web")],
                       config=ScrapeConfig(extract_workers=workers, max_html_bytes=200_000),
                       cache_dir=folder / "cache", report_path=folder / "crawl.json")
    report = SkipReport(source="custom-scrape")
    documents = reader.documents(report)
    ids = [next(documents).id for _ in range(n)]
    documents.close()
    rows = [(r.item, r.status, r.reason) for r in read_crawl_report(folder / "crawl.json").rows]
    return ids, rows, dict(report.counts)


def test_a_stage_stopped_early_reports_the_same_whatever_the_workers_read_ahead(shared, tmp_path):
    one = first_documents(shared, tmp_path / "one", workers=1, n=5)
    three = first_documents(shared, tmp_path / "three", workers=3, n=5)
    assert one == three
    ids, rows, skipped = one
    # Inputs left out before the fifth document are reported; the ones read ahead of it are not-read, like the rest.
    fifth = [item for item, *_ in rows].index(ids[-1])
    assert {reason for _, status, reason in rows[fifth + 1:]} == {"not-read"}
    assert sum(skipped.values()) == sum(status != "ok" for _, status, _ in rows[:fifth])
