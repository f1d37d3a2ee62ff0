"""What a curriculum run shows in the Prefect UI: progress bars, tables, the run summary and the loss curve.

Thin helpers over Prefect artifacts for the flow and the train task. Each is safe to call anywhere:
- outside a flow or task run (a unit test, a notebook) it does nothing and costs nothing;
- `Progress.update` and `LiveTable.add` may be called every iteration: they reach the API at most once
  per `min_interval_s` (a clock read otherwise), and they may be called from any thread once built in a run;
- if the API cannot be reached, the failure is logged once per artifact and the run goes on: everything
  shown here is also on disk (metrics.jsonl, the crawl report, the run folder).

Artifact keys (lowercase letters, digits, dashes) start with the run name, e.g. for `--type simple`:
    simple-prepare-<stage>   progress of fetching and tokenizing a stage
    simple-train-<stage>     progress of training a stage (iteration of total)
    simple-data-summary      table: per stage documents, train/val tokens, skipped inputs by reason
    simple-crawl-<stage>     table: the crawl report of a web stage, one row per URL or file
    simple-metrics-<stage>   table: training metrics at each evaluation of a stage
    simple-forgetting        table: after each stage, the val loss on every stage's val set
    simple-loss-curve        markdown: the loss-curve PNG, inline
    simple-summary           markdown: resolved config, code version, per-stage results, final weights
Progress bars and metrics tables belong to the task run that builds them (train-<stage>); the other tables and
the markdown belong to the flow run, so the run's Artifacts tab lists them wherever they were published.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect.artifacts import TableArtifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.context import FlowRunContext, TaskRunContext

from curriculum.prepare import DocumentsRecord, ShardsRecord
from data.web.report import read_crawl_report

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[a-z0-9-]+$")
MAX_CRAWL_ROWS = 1000  # a table beyond this is unreadable in the UI; the full report is on disk
MAX_IMAGE_BYTES = 4 << 20  # an inline image travels in the artifact's data: keep it a plot, not a photo
RETRY_AFTER_S = 30.0  # after the API failed, an artifact waits this long before trying again


def artifact_key(*parts: str) -> str:
    """A valid artifact key from names: `artifact_key("Simple", "train", "warm_up")` -> "simple-train-warm-up"."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    if not key:
        raise ValueError(f"no letters or digits in {parts!r}: an artifact key needs some (a run or stage name)")
    return key


