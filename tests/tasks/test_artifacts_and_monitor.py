"""tasks/ui_publish.py: what a run publishes, read back through a real server's API."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from prefect import flow
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.logging.handlers import APILogWorker
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)

from curriculum.plots import save_loss_curve
from tasks import ui_artifacts as monitor_module
from tasks import ui_publish as monitor
from tests.support.metrics import eval_rows
from tests.support.prefect_server import api_client

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def artifacts(monitored_run, prefect_server):
    with api_client(prefect_server) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[monitored_run.flow_run_id])))
    by_key = {artifact.key: artifact for artifact in found}
    # One artifact per key, though the forgetting table is published after each stage: updated in place.
    assert len(by_key) == len(found), sorted(artifact.key for artifact in found)
    return by_key


def table(artifact) -> list[dict]:
    assert artifact.type == "table"
    return json.loads(artifact.data)


def test_every_artifact_of_a_run_has_its_key_and_kind(artifacts):
    assert {key: artifacts[key].type for key in sorted(artifacts)} == {
        "demo-crawl-books": "table",
        "demo-data-summary": "table",
        "demo-forgetting": "table",
        "demo-loss-curve": "markdown",
        "demo-metrics-books": "table",
        "demo-metrics-warmup": "table",
        "demo-summary": "markdown",
        "demo-train-books": "progress",
        "demo-train-warmup": "progress",
        "demo-token-ledger": "table",
    }
    assert all(artifacts[key].description for key in artifacts)


def test_progress_ends_at_100_percent_and_belongs_to_its_task_run(artifacts, monitored_run):
    for stage, iters in (("warmup", 40), ("books", 60)):
        progress = artifacts[f"demo-train-{stage}"]
        val_loss = [row for row in monitored_run.rows if row["stage"] == stage][-1]["val_loss"]
        assert progress.data == 100.0
        assert progress.description == f"train {stage}: iteration {iters} of {iters} (100%), val loss {val_loss:.4f}"
        assert progress.task_run_id is not None


def test_tables_hold_the_data_summary_crawl_report_metrics_and_forgetting(artifacts, monitored_run):
    summary = table(artifacts["demo-data-summary"])
    assert [row["stage"] for row in summary] == ["warmup", "books"]
    assert summary[0] | {"stage": "x"} == {
        "stage": "x", "documents": 300, "train documents": 286, "val documents": 14, "train tokens": 55_704,
        "val tokens": 2_858, "block size": 64, "skipped": 3, "skipped by reason": "too-short: 3",
        "cache": "fetch ran, tokenize cached"}

    ledger = table(artifacts["demo-token-ledger"])
    assert ledger[0] == {"stage": "warmup", "source": "roneneldan/TinyStories", "length": "a budget of 60,000 tokens",
                         "tokens planned": 60_000, "tokens trained": 59_904, "source tokens": 55_680,
                         "epochs realised": 1.0759, "capped by max_iters": False}
    assert [row["stage"] for row in ledger] == ["warmup", "books"]

    crawl = table(artifacts["demo-crawl-books"])
    assert [(row["item"], row["status"], row["reason"]) for row in crawl] == [
        ("https://example.org/a", "ok", ""), ("https://example.org/b", "skipped", "robots-disallowed")]

    metrics = table(artifacts["demo-metrics-warmup"])
    warmup_rows = [row for row in monitored_run.rows if row["stage"] == "warmup"]
    assert [row["iteration"] for row in metrics] == [row["iter_num"] for row in warmup_rows]
    assert set(metrics[0]) == {"stage", "iteration", "stage iteration", "train loss", "val loss", "lr", "tokens/s"}
    assert metrics[-1]["val loss"] == warmup_rows[-1]["val_loss"]
    assert metrics[-1]["lr"] == 0.00036 and metrics[-1]["tokens/s"] == 25_004

    forgetting = table(artifacts["demo-forgetting"])
    assert artifacts["demo-forgetting"].task_run_id is None  # published from a train task, shown on the flow run
    assert artifacts["demo-metrics-warmup"].task_run_id is not None
    books_end = monitored_run.rows[-1]
    assert [row["after stage"] for row in forgetting] == ["warmup", "books"]
    assert forgetting[0]["val loss books"] is None  # not trained yet after warmup
    assert forgetting[1]["val loss warmup"] == books_end["forgetting"]["warmup"]
    assert forgetting[1]["val loss books"] == books_end["val_loss"]


def test_the_loss_curve_is_an_inline_png_and_the_summary_says_where_things_are(artifacts, monitored_run):
    markdown = artifacts["demo-loss-curve"].data
    match = re.search(r"!\[loss curve\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    png = base64.b64decode(match.group(1))
    assert png.startswith(PNG_MAGIC)
    assert png == (monitored_run.run_dir / "loss_curve.png").read_bytes()
    assert str(monitored_run.run_dir / "loss_curve.png") in markdown

    summary = artifacts["demo-summary"].data
    assert "# Curriculum run `simple`" in summary
    assert f"**Final weights:** `{monitored_run.run_dir / 'final'}`" in summary
    assert "**Code version:** `0123abc`" in summary
    assert "| stage | documents |" in summary and "| warmup | 300 |" in summary
    assert "```yaml\nstages:\n- name: warmup" in summary and "\nname: simple\n" in summary


def test_outside_a_run_every_helper_does_nothing(prefect_server, tmp_path):
    png = save_loss_curve(eval_rows({"a": 10}), tmp_path / "loss.png")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        with api_client(prefect_server) as client:
            before = len(client.read_artifacts())
        assert not monitor.in_run()
        progress = monitor.train_progress("outside", "a", 10)
        for it in range(1, 11):
            progress.update(it)
        progress.finish()
        table = monitor.metrics_table("outside", "a")
        table.add({"a": 1})
        table.flush()
        monitor.publish_data_summary("outside", [{"stage": "a"}])
        monitor.publish_token_ledger("outside", [])
        monitor.publish_forgetting("outside", eval_rows({"a": 10, "b": 10}), ["a", "b"])
        monitor.publish_loss_curve("outside", png)
        monitor.publish_run_summary("outside", "# nothing")
        with api_client(prefect_server) as client:
            assert len(client.read_artifacts()) == before


def test_an_unreachable_api_is_logged_once_and_the_work_goes_on(prefect_server, caplog):
    @flow(flow_run_name="monitor-api-down")
    def build() -> monitor.Progress:
        return monitor.Progress("monitor-api-down", "api down", 10)

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        progress = build()
        assert monitor_module.drain_artifacts()  # its first state (0 %) reached the server
        APILogWorker.drain_all(timeout=5)  # the run's logs, while the server is up

    def train_loop():  # a thread of its own: its client follows the settings below, not the run's
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
            for it in range(1, 11):
                progress.update(it)
            progress.finish()

    with caplog.at_level(logging.WARNING, logger="tasks.ui_artifacts"):
        worker = threading.Thread(target=train_loop)
        worker.start()
        worker.join(timeout=60)
    assert not worker.is_alive()
    warnings = [r.getMessage() for r in caplog.records if r.name == "tasks.ui_artifacts"]
    assert len(warnings) == 1 and "could not publish the progress artifact 'monitor-api-down'" in warnings[0]
    with api_client(prefect_server) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["monitor-api-down"]))
        )
    assert artifact.data == 0.0  # what reached the server before it went away


@contextmanager
def hung_api():
    """An 'API' on 127.0.0.1 that accepts connections and never answers (a server stuck, or gone behind a proxy)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_an_api_that_stops_answering_never_stalls_the_training_loop(prefect_server, caplog):
    """Prefect's client waits out a read timeout and retries; before artifacts went through a publisher thread,
    each update in the training loop waited for that (one step took 75 s)."""
    @flow(flow_run_name="monitor-api-hangs")
    def build() -> monitor.Progress:
        return monitor.Progress("monitor-api-hangs", "api hangs", 200, min_interval_s=0)

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        progress = build()
        assert monitor_module.drain_artifacts()  # created on the real server first
    took: list[float] = []

    def train_loop(url: str) -> None:
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_API_REQUEST_TIMEOUT: 2.0,
                                         PREFECT_CLIENT_MAX_RETRIES: 1}):
            for it in range(1, 201):
                started = time.monotonic()
                progress.update(it)
                took.append(time.monotonic() - started)
                time.sleep(0.01)  # a training step
            started = time.monotonic()
            progress.finish()
            took.append(time.monotonic() - started)

    with hung_api() as url, caplog.at_level(logging.WARNING, logger="tasks.ui_artifacts"):
        worker = threading.Thread(target=train_loop, args=(url,))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("could not publish" in r.getMessage() for r in caplog.records):
            time.sleep(0.1)
    # Every request to this API hangs for 2 s then again after a retry; no update waited for one.
    assert max(took[:-1]) < 0.5, max(took[:-1])
    assert took[-1] <= monitor_module.FINAL_WAIT_S + 1  # the last state waits, bounded
    warnings = [r.getMessage() for r in caplog.records if r.name == "tasks.ui_artifacts"]
    assert sum("could not publish the progress artifact 'monitor-api-hangs'" in w for w in warnings) == 1, warnings


