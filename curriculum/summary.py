"""What the CLI prints about each stage: the original design's messages, with counts and cache status."""

from __future__ import annotations

from curriculum.prepare import DocumentsRecord, ShardsRecord
from curriculum.stages import CurriculumStage


def stage_header(index: int, total: int, stage: CurriculumStage) -> str:
    items = f"{stage.n_items:,}" if stage.n_items else "all"
    return (
        f"[Stage {index + 1}/{total}] {stage.name}\n"
        f"  Dataset: {stage.dataset_key}\n"
        f"  Block size: {stage.block_size}\n"
        f"  Epochs: {stage.n_epochs}\n"
        f"  Items: {items}"
    )


def stage_data_summary(
    documents: DocumentsRecord, shards: ShardsRecord, cached: dict[str, bool], n_items: int | None = None
) -> str:
    shortfall = (
        f"; the source had fewer than n_items={n_items:,}" if n_items and documents.n_documents < n_items else ""
    )
    skipped = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(documents.skipped.items())) or "none"
    steps = ", ".join(f"{step} {'cached' if hit else 'ran'}" for step, hit in cached.items())
    lines = [
        f"  Documents: {documents.n_documents:,} ({shards.train_documents:,} train / {shards.val_documents:,} val"
        f"{shortfall})",
        f"  Tokens: {shards.train_tokens:,} train / {shards.val_tokens:,} val",
        f"  Skipped inputs: {skipped}",
        f"  Cache: {steps}",
        f"  Files: {shards.train_path}, {shards.val_path}",
    ]
    if documents.crawl_report:
        lines.append(f"  Crawl report: {documents.crawl_report}")
    lines.append(f"  ✓ Stage '{documents.stage}' dataset created")
    return "\n".join(lines)
