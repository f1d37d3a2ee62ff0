"""The `custom-scrape` source: fetched pages and PDFs, plus saved ones under `paths:`, as documents.

Documents come in a fixed order, the URL list's and then the saved files' (sorted), whatever order
fetches or extractions finish in. Extraction runs in killable workers (data.extract.sandbox, scrape.extract_workers
of them) so one hostile file can neither crash nor hang the stage. Every input ends as one row of the crawl
report; every input left out also goes to the SkipReport with its reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from data.documents import Document, SkipReport
from data.extract.sandbox import Extracted, ExtractionPool
from data.web.cache import ResponseCache
from data.web.config import ScrapeConfig
from data.web.crawl import BackgroundCrawl
from data.web.decode import BoundedDecoder, DecodeError
from data.web.fetch import FetchResult
from data.web.ordered_extraction import OrderedExtractions
from data.web.report import CrawlReport, CrawlRow, reason_counts
from data.web.sniff import SNIFF_BYTES, ContentType, sniff
from data.web.urls import BadLine, LocalFile, ScrapeError, expand_paths, load_url_list, redact

log = logging.getLogger(__name__)

LOCAL_TYPES = {"html": "text/html", "pdf": "application/pdf", None: ""}
# Reasons that mean "the network did not let us", as opposed to "the site or the page said no".
NETWORK_REASONS = {"host-unreachable", "connect-error", "network-timeout", "connection-error", "deadline"}


class WebReader:
    """Reads a custom-scrape stage; the URL list and paths are checked at construction (a missing
    `urls_file` fails here), fetching and extraction happen while `documents()` is iterated."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        urls_file: str | Path | None = None,
        paths: Sequence[str | Path] = (),
        *,
        config: ScrapeConfig,
        cache_dir: str | Path,
        report_path: str | Path,
    ):
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.report_path = Path(report_path)
        self.url_list = load_url_list(urls, urls_file)
        self.files, bad_paths = expand_paths(paths)
        self.bad: list[BadLine] = [*self.url_list.bad, *bad_paths]
        self.paths = [str(p) for p in paths]

    def fingerprint(self) -> str | None:
        return None  # only fetching can tell whether the web changed

    def documents(self, report: SkipReport) -> Iterator[Document]:
        rows = self.bad_rows(report)
        kept: dict[str, str] = {}  # normalised-text hash -> id of the first document with that text
        urls, files = self.url_list.urls, self.files
        stopped_early = False
        workers = self.config.extract_workers or os.cpu_count() or 1
        extractions: OrderedExtractions[CrawlRow] | None = None
        try:
            with ExtractionPool(
                timeout=self.config.extract_timeout,
                memory_mb=self.config.extract_memory_mb,
                max_pdf_pages=self.config.max_pdf_pages,
                workers=workers,
            ) as pool, OrderedExtractions[CrawlRow](pool, workers) as extractions, BackgroundCrawl(
                urls, self.config, self.cache_dir
            ) as crawl:
                # Up to `workers` inputs are extracted at once, in batches (data/web/ordered_extraction.py); the
                # documents come out in input order.
                def documents(leave: int) -> Iterator[Document]:
                    assert extractions is not None
                    for row, result in extractions.take(leave):
                        if result is None:  # left out when it was read (_mark)
                            report.skip(row.item, row.reason, row.detail)
                            continue
                        doc = self.document(row.item, result, row, kept, report)
                        if doc is not None:
                            yield doc

                cache = ResponseCache(self.cache_dir)
                for index in range(len(urls)):
                    if not crawl.has_result(index):
                        # A slow fetch: what was read so far is extracted and goes out before waiting on it.
                        extractions.start()
                        yield from documents(0)
                    fetched = crawl.result(index)
                    row = fetch_row(fetched)
                    rows.append(row)
                    body = cached_body(cache, fetched, row)
                    # A fetched body has its kind; an input left out (body None) goes through in its turn.
                    if extractions.add(row, body, fetched.kind or "", fetched.final_url, fetched.charset):
                        yield from documents(extractions.in_last_batch)  # while that batch is extracted
                for local in files:
                    row = CrawlRow(str(local.path), "path", "ok")
                    rows.append(row)
                    body, kind = read_local(local, row, self.config) or (None, "")
                    if extractions.add(row, body, kind):
                        yield from documents(extractions.in_last_batch)
                extractions.start()
                yield from documents(0)
        except GeneratorExit:
            stopped_early = True  # the consumer has enough (n_items): not an error
            for row in extractions.abandon() if extractions is not None else []:  # read, but not needed
                row.status, row.reason, row.detail = "skipped", "not-read", "the stage had its n_items documents first"
            raise
        finally:
            self.write_report(rows, stopped_early)
        self.check_outcome(rows)

    def bad_rows(self, report: SkipReport) -> list[CrawlRow]:
        """The report rows of the bad URL-list lines and paths, which come first; each is reported skipped."""
        rows: list[CrawlRow] = []
        for bad in self.bad:
            report.skip(bad.item, bad.reason, bad.detail)
            rows.append(CrawlRow(bad.item, bad.origin, "skipped", bad.reason, bad.detail))
        return rows

    def write_report(self, rows: list[CrawlRow], stopped_early: bool) -> None:
        """The crawl report: `rows`, then a not-read row for every input that has none (the stage stopped first)."""
        listed = {row.item for row in rows}
        why = "the stage had its n_items documents before this one" if stopped_early else "the stage stopped"
        inputs = [*((redact(u), "url") for u in self.url_list.urls), *((str(f.path), "path") for f in self.files)]
        for item, origin in inputs:
            if item not in listed:
                rows.append(CrawlRow(item, origin, "skipped", "not-read", why))
        CrawlReport(rows).write(self.report_path)

    # -- steps -------------------------------------------------------------------------------------

    def document(
        self, item: str, result: Extracted, row: CrawlRow, kept: dict[str, str], report: SkipReport
    ) -> Document | None:
        """Extracted text as a document, unless extraction refused it, it is near-empty or a repeat."""
        row.extract_seconds = round(result.seconds, 3)
        if result.text is None:
            _drop(row, report, "skipped", result.reason or "extract-failed", result.detail)
            return None
        text = result.text
        row.chars = len(text)
        if len(text.strip()) < self.config.min_chars:
            _drop(row, report, "skipped", "too-short",
                  f"{len(text.strip())} characters extracted, fewer than min_chars={self.config.min_chars}")
            return None
        # Exact repeats after whitespace normalisation: the same page under two URLs, mirrors, a saved copy.
        digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()
        if digest in kept:
            _drop(row, report, "skipped", "duplicate", f"same text as {kept[digest]}")
            return None
        kept[digest] = item
        return Document(id=item, text=text)

    def check_outcome(self, rows: list[CrawlRow]) -> None:
        """No document at all is an error that says why; every URL lost while saved files worked is a warning."""
        url_rows = [row for row in rows if row.origin == "url"]
        url_counts = reason_counts(url_rows)
        n_docs = sum(row.status == "ok" for row in rows)
        if n_docs and url_rows and "ok" not in url_counts:
            log.warning(
                "no URL of %s gave a document (%s); continuing with %d documents from `paths:`. Crawl report: %s",
                self.url_list.origin, _counts_text(url_counts), n_docs, self.report_path,
            )
        if n_docs:
            return
        if url_rows and all(row.reason in NETWORK_REASONS for row in url_rows):
            raise ScrapeError(
                f"no documents to train on: every URL of {self.url_list.origin} failed ({len(url_rows)} URLs; "
                f"{_counts_text(url_counts)}). Check the network connection (no host could be reached), or run "
                f"offline by listing saved HTML/PDF pages under the stage's `paths:`. "
                f"Crawl report: {self.report_path}"
            )
        inputs = f"{self.url_list.origin}" + (f" and `paths:` {self.paths}" if self.paths else "")
        raise ScrapeError(
            f"no documents to train on: no input of {inputs} gave a document "
            f"({_counts_text(reason_counts(rows))}). Fix the inputs the reasons name, check the network, "
            f"or list saved HTML/PDF pages under the stage's `paths:`. Crawl report: {self.report_path}"
        )


