"""What a curriculum run shows in the Prefect UI: progress bars, tables, the run summary and the loss curve.

Built on tasks/ui_artifacts.py, so each is safe to call anywhere (a no-op outside a run, throttled, and a
failing API is logged once while the run goes on): everything shown here is also on disk (metrics.jsonl,
the crawl report, the run folder).

Artifact keys (lowercase letters, digits, dashes) start with the run name, e.g. for `--type simple`:
    simple-prepare-<stage>   progress of fetching and tokenizing a stage
    simple-train-<stage>     progress of training a stage (iteration of total)
    simple-data-summary      table: per stage documents, train/val tokens, skipped inputs by reason
    simple-crawl-<stage>     table: the crawl report of a web stage, one row per URL or file
    simple-metrics-<stage>   table: training metrics at each evaluation of a stage
    simple-forgetting        table: after each stage, the val loss on every stage's val set
    simple-token-ledger      table: per stage and source, tokens planned and trained, epochs realised
    simple-loss-curve        markdown: the loss-curve PNG, inline
    simple-summary           markdown: resolved config, git commit, per-stage results, final weights
Progress bars and metrics tables belong to the task run that builds them (train-<stage>); the other tables and
the markdown belong to the flow run, so the run's Artifacts tab lists them wherever they were published.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from curriculum.prepare import DocumentsRecord, ShardsRecord
from curriculum.summary import cache_use, skipped_by_reason
from curriculum.training.ledger import LedgerRow
from curriculum.training.types import MetricsRow, StageResult, StageStart, StepInfo, TrainListener
from data.web.report import read_crawl_report
from data.web.urls import redact_all
from tasks.ui_artifacts import (  # noqa: F401  (artifact_key, in_run, Progress: re-exported for callers)
    LiveTable,
    Progress,
    artifact_key,
    image_markdown,
    in_run,
    publish_markdown,
    publish_table,
)

log = logging.getLogger(__name__)

MAX_CRAWL_ROWS = 1000  # a table beyond this is unreadable in the UI; the full report is on disk


# --- Rows of the tables: plain functions of the records the pipeline writes ---------------------------------


def _round(value: Any, digits: int = 4) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def data_summary_row(
    documents: DocumentsRecord, shards: ShardsRecord, cached: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """One row of the data summary: documents, train/val tokens, skipped inputs by reason, cache use."""
    row = {
        "stage": shards.stage,  # (documents may be a record another stage with the same source fetched)
        "documents": documents.n_documents,
        "train documents": shards.train_documents,
        "val documents": shards.val_documents,
        "train tokens": shards.train_tokens,
        "val tokens": shards.val_tokens,
        "block size": shards.block_size,
        "skipped": sum(documents.skipped.values()),
        "skipped by reason": skipped_by_reason(documents.skipped),
    }
    if cached is not None:
        row["cache"] = cache_use(cached)
    return row


def crawl_report_rows(path: str | Path, limit: int = MAX_CRAWL_ROWS) -> list[dict[str, Any]]:
    """The crawl report as table rows, one per URL, file or bad list line (the first `limit`)."""
    rows = []
    for row in read_crawl_report(path).rows[:limit]:
        rows.append({
            "item": row.item,
            "status": row.status,
            "reason": row.reason,
            "http": row.http_status,
            "kind": row.kind,
            "chars": row.chars,
            "bytes": row.bytes,
            "seconds": _round(row.seconds, 2),
            "attempts": row.attempts,
            "detail": row.detail[:200],
        })
    return rows


def metrics_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics.jsonl row as shown in the metrics table: iteration, losses, LR, tokens/s."""
    tokens_per_s = row.get("tokens_per_s")
    return {
        "stage": row["stage"],
        "iteration": row["iter_num"],
        "stage iteration": row.get("stage_iter"),
        "train loss": _round(row.get("train_loss")),
        "val loss": _round(row.get("val_loss")),
        "lr": float(f"{row['lr']:.3g}") if row.get("lr") is not None else None,
        "tokens/s": round(tokens_per_s) if tokens_per_s is not None and math.isfinite(tokens_per_s) else None,
    }


