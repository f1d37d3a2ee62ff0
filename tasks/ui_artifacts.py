"""Artifacts that a running flow or task keeps up to date, safely: thin helpers over Prefect's artifact API.

- Outside a flow or task run (a unit test, a notebook) every helper does nothing and costs nothing.
- `Progress.update` and `LiveTable.add` may be called every iteration: they reach the API at most once per
  `min_interval_s` (a clock read otherwise), from any thread once built in a run.
- They never wait on the network: a process-wide thread sends the newest state of each artifact (_Publisher).
  An artifact's last state (`Progress.finish`, `LiveTable.flush`, the one-shot tables and markdown) waits until
  the API has it, at most FINAL_WAIT_S, and not again while the API is stuck on the send that timed out.
- If the API cannot be reached, the failure is logged once per artifact and the run goes on.
What the curriculum publishes with them is in tasks/ui_publish.py.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.context import FlowRunContext, TaskRunContext

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[a-z0-9-]+$")
MAX_IMAGE_BYTES = 4 << 20  # an inline image travels in the artifact's data: keep it a plot, not a photo
RETRY_AFTER_S = 30.0  # after the API failed, an artifact waits this long before trying again
FINAL_WAIT_S = 15.0  # how long an artifact's last state (finish, flush, one-shot tables) waits for the API


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

    The run is read from the context where the object is built, so later calls may come from any thread. Sending
    happens on the process's publisher thread (_Publisher): a slow or vanished API never stalls the caller.
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
        self._retry_at = 0.0  # set when a send failed: until then, nothing is queued or sent

    def publish(self, data: Any, description: str | None = None, *, wait: bool = False) -> None:
        """Hand `data` to the publisher thread, replacing what this artifact had waiting (only the latest is
        sent). `wait`: until it is sent (or failed), at most FINAL_WAIT_S; for an artifact's last state."""
        if not self.enabled:
            return
        if description is not None:
            self.description = description
        if time.monotonic() < self._retry_at:
            return  # the API failed lately: don't queue work for it on every call
        _publisher().submit(self, data, self.description, wait=wait)

    def settle(self) -> None:
        """Wait (as `publish(wait=True)` does) until what this artifact has queued or in flight is sent."""
        if self.enabled:
            _publisher().wait_for(self)

    def send(self, data: Any, description: str) -> None:
        """On the publisher thread: one create or update through the API, in the submitting caller's settings."""
        if time.monotonic() < self._retry_at:
            return  # queued before the send ahead of it failed
        try:
            # A client of its own (httpx_settings given): the caller's run may have ended and closed its client.
            with get_client(sync_client=True, httpx_settings={}) as client:
                if self.id is None and self.flow_level and self.flow_run_id is not None:
                    self.id = self._existing(client)
                if self.id is None:
                    self.id = client.create_artifact(ArtifactCreate(
                        key=self.key, type=self.kind, description=description, data=data,
                        task_run_id=self.task_run_id, flow_run_id=self.flow_run_id,
                    )).id
                else:
                    client.update_artifact(self.id, ArtifactUpdate(data=data, description=description))
        except Exception as error:  # the API unreachable, hung or refusing: the run goes on without the artifact
            if not self._retry_at:  # the first failure is the one logged
                log.warning("could not publish the %s artifact %r to the Prefect API (%s); the run goes on, "
                            "the same figures are in the run folder; next try in %.0f s",
                            self.kind, self.key, error, RETRY_AFTER_S)
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