def in_run() -> bool:
    """Whether this thread runs inside a Prefect flow or task run (where artifacts have a run to belong to)."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _run_ids() -> tuple[UUID | None, UUID | None]:
    task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
    task_run_id = task_ctx.task_run.id if task_ctx else None
    flow_run_id = flow_ctx.flow_run.id if flow_ctx and flow_ctx.flow_run else None
    if flow_run_id is None and task_ctx is not None:
        flow_run_id = task_ctx.task_run.flow_run_id
    return task_run_id, flow_run_id


class _Artifact:
    """One artifact of the current run: created on first publish, updated in place afterwards.

    The run is read from the context where the object is built, so later calls may come from any thread.
    """

    def __init__(self, kind: str, key: str, description: str, *, flow_level: bool = False):
        if not KEY_PATTERN.match(key):
            raise ValueError(f"artifact key {key!r} is invalid: use lowercase letters, digits and dashes "
                             f"(artifact_key({key!r}) gives {artifact_key(key)!r})")
        self.kind, self.key, self.description = kind, key, description
        self.enabled = in_run()
        self.task_run_id, self.flow_run_id = _run_ids() if self.enabled else (None, None)
        self.flow_level = flow_level
        if flow_level:
            self.task_run_id = None  # listed on the flow run's Artifacts tab, not only its task run's
        self.id: UUID | None = None
        self._failed = False
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def publish(self, data: Any, description: str | None = None) -> None:
        if not self.enabled:
            return
        if description is not None:
            self.description = description
        if time.monotonic() < self._retry_at:
            return  # the API failed lately: don't stall the caller on every call
        with self._lock:
            try:
                with get_client(sync_client=True) as client:
                    if self.id is None and self.flow_level and self.flow_run_id is not None:
                        self.id = self._existing(client)
                    if self.id is None:
                        self.id = client.create_artifact(ArtifactCreate(
                            key=self.key, type=self.kind, description=self.description, data=data,
                            task_run_id=self.task_run_id, flow_run_id=self.flow_run_id,
                        )).id
                    else:
                        client.update_artifact(self.id, ArtifactUpdate(data=data, description=self.description))
            except httpx.HTTPError as error:
                if not self._failed:
                    log.warning("could not publish the %s artifact %r to the Prefect API (%s); the run goes on, "
                                "the same figures are in the run folder; next try in %.0f s",
                                self.kind, self.key, error, RETRY_AFTER_S)
                self._failed = True
                self._retry_at = time.monotonic() + RETRY_AFTER_S


    def _existing(self, client: Any) -> UUID | None:
        """This flow run's artifact under the key, if one was published already (by an earlier task, or
        before a retry): updated in place, so the run shows one card per key."""
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[self.key]),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[self.flow_run_id])),
            sort=ArtifactSort.CREATED_DESC, limit=1,
        )
        return found[0].id if found else None


def _table_data(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(TableArtifact._sanitize([dict(row) for row in rows]))  # NaN -> null, as Prefect does


class Progress:
    """A progress artifact (0-100 %) for one piece of work, e.g. training a stage.

        progress = Progress(artifact_key(run, "train", stage), "train warmup", total=500, unit="iteration")
        for it in range(1, 501):
            progress.update(it)      # every iteration: reaches the API at most every min_interval_s
        progress.finish()
    """

    def __init__(self, key: str, label: str, total: int | None = None, *, unit: str = "item",
                 min_interval_s: float = 2.0):
        self.label, self.total, self.unit, self.min_interval_s = label, total, unit, min_interval_s
        self.done = 0
        self._artifact = _Artifact("progress", key, label)
        self._next = 0.0  # monotonic time before which update() does not publish
        self._published: float | None = None
        if self._artifact.enabled:
            self._publish(0.0, f"{label}: starting")

    @property
    def percent(self) -> float:
        if not self.total:
            return 0.0
        return max(0.0, min(100.0, 100.0 * self.done / self.total))

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        if not self._artifact.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.min_interval_s
        self._publish(self.percent, self._describe(note))

    def finish(self, note: str = "done") -> None:
        """Show 100 % (or where it stopped, if `done` is short of `total`) whatever the throttle."""
        percent = 100.0 if not self.total or self.done >= self.total else self.percent
        self._publish(percent, self._describe(note))

    def _describe(self, note: str) -> str:
        of = f" of {self.total:,}" if self.total else ""
        percent = f" ({self.percent:.0f}%)" if self.total else ""
        return f"{self.label}: {self.unit} {self.done:,}{of}{percent}" + (f", {note}" if note else "")

    def _publish(self, percent: float, description: str) -> None:
        if percent == self._published and description == self._artifact.description:
            return
        self._published = percent
        self._artifact.publish(float(percent), description)


class LiveTable:
    """A table artifact that grows in place (one artifact, its rows replaced), e.g. metrics at each eval.

    `add` publishes at most every `min_interval_s`; `flush` publishes whatever is pending (call it when the
    work ends). `rows` may seed it, e.g. with the evaluations before a resumed run's restart.
    """

    def __init__(self, key: str, description: str, rows: Iterable[Mapping[str, Any]] = (),
                 *, min_interval_s: float = 5.0):
        self.rows: list[dict[str, Any]] = [dict(row) for row in rows]
        self.min_interval_s = min_interval_s
        self._artifact = _Artifact("table", key, description)
        self._next = 0.0
        self._pending = bool(self.rows)

    def add(self, row: Mapping[str, Any]) -> None:
        self.replace([*self.rows, dict(row)])

    def replace(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """All rows at once (e.g. de-duplicated); published like `add`."""
        self.rows = [dict(row) for row in rows]
        self._pending = True
        if self._artifact.enabled and time.monotonic() >= self._next:
            self.flush()

    def flush(self) -> None:
        if not self._pending or not self._artifact.enabled:
            return
        self._next = time.monotonic() + self.min_interval_s
        self._pending = False
        self._artifact.publish(_table_data(self.rows))


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """A table artifact of the flow run; a later call with the same key in the same run replaces its rows."""
    _Artifact("table", key, description, flow_level=True).publish(_table_data(rows))


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact of the flow run; a later call with the same key in the same run replaces it."""
    _Artifact("markdown", key, description, flow_level=True).publish(markdown)