def forgetting_rows(eval_rows: Iterable[Mapping[str, Any]], stage_names: Sequence[str]) -> list[dict[str, Any]]:
    """After each finished stage, the val loss on every stage's val set so far (the stage's own included).

    From the stage-end rows of metrics.jsonl (`stage_end: true`, `forgetting: {earlier stage: val loss}`);
    a stage not yet trained has an empty cell. The last row for a stage wins (a resumed run may repeat it).
    """
    ends: dict[str, Mapping[str, Any]] = {}
    for row in eval_rows:
        if row.get("stage_end"):
            ends[row["stage"]] = row
    table = []
    for stage in stage_names:
        if stage not in ends:
            continue
        row = ends[stage]
        losses = {**row.get("forgetting", {}), stage: row["val_loss"]}
        table.append({
            "after stage": stage,
            "iteration": row["iter_num"],
            **{f"val loss {name}": _round(losses.get(name)) for name in stage_names},
        })
    return table


# --- The artifacts ---------------------------------------------------------------------------------------------


def prepare_progress(run: str, stage: str, total: int | None = None, unit: str = "document") -> Progress:
    return Progress(artifact_key(run, "prepare", stage), f"prepare {stage}", total, unit=unit)


def train_progress(run: str, stage: str, total_iters: int) -> Progress:
    return Progress(artifact_key(run, "train", stage), f"train {stage}", total_iters, unit="iteration")


def metrics_table(run: str, stage: str, earlier: Iterable[Mapping[str, Any]] = ()) -> LiveTable:
    """The metrics table of one stage; `add(metrics_row(row))` at each evaluation, `flush()` at the end."""
    return LiveTable(
        artifact_key(run, "metrics", stage), f"Training metrics of stage {stage} at each evaluation",
        [metrics_row(row) for row in earlier],
    )


class TrainMonitor(TrainListener):
    """The UI side of training: a trainer listener that keeps the stage's progress bar, its metrics table
    and the forgetting table up to date. Build it in the train task:

        ui = TrainMonitor(config.name, [s.name for s in config.stages], read_metrics(run_dir))
        train_stage(..., listener=TrainListeners([TerminalProgress(), ui]))

    `earlier_rows` (metrics.jsonl so far) seeds the tables, so a resumed stage keeps its earlier evaluations
    and the forgetting table covers stages trained in earlier tasks; a re-evaluated iteration replaces its row.
    """

    def __init__(self, run: str, stage_names: Sequence[str], earlier_rows: Iterable[Mapping[str, Any]] = ()):
        self.run, self.stage_names = run, list(stage_names)
        self.rows: dict[tuple[str, int], Mapping[str, Any]] = {}
        for row in earlier_rows:
            self.rows[(row["stage"], int(row["iter_num"]))] = row
        self.progress: Progress | None = None
        self.table: LiveTable | None = None
        self.stage: str | None = None

    def _stage_rows(self) -> list[dict[str, Any]]:
        return [metrics_row(row) for (stage, _), row in sorted(self.rows.items(), key=lambda kv: kv[0][1])
                if stage == self.stage]

    def on_stage_start(self, start: StageStart) -> None:
        self.stage = start.plan.stage
        self.progress = train_progress(self.run, self.stage, start.plan.total_iters)
        self.progress.update(start.start_iter)
        self.table = metrics_table(self.run, self.stage)
        self.table.replace(self._stage_rows())

    def on_step(self, step: StepInfo) -> None:
        if self.progress is not None:
            self.progress.update(step.stage_iter)

    def on_eval(self, row: MetricsRow) -> None:
        self.rows[(row["stage"], int(row["iter_num"]))] = row
        if self.table is not None and row["stage"] == self.stage:
            self.table.replace(self._stage_rows())

    def on_stage_end(self, result: StageResult) -> None:
        if self.table is not None:
            self.table.flush()
        if self.progress is not None:
            self.progress.finish(f"val loss {result.val_loss:.4f}")
        ordered = sorted(self.rows.values(), key=lambda row: int(row["iter_num"]))
        publish_forgetting(self.run, ordered, self.stage_names)