class _Publisher:
    """The process's one thread that sends artifacts to the API, so a training step never waits on the network.

    Prefect's client retries a request for minutes when its server vanished or hangs (connect retries with backoff,
    a 60 s read timeout per try): measured before this existed, one training step took 75 s. Here each artifact
    has at most one update waiting (a newer one replaces it), sent in the context (settings, run) of the call that
    made it. A daemon thread: what was never waited for may be lost when the process exits, which is why an
    artifact's last state is published with `wait=True`."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: dict[int, tuple[_Artifact, Any, str, contextvars.Context]] = {}
        self._sending: _Artifact | None = None
        self._stuck = False  # a wait timed out on the send in flight: later waits don't wait for it again
        self._thread = threading.Thread(target=self._run, name="artifact-publisher", daemon=True)
        self._thread.start()

    def submit(self, artifact: _Artifact, data: Any, description: str, *, wait: bool) -> None:
        with self._changed:
            self._waiting.pop(id(artifact), None)  # a stale update is dropped; the newest goes last in line
            self._waiting[id(artifact)] = (artifact, data, description, contextvars.copy_context())
            self._changed.notify_all()
        if wait:
            self.wait_for(artifact)

    def wait_for(self, artifact: _Artifact) -> None:
        """Until nothing of `artifact` is queued or in flight: at most FINAL_WAIT_S, and not at all while the API
        is stuck on an earlier send (so a hung API costs one wait, not one per artifact)."""
        with self._changed:
            if self._stuck:
                return
            if not self._changed.wait_for(
                lambda: id(artifact) not in self._waiting and self._sending is not artifact, FINAL_WAIT_S
            ):
                log.warning("the Prefect API did not take the %s artifact %r within %.0f s; it is sent in the "
                            "background if the API answers while this process runs", artifact.kind, artifact.key,
                            FINAL_WAIT_S)
                self._stuck = True

    def drain(self, timeout: float) -> bool:
        """Until every queued artifact is sent (or failed); False if `timeout` seconds were not enough."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and self._sending is None, timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting))
                artifact, data, description, context = self._waiting.pop(next(iter(self._waiting)))
                self._sending = artifact
            try:
                context.run(artifact.send, data, description)  # catches its own failures
            finally:
                with self._changed:
                    self._sending = None
                    self._stuck = False
                    self._changed.notify_all()


_publishers: dict[int, _Publisher] = {}
_publishers_lock = threading.Lock()


def _publisher() -> _Publisher:
    """This process's publisher (a forked child starts one of its own: it has none of its parent's threads)."""
    with _publishers_lock:
        if os.getpid() not in _publishers:
            _publishers[os.getpid()] = _Publisher()
        return _publishers[os.getpid()]


def drain_artifacts(timeout: float = FINAL_WAIT_S) -> bool:
    """Wait until every artifact this process queued has been sent (or failed); False after `timeout` seconds."""
    return _publisher().drain(timeout)


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
        self._publish(percent, self._describe(note), wait=True)

    def _describe(self, note: str) -> str:
        of = f" of {self.total:,}" if self.total else ""
        percent = f" ({self.percent:.0f}%)" if self.total else ""
        return f"{self.label}: {self.unit} {self.done:,}{of}{percent}" + (f", {note}" if note else "")

    def _publish(self, percent: float, description: str, *, wait: bool = False) -> None:
        if percent == self._published and description == self._artifact.description:
            if wait:
                self._artifact.settle()  # the same state may still be queued
            return
        self._published = percent
        self._artifact.publish(float(percent), description, wait=wait)


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
            self._send(wait=False)

    def flush(self) -> None:
        """Publish what is pending and wait (at most FINAL_WAIT_S) until the API has it: when the work ends."""
        self._send(wait=True)

    def _send(self, *, wait: bool) -> None:
        if not self._pending or not self._artifact.enabled:
            if wait:
                self._artifact.settle()  # the last rows may still be queued
            return
        self._next = time.monotonic() + self.min_interval_s
        self._pending = False
        self._artifact.publish(table_json(self.rows), wait=wait)


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """A table artifact of the flow run; a later call with the same key in the same run replaces its rows."""
    _Artifact("table", key, description, flow_level=True).publish(table_json(rows), wait=True)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact of the flow run; a later call with the same key in the same run replaces it."""
    _Artifact("markdown", key, description, flow_level=True).publish(markdown, wait=True)


def image_markdown(png: bytes, alt: str) -> str:
    """An inline PNG (a data: URL), which the Prefect UI renders in a markdown artifact (the server has no
    file store for images, and an image artifact needs a URL the browser can fetch)."""
    if len(png) > MAX_IMAGE_BYTES:
        raise ValueError(f"{alt}: {len(png):,} bytes of PNG is too large to inline (limit {MAX_IMAGE_BYTES:,})")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