def test_artifact_keys_are_made_valid_and_invalid_ones_are_refused():
    assert monitor.artifact_key("Simple", "train", "warm_up") == "simple-train-warm-up"
    with pytest.raises(ValueError, match=r"artifact key 'Train_Warmup' is invalid.*gives 'train-warmup'"):
        monitor.Progress("Train_Warmup", "x", 1)


def test_a_resumed_stage_keeps_its_earlier_evaluations_once(prefect_server):
    rows = eval_rows({"warmup": 40})  # evaluations at 10, 20, 30, 40

    @flow(flow_run_name="monitor-resume")
    def resumed() -> None:
        # Killed after the evaluation at 20, resumed from a checkpoint at 15: 20 is evaluated again.
        ui = monitor.TrainMonitor("resume", ["warmup"], rows[:2])
        ui.on_stage_start(SimpleNamespace(plan=SimpleNamespace(stage="warmup", total_iters=40), start_iter=15))
        for row in rows[1:]:
            ui.on_step(SimpleNamespace(stage_iter=row["stage_iter"]))
            ui.on_eval(row)
        ui.on_stage_end(SimpleNamespace(val_loss=rows[-1]["val_loss"]))

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        resumed()
        APILogWorker.drain_all(timeout=5)
        with api_client(prefect_server) as client:
            [metrics] = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["resume-metrics-warmup"]))
            )
    assert [row["iteration"] for row in table(metrics)] == [10, 20, 30, 40]
