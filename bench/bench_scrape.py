"""Fetch + extract of every page and PDF in ../shared/corpora/web from a local server, and extraction quality.

    python bench/bench_scrape.py [--concurrency 8] [--workers 1]

Serves ../shared/corpora/web/{html,pdf} on 127.0.0.1 (the tests' server) and runs the whole custom-scrape
path over them: HTTP fetch, size caps, sniffing, on-disk cache, extraction in the sandboxed worker,
dedup. Prints pages/s and MB/s of a cold run, extraction ms/page for HTML and PDF, the same crawl again
(every URL revalidated with a conditional GET answered 304), and the extraction-dev F1 of
data.extract.extract_html next to the selectolax body-text baseline, both measured in this run.
Politeness delays are off (one local host) and the server's 127.0.0.1 is allowed (scrape.allow_private);
everything else is the default ScrapeConfig. Also printed: the
fetch side alone (no extraction) and the slowest extractions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the local web server the bench crawls lives in tests/, which is not installed

from bench_extract import bench_html, body_text  # noqa: E402 -- the F1 code lives with the extraction bench

from data.documents import SkipReport  # noqa: E402
from data.extract import extract_html  # noqa: E402
from data.web.config import ScrapeConfig  # noqa: E402
from data.web.crawl import BackgroundCrawl  # noqa: E402
from data.web.report import CrawlRow, read_crawl_report, reason_counts  # noqa: E402
from data.web.source import WebReader  # noqa: E402
from tests.data.web.server import WebTestServer  # noqa: E402

SHARED = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared"))


def crawl(urls: list[str], config: ScrapeConfig, folder: Path) -> tuple[float, int, list[CrawlRow]]:
    reader = WebReader(urls, config=config, cache_dir=folder / "web-cache", report_path=folder / "crawl.json")
    started = time.perf_counter()
    n_docs = sum(1 for _ in reader.documents(SkipReport(source="custom-scrape")))
    seconds = time.perf_counter() - started
    return seconds, n_docs, read_crawl_report(folder / "crawl.json").rows


def fetch_only(urls: list[str], config: ScrapeConfig, folder: Path) -> float:
    """Seconds to fetch every URL into a fresh cache, no extraction: the network side alone."""
    started = time.perf_counter()
    with BackgroundCrawl(urls, config, folder / "fetch-only-cache") as crawler:
        for index in range(len(urls)):
            crawler.result(index)
    return time.perf_counter() - started


def extraction_ms(rows: list[CrawlRow], kind: str) -> str:
    times = [row.extract_seconds * 1000 for row in rows if row.kind == kind and row.extract_seconds > 0]
    if not times:
        return "n/a"
    return f"{statistics.mean(times):.1f} (median {statistics.median(times):.1f}, n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (one local host)")
    parser.add_argument("--workers", type=int, default=1, help="sandboxed extraction workers (scrape.extract_workers)")
    args = parser.parse_args()
    web = SHARED / "corpora" / "web"
    files = sorted(p for p in (web / "html").rglob("*") if p.is_file()) + sorted((web / "pdf").glob("*.pdf"))
    config = ScrapeConfig(per_host_delay=0.0, per_host=args.concurrency, max_concurrency=args.concurrency,
                          allow_private=["127.0.0.1"], extract_workers=args.workers)
    with WebTestServer(SHARED) as server, tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        urls = [server.file_url(str(p.relative_to(web))) for p in files]
        fetch_s = fetch_only(urls, config, Path(tmp))
        cold_s, n_docs, rows = crawl(urls, config, Path(tmp))
        warm_s, warm_docs, warm_rows = crawl(urls, config, Path(tmp))
    n_bytes = sum(row.bytes for row in rows)
    print(f"inputs={len(urls)} ({sum(r.kind == 'html' for r in rows)} html, {sum(r.kind == 'pdf' for r in rows)} pdf)"
          f" bytes={n_bytes / 1e6:.1f} MB documents={n_docs}")
    print(f"fetch only: {fetch_s:.2f} s  pages/s={len(urls) / fetch_s:.1f}  MB/s={n_bytes / 1e6 / fetch_s:.2f}")
    print(f"fetch + extract, cold: {cold_s:.2f} s  pages/s={len(urls) / cold_s:.1f}  MB/s={n_bytes / 1e6 / cold_s:.2f}")
    print(f"re-run (conditional GET, 304s): {warm_s:.2f} s  pages/s={len(urls) / warm_s:.1f}  "
          f"revalidated={sum(r.revalidated for r in warm_rows)}/{len(warm_rows)}  same documents={warm_docs == n_docs}")
    print(f"extraction ms/page (sandboxed worker, wall): html {extraction_ms(rows, 'html')}; "
          f"pdf {extraction_ms(rows, 'pdf')}")
    slowest = sorted(rows, key=lambda r: r.extract_seconds, reverse=True)[:3]
    print("slowest extractions: "
          + ", ".join(f"{r.item.rsplit('/', 1)[-1]} {r.extract_seconds:.2f} s" for r in slowest))
    print(f"outcomes: {reason_counts(rows)}")
    quality()


def quality() -> None:
    """extraction-dev F1 of ours and of the selectolax body-text baseline, with bench/bench_extract.py's code."""
    results = bench_html(SHARED, {"data.extract": extract_html, "selectolax body text": body_text}, repeats=1)
    print("extraction-dev F1: " + "  ".join(f"{name} {r['f1']:.3f} ({r['ms']:.1f} ms/page in-process)"
                                            for name, r in results.items()))


if __name__ == "__main__":
    main()