def cached_body(cache: ResponseCache, fetched: FetchResult, row: CrawlRow) -> bytes | None:
    """The fetched body (it waits in the cache, not in memory), or None when the URL was lost."""
    if fetched.status != "ok":
        return None  # the row says why
    entry = cache.get(fetched.final_url or fetched.url)
    body = cache.body(entry) if entry is not None and entry.sha256 == fetched.sha256 else None
    if body is None:
        _mark(row, "failed", "cache-changed",
              f"the cached body of {fetched.final_url} changed while the stage ran (another run?); run it again")
    return body


def read_local(local: LocalFile, row: CrawlRow, config: ScrapeConfig) -> tuple[bytes, str] | None:
    """A saved page or PDF, checked like a fetched body: size caps on decoded bytes, type by its bytes."""
    c = config
    cap = max(c.max_html_bytes, c.max_pdf_bytes)
    started = time.perf_counter()
    size = local.path.stat().st_size
    if size > cap:
        _mark(row, "skipped", "too-large", f"{size} bytes, more than the larger size cap {cap}")
        return None
    body = local.path.read_bytes()
    if local.path.name.lower().endswith(".gz"):
        try:
            decoder = BoundedDecoder("gzip")
            body = decoder.feed(body, cap)
            decoder.finish()
        except DecodeError as error:
            _mark(row, "failed", "bad-encoding", str(error))
            return None
    row.bytes = len(body)
    row.seconds = round(time.perf_counter() - started, 3)
    verdict = sniff(body[:SNIFF_BYTES], ContentType(LOCAL_TYPES[local.kind], None))
    if verdict.kind is None:
        _mark(row, "skipped", verdict.reason, verdict.detail)
        return None
    limit, name = (c.max_pdf_bytes, "max_pdf_bytes") if verdict.kind == "pdf" else (c.max_html_bytes,
                                                                                   "max_html_bytes")
    if len(body) > limit:
        _mark(row, "skipped", "too-large", f"{len(body)} decoded bytes, more than {name}={limit}")
        return None
    row.kind = verdict.kind
    return body, verdict.kind


def fetch_row(fetched: FetchResult) -> CrawlRow:
    return CrawlRow(
        item=fetched.url,
        origin="url",
        status=fetched.status,
        reason=fetched.reason,
        detail=fetched.detail,
        http_status=fetched.http_status,
        final_url=fetched.final_url,
        kind=fetched.kind,
        bytes=fetched.n_bytes,
        seconds=fetched.seconds,
        attempts=fetched.attempts,
        revalidated=fetched.revalidated,
        sha256=fetched.sha256,
    )


def _drop(row: CrawlRow, report: SkipReport, status: str, reason: str, detail: str) -> None:
    _mark(row, status, reason, detail)
    report.skip(row.item, reason, detail)


def _mark(row: CrawlRow, status: str, reason: str, detail: str) -> None:
    """An input left out as it is read: reported (report.skip) when its turn comes in input order, as its document
    would have gone out, so a stage stopped early at n_items reports the same whatever was read ahead."""
    row.status, row.reason, row.detail = status, reason, detail


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in counts.items()) or "none"
