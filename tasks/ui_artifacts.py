"""Artifacts that a running flow or task keeps up to date, safely: thin helpers over Prefect's artifact API.

- Outside a flow or task run (a unit test, a notebook) every helper does nothing and costs nothing.
- `Progress.update` and `LiveTable.add` may be called every iteration: they reach the API at most once per
  `min_interval_s` (a clock read otherwise), from any thread once built in a run.
- If the API cannot be reached, the failure is logged once per artifact and the run goes on.
What the curriculum publishes with them is in tasks/ui_publish.py.
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
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.context import FlowRunContext, TaskRunContext

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[a-z0-9-]+$")
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


def table_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a table artifact's data: strict JSON, where NaN and infinities (JSON has no such numbers,
    and the UI's parser rejects Python's `NaN`/`Infinity`) become null, shown as an empty cell."""
    return json.dumps([_finite_or_none(dict(row)) for row in rows], allow_nan=False)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


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
        self._artifact.publish(table_json(self.rows))


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """A table artifact of the flow run; a later call with the same key in the same run replaces its rows."""
    _Artifact("table", key, description, flow_level=True).publish(table_json(rows))


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact of the flow run; a later call with the same key in the same run replaces it."""
    _Artifact("markdown", key, description, flow_level=True).publish(markdown)


def image_markdown(png: bytes, alt: str) -> str:
    """An inline PNG (a data: URL), which the Prefect UI renders in a markdown artifact (the server has no
    file store for images, and an image artifact needs a URL the browser can fetch)."""
    if len(png) > MAX_IMAGE_BYTES:
        raise ValueError(f"{alt}: {len(png):,} bytes of PNG is too large to inline (limit {MAX_IMAGE_BYTES:,})")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