# --- Rows of the tables: plain functions of the records the pipeline writes ---------------------------------


def _round(value: Any, digits: int = 4) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def data_summary_row(
    documents: DocumentsRecord, shards: ShardsRecord, cached: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """One row of the data summary: documents, train/val tokens, skipped inputs by reason, cache use."""
    skipped = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(documents.skipped.items()))
    row = {
        "stage": documents.stage,
        "documents": documents.n_documents,
        "train documents": shards.train_documents,
        "val documents": shards.val_documents,
        "train tokens": shards.train_tokens,
        "val tokens": shards.val_tokens,
        "block size": shards.block_size,
        "skipped": sum(documents.skipped.values()),
        "skipped by reason": skipped or "none",
    }
    if cached is not None:
        row["cache"] = ", ".join(f"{step} {'cached' if hit else 'ran'}" for step, hit in cached.items())
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


class TrainMonitor:
    """The UI side of training: trainer hooks (same names as TrainHooks' fields) that keep the stage's
    progress bar, its metrics table and the forgetting table up to date. Build it in the train task:

        ui = TrainMonitor(config.name, [s.name for s in config.stages], read_metrics(run_dir))
        hooks = TrainHooks(on_stage_start=ui.on_stage_start, on_step=ui.on_step, on_eval=ui.on_eval,
                           on_stage_end=ui.on_stage_end)   # or call these beside TerminalProgress's

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

    def on_stage_start(self, start: Any) -> None:  # curriculum.trainer.StageStart
        self.stage = start.plan.stage
        self.progress = train_progress(self.run, self.stage, start.plan.total_iters)
        self.progress.update(start.start_iter)
        self.table = metrics_table(self.run, self.stage)
        self.table.replace(self._stage_rows())

    def on_step(self, step: Any) -> None:  # curriculum.trainer.StepInfo
        if self.progress is not None:
            self.progress.update(step.stage_iter)

    def on_eval(self, row: Mapping[str, Any]) -> None:  # one metrics.jsonl row
        self.rows[(row["stage"], int(row["iter_num"]))] = row
        if self.table is not None and row["stage"] == self.stage:
            self.table.replace(self._stage_rows())

    def on_stage_end(self, result: Any) -> None:  # curriculum.trainer.StageResult
        if self.table is not None:
            self.table.flush()
        if self.progress is not None:
            self.progress.finish(f"val loss {result.val_loss:.4f}")
        ordered = sorted(self.rows.values(), key=lambda row: int(row["iter_num"]))
        publish_forgetting(self.run, ordered, self.stage_names)


def publish_data_summary(run: str, rows: Sequence[Mapping[str, Any]]) -> None:
    publish_table(artifact_key(run, "data-summary"), rows,
                  "Data per stage: documents, train/val tokens, skipped inputs by reason")


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


def image_markdown(png: bytes, alt: str) -> str:
    """An inline PNG (a data: URL), which the Prefect UI renders in a markdown artifact (the server has no
    file store for images, and an image artifact needs a URL the browser can fetch)."""
    if len(png) > MAX_IMAGE_BYTES:
        raise ValueError(f"{alt}: {len(png):,} bytes of PNG is too large to inline (limit {MAX_IMAGE_BYTES:,})")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


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
    code_version: str | None,
    stages: Sequence[Mapping[str, Any]],
    final_dir: str | Path | None,
    loss_curve: str | Path | None = None,
) -> str:
    """The run summary: per-stage results, where the final weights are, code version, resolved config.

    `config` is the RunConfig (any pydantic model); `stages` are one mapping per stage, e.g.
    `StageResult.model_dump()` merged with its data summary row (keys shown as they are).
    """
    name = getattr(config, "name", "run")
    resolved = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    lines = [f"# Curriculum run `{name}`", ""]
    lines += [f"- **Final weights:** `{Path(final_dir).resolve()}`" if final_dir else "- **Final weights:** not yet",
              f"- **Code version:** `{code_version or 'unknown (not a git checkout)'}`"]
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
