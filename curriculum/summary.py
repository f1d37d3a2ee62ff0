"""What the CLI prints about each stage: the messages of the reference design
(../shared/reference/curriculum-learning.md: `[Stage i/n]`, dataset, block size, epochs, items, `✓ Stage ...`),
with counts and cache status.
"""

from __future__ import annotations

from collections.abc import Mapping

from curriculum.prepare import DocumentsRecord, ShardsRecord
from curriculum.stages import CurriculumStage


def skipped_by_reason(skipped: Mapping[str, int]) -> str:
    """`reason: count, ...` sorted by reason, or `none`."""
    return ", ".join(f"{reason}: {count:,}" for reason, count in sorted(skipped.items())) or "none"


def cache_use(cached: Mapping[str, bool]) -> str:
    """`fetch cached, tokenize ran, ...`: which prepare steps came from the cache."""
    return ", ".join(f"{step} {'cached' if hit else 'ran'}" for step, hit in cached.items())


def stage_header(index: int, total: int, stage: CurriculumStage) -> str:
    items = f"{stage.n_items:,}" if stage.n_items else "all"
    return (
        f"[Stage {index + 1}/{total}] {stage.name}\n"
        f"  Dataset: {stage.dataset_key}\n"
        f"  Block size: {stage.block_size}\n"
        + (f"  Epochs: {stage.n_epochs}\n" if stage.tokens is None else f"  Tokens: {stage.tokens:,}\n")
        + f"  Items: {items}"
    )


def stage_data_summary(
    documents: DocumentsRecord, shards: ShardsRecord, cached: dict[str, bool], n_items: int | None = None
) -> str:
    shortfall = (
        f"; the source had fewer than n_items={n_items:,}" if n_items and documents.n_documents < n_items else ""
    )
    lines = [
        f"  Documents: {documents.n_documents:,} ({shards.train_documents:,} train / {shards.val_documents:,} val"
        f"{shortfall})",
        f"  Tokens: {shards.train_tokens:,} train / {shards.val_tokens:,} val",
        f"  Skipped inputs: {skipped_by_reason(documents.skipped)}",
        f"  Cache: {cache_use(cached)}",
        f"  Files: {shards.train_path}, {shards.val_path}",
    ]
    if documents.crawl_report:
        lines.append(f"  Crawl report: {documents.crawl_report}")
    # The shards' stage: the documents may be a cached record another stage fetched (a shared source).
    lines.append(f"  ✓ Stage '{shards.stage}' dataset created")
    return "\n".join(lines)
