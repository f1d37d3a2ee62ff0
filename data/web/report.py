"""The crawl report of a stage: one flat row per URL, path or bad list line, written as JSON.

Rows are flat (no nesting) so the UI can show them as a table and a CLI can count them by reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text

REPORT_VERSION = 1
STATUSES = ("ok", "skipped", "failed")


@dataclass
class CrawlRow:
    item: str  # the URL as listed, the file path, or "file:line: text" of a bad list line
    origin: str  # url, path or list
    status: str  # ok, skipped or failed
    reason: str = ""  # "" when ok; else e.g. robots-disallowed, http-404, too-short
    detail: str = ""
    http_status: int | None = None
    final_url: str | None = None
    kind: str | None = None  # html or pdf
    bytes: int = 0  # decoded body bytes
    chars: int = 0  # extracted characters (of a kept document, or of one dropped after extraction)
    seconds: float = 0.0  # fetching, from the first request
    extract_seconds: float = 0.0
    attempts: int = 0
    revalidated: bool = False  # the cached body was confirmed by a 304
    sha256: str | None = None  # of the body


@dataclass
class CrawlReport:
    rows: list[CrawlRow]

    def counts_by_reason(self) -> dict[str, int]:
        return reason_counts(self.rows)

    def as_dict(self) -> dict[str, Any]:
        ok = [row for row in self.rows if row.status == "ok"]
        return {
            "version": REPORT_VERSION,
            "summary": {
                "by_status": {status: sum(row.status == status for row in self.rows) for status in STATUSES},
                "by_reason": self.counts_by_reason(),
                "documents": len(ok),
                "chars": sum(row.chars for row in ok),
                "bytes": sum(row.bytes for row in self.rows),
            },
            "rows": [asdict(row) for row in self.rows],
        }

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.as_dict(), indent=1, ensure_ascii=False) + "\n")


def reason_counts(rows: list[CrawlRow] | list[dict[str, Any]]) -> dict[str, int]:
    """{"ok": n, "<reason>": n, ...}, most frequent first: the CLI summary's line."""
    counts: Counter[str] = Counter()
    for row in rows:
        status, reason = (row["status"], row["reason"]) if isinstance(row, dict) else (row.status, row.reason)
        counts["ok" if status == "ok" else reason or status] += 1
    return dict(counts.most_common())


def read_crawl_report(path: str | Path) -> CrawlReport:
    """A report written by `CrawlReport.write`; the error says how to regenerate one that is unusable."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no crawl report at {path}; it is written when a custom-scrape stage's data is prepared"
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"crawl report {path} is not valid JSON ({error}); prepare the stage's data again") from None
    if not isinstance(raw, dict) or raw.get("version") != REPORT_VERSION:
        found = raw.get("version") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(
            f"crawl report {path} has version {found!r}, this code reads version {REPORT_VERSION}; "
            "prepare the stage's data again to rewrite it"
        )
    names = {f.name for f in fields(CrawlRow)}
    return CrawlReport([CrawlRow(**{k: v for k, v in row.items() if k in names}) for row in raw["rows"]])


def crawl_summary(path: str | Path) -> dict[str, int]:
    """Counts by reason of the report at `path` (ok first when most frequent), for the CLI summary."""
    return read_crawl_report(path).counts_by_reason()
