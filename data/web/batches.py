"""A custom-scrape stage's inputs in batches, each fetched and extracted on its own (a task on a Dask worker), then
replayed in input order into the same documents the one-reader path (WebReader.documents) writes.

A batch keeps every URL of a host together, so the host's politeness delay and robots.txt stay within one crawl;
saved files go in contiguous runs. A batch does neither dedup nor n_items: both depend on every input before it,
so they happen in the replay, which walks the batches' results in global input order through the same steps as
the one reader (bad list lines, skips in their turn, min_chars, duplicates, the n_items stop, the crawl report).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict

from data.atomic import fsync_dir, remove_stale_tmp, tmp_path_for
from data.documents import Document, SkipReport
from data.extract.sandbox import Extracted, ExtractionPool
from data.web.cache import ResponseCache
from data.web.crawl import BackgroundCrawl
from data.web.ordered_extraction import OrderedExtractions
from data.web.report import CrawlRow
from data.web.source import WebReader, cached_body, fetch_row, read_local

BATCH_VERSION = 1
_ROW_FIELDS = {f.name for f in fields(CrawlRow)}


class WebBatch(BaseModel):
    """Batch `index` (1-based) of `of`: the global input indices it reads (URLs first, in list order, then the
    saved files), ascending."""

    model_config = ConfigDict(frozen=True)

    index: int
    of: int
    inputs: list[int]


def batch_name(stage: str, index: int, of: int) -> str:
    """How a batch is named in the UI, the logs and errors: fetch-<stage>-<index>/<of>."""
    return f"fetch-{stage}-{index}/{of}"


def plan_batches(urls: Sequence[str], n_files: int, batch_inputs: int) -> list[WebBatch]:
    """Batches of at most `batch_inputs` inputs, except a host with more URLs than that, which is one batch of its
    own (a host is never split). Hosts are packed in the order they first appear; files follow, in runs."""
    groups: dict[str, list[int]] = {}
    for index, url in enumerate(urls):
        groups.setdefault(httpx.URL(url).host.lower(), []).append(index)
    runs: list[list[int]] = []
    current: list[int] = []
    for group in groups.values():
        if current and len(current) + len(group) > batch_inputs:
            runs.append(current)
            current = []
        current = current + group
    if current:
        runs.append(current)
    first_file = len(urls)
    runs += [list(range(first_file + start, first_file + min(start + batch_inputs, n_files)))
             for start in range(0, n_files, batch_inputs)]
    return [WebBatch(index=i, of=len(runs), inputs=sorted(run)) for i, run in enumerate(runs, start=1)]


def read_batch(reader: WebReader, batch: WebBatch, folder: Path) -> tuple[Path, str]:
    """Fetch, read and extract the batch's inputs of `reader` (no dedup, no n_items) into a results file in
    `folder`, named by its content; returns (path, sha256). One JSON line per input, in input order:
    {"index", "row" (the crawl row as read), "extracted" (text or why not, or null when left out as it was read)}."""
    n_urls = len(reader.url_list.urls)
    url_indices = [i for i in batch.inputs if i < n_urls]
    file_indices = [i for i in batch.inputs if i >= n_urls]
    urls = [reader.url_list.urls[i] for i in url_indices]
    config = reader.config
    workers = config.extract_workers or os.cpu_count() or 1
    folder.mkdir(parents=True, exist_ok=True)
    named = folder / f"batch-{batch.index}-of-{batch.of}.jsonl"
    remove_stale_tmp(named)  # a killed run's half-written results
    tmp = tmp_path_for(named)
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out, ExtractionPool(
            timeout=config.extract_timeout, memory_mb=config.extract_memory_mb, max_pdf_pages=config.max_pdf_pages,
            workers=workers,
        ) as pool, OrderedExtractions[tuple[int, CrawlRow]](pool, workers) as extractions, BackgroundCrawl(
            urls, config, reader.cache_dir
        ) as crawl:

            def write(leave: int) -> None:
                for (index, row), result in extractions.take(leave):
                    line = json.dumps({"index": index, "row": asdict(row),
                                       "extracted": None if result is None else asdict(result)},
                                      ensure_ascii=False).encode("utf-8") + b"\n"
                    digest.update(line)
                    out.write(line)

            cache = ResponseCache(reader.cache_dir)
            for position, index in enumerate(url_indices):
                if not crawl.has_result(position):
                    extractions.start()  # a slow fetch: extract what was read meanwhile
                    write(0)
                fetched = crawl.result(position)
                row = fetch_row(fetched)
                body = cached_body(cache, fetched, row)
                if extractions.add((index, row), body, fetched.kind or "", fetched.final_url, fetched.charset):
                    write(extractions.in_last_batch)
            for index in file_indices:
                local = reader.files[index - n_urls]
                row = CrawlRow(str(local.path), "path", "ok")
                body, kind = read_local(local, row, config) or (None, "")
                if extractions.add((index, row), body, kind):
                    write(extractions.in_last_batch)
            extractions.start()
            write(0)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        path = folder / f"batch-{sha256[:16]}.jsonl"  # named by content: a re-run never reads an older run's file
        os.replace(tmp, path)
        fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)
    return path, sha256


def _results(path: Path) -> Iterator[tuple[int, CrawlRow, Extracted | None]]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            row = CrawlRow(**{k: v for k, v in item["row"].items() if k in _ROW_FIELDS})
            extracted = item["extracted"]
            yield item["index"], row, None if extracted is None else Extracted(**extracted)


class BatchReplay:
    """The documents of `reader`'s stage from its batches' results files (read_batch), as `reader.documents` would
    give them: a Source for fetch_stage."""

    def __init__(self, reader: WebReader, batch_files: Sequence[Path]):
        self.reader = reader
        self.batch_files = list(batch_files)
        self.report_path = reader.report_path

    def fingerprint(self) -> str | None:
        return None

    def documents(self, report: SkipReport) -> Iterator[Document]:
        reader = self.reader
        rows = reader.bad_rows(report)
        kept: dict[str, str] = {}
        n_inputs = len(reader.url_list.urls) + len(reader.files)
        stopped_early = False
        try:
            expected = 0
            # Each file is in input order; merged, they are in global input order.
            for index, row, result in heapq.merge(*(_results(path) for path in self.batch_files), key=lambda r: r[0]):
                if index != expected:
                    raise ValueError(f"the batches of {reader.url_list.origin} hold input {index} where input "
                                     f"{expected} was due (a batch is missing or repeated); prepare the stage again")
                expected += 1
                rows.append(row)
                if result is None:  # left out when it was read
                    report.skip(row.item, row.reason, row.detail)
                    continue
                doc = reader.document(row.item, result, row, kept, report)
                if doc is not None:
                    yield doc
            if expected != n_inputs:
                raise ValueError(f"the batches of {reader.url_list.origin} hold {expected} of its {n_inputs} inputs; "
                                 "prepare the stage again")
        except GeneratorExit:
            stopped_early = True  # the consumer has enough (n_items)
            raise
        finally:
            reader.write_report(rows, stopped_early)
        reader.check_outcome(rows)