def publish_data_summary(run: str, rows: Sequence[Mapping[str, Any]]) -> None:
    publish_table(artifact_key(run, "data-summary"), rows,
                  "Data per stage: documents, train/val tokens, skipped inputs by reason")


def publish_token_ledger(run: str, rows: Sequence[LedgerRow]) -> None:
    table = [{"stage": row.stage, "source": row.source, "length": row.length, "tokens planned": row.tokens_planned,
              "tokens trained": row.tokens_trained, "source tokens": row.source_tokens,
              "epochs realised": row.epochs_realised, "capped by max_iters": row.capped} for row in rows]
    publish_table(artifact_key(run, "token-ledger"), table,
                  "Token ledger: per stage and source, tokens planned and trained, epochs realised (repetition)")


def publish_crawl_report(run: str, stage: str, report_path: str | Path) -> None:
    if not in_run():
        return
    rows = crawl_report_rows(report_path)
    publish_table(artifact_key(run, "crawl", stage), rows,
                  f"Crawl report of stage {stage}: one row per URL or file (first {MAX_CRAWL_ROWS}); "
                  f"full report: {report_path}")


def publish_forgetting(run: str, eval_rows: Iterable[Mapping[str, Any]], stage_names: Sequence[str]) -> None:
    rows = forgetting_rows(eval_rows, stage_names)
    if rows:
        publish_table(artifact_key(run, "forgetting"), rows,
                      "Forgetting: after each stage, the val loss on every stage's val set")


def publish_loss_curve(run: str, png_path: str | Path) -> None:
    """The loss-curve PNG (curriculum.plots.save_loss_curve) as a markdown artifact, with where it is saved."""
    if not in_run():
        return
    png_path = Path(png_path)
    markdown = f"{image_markdown(png_path.read_bytes(), 'loss curve')}\n\nSaved at `{png_path.resolve()}`.\n"
    publish_markdown(artifact_key(run, "loss-curve"), markdown,
                     "Train and val loss across the whole curriculum; dashed lines are stage boundaries")


def run_summary_markdown(
    config: Any,
    *,
    git_commit: str | None,
    stages: Sequence[Mapping[str, Any]],
    final_dir: str | Path | None,
    loss_curve: str | Path | None = None,
) -> str:
    """The run summary: per-stage results, where the final weights are, the git commit, resolved config.

    `config` is the RunConfig (any pydantic model); `stages` are one mapping per stage, e.g.
    `StageResult.model_dump()` merged with its data summary row (keys shown as they are).
    """
    name = getattr(config, "name", "run")
    resolved = redact_all(config.model_dump(mode="json") if hasattr(config, "model_dump") else config)
    lines = [f"# Curriculum run `{name}`", ""]
    lines += [f"- **Final weights:** `{Path(final_dir).resolve()}`" if final_dir else "- **Final weights:** not yet",
              f"- **Code version:** `{git_commit or 'unknown (not a git checkout)'}`"]
    if loss_curve:
        lines.append(f"- **Loss curve:** `{Path(loss_curve).resolve()}`")
    lines += ["", "## Stages", ""]
    if stages:
        columns = list(dict.fromkeys(key for stage in stages for key in stage))
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for stage in stages:
            lines.append("| " + " | ".join(_cell(stage.get(column)) for column in columns) + " |")
    else:
        lines.append("No stage finished.")
    lines += ["", "## Resolved configuration", "", "```yaml",
              yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, dict):
        value = ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def publish_run_summary(run: str, markdown: str) -> None:
    publish_markdown(artifact_key(run, "summary"), markdown,
                     "Run summary: per-stage results, final weights, code version, resolved config")
