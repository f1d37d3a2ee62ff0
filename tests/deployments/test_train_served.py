"""Training through `prefect deployment run`: named task runs, the artifacts of issue 5, and a crashed run retried.

The crash test has a server of its own: it kills the serving process, and the shared one serves the other tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.support.configs import TRAIN_OVERRIDES, write_train_config
from tests.support.pause import kill_group, pause_env, wait_until_paused
from tests.support.prefect_server import ROOT, api_client, prefect_cli, trigger, wait_for_run
from tests.support.serving import start_serve

# Prefect servers, serve.py processes and served training runs.
pytestmark = pytest.mark.slow

STAGES = ("warmup", "books", "web")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def task_runs_of(server, flow_run_id) -> dict:
    with api_client(server) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


def test_a_served_training_run_completes_with_a_task_run_per_step_and_stage(trained_run, served):
    assert trained_run.flow_run.state_name == "Completed"
    assert trained_run.flow_run.name.startswith("tiny-train-")
    task_runs = task_runs_of(served.server, trained_run.flow_run.id)
    for stage in STAGES:
        for step in ("fetch", "tokenize", "shard", "train"):
            assert task_runs[f"{step}-{stage}"].state.is_completed(), sorted(task_runs)
    assert (trained_run.out_dir / "final" / "model.safetensors").is_file()
    assert (trained_run.out_dir / "loss_curve.png").read_bytes().startswith(b"\x89PNG")


def test_a_served_training_run_publishes_tables_progress_loss_curve_and_summary(trained_run, served):
    with api_client(served.server) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[trained_run.flow_run.id])))
    artifacts = {artifact.key: artifact for artifact in found}

    summary = json.loads(artifacts["tiny-data-summary"].data)
    assert [row["stage"] for row in summary] == list(STAGES)
    assert all(row["train tokens"] > 0 and row["val tokens"] > 0 for row in summary)

    for stage in STAGES:
        assert artifacts[f"tiny-train-{stage}"].type == "progress"
        assert artifacts[f"tiny-train-{stage}"].data == 100.0
        metrics = json.loads(artifacts[f"tiny-metrics-{stage}"].data)
        assert [row["stage iteration"] for row in metrics] == [4, 8, 12]
        assert all(row["val loss"] > 0 and row["train loss"] > 0 and row["lr"] > 0 for row in metrics)

    forgetting = json.loads(artifacts["tiny-forgetting"].data)
    assert [row["after stage"] for row in forgetting] == list(STAGES)
    assert all(forgetting[2][f"val loss {stage}"] > 0 for stage in STAGES)
    assert forgetting[0]["val loss books"] is None  # not trained yet after warmup

    for stage in STAGES:  # fetching and tokenizing progress, per stage
        assert artifacts[f"tiny-prepare-{stage}"].type == "progress"
        assert artifacts[f"tiny-prepare-{stage}"].data == 100.0

    crawl = {row["item"].rsplit("/", 1)[-1]: row for row in json.loads(artifacts["tiny-crawl-web"].data)}
    assert crawl["pypdf-encrypted-file.pdf"]["status"] == "skipped"
    assert crawl["pypdf-encrypted-file.pdf"]["reason"] == "encrypted"
    assert crawl["bbc-1.html"]["status"] == "ok" and crawl["bbc-1.html"]["chars"] > 1000

    assert artifacts["tiny-loss-curve"].type == "markdown"
    assert "](data:image/png;base64," in artifacts["tiny-loss-curve"].data
    run_summary = artifacts["tiny-summary"].data
    assert str(trained_run.out_dir / "final") in run_summary
    assert "max_iters: 12" in run_summary  # the resolved config, overrides applied


def test_a_cli_run_of_the_same_config_finds_everything_in_the_served_runs_cache(trained_run, served):
    """Served and CLI runs share caches; re-reading an unchanged web stage leaves tokenize and train cached."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "curriculum.py"), "--config", str(trained_run.config_path),
         "--out-dir", str(trained_run.out_dir), *(f"--set={k}={v}" for k, v in TRAIN_OVERRIDES.items())],
        capture_output=True, text=True, env=served.server.env(CURRICULUM_HUB_MIRROR=os.environ.get(
            "CURRICULUM_HUB_MIRROR", str(ROOT.parent / "shared" / "hub"))), cwd=ROOT.parent, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    cache = [line.split("Cache:", 1)[1].strip() for line in output.splitlines() if "Cache:" in line]
    assert cache == ["fetch cached, tokenize cached, shard cached"] * 2 + ["fetch ran, tokenize cached, shard cached"]
    assert output.count("finished earlier (cached)") == 3


@pytest.fixture(scope="module")
def two_process_run(trained_run, served):
    """The same served run with {"train.nproc": 2}: the data from trained_run's cache, training under torchrun."""
    out_dir = trained_run.out_dir.with_name("run-2proc")
    flow_run_id, result = trigger(served.server, "curriculum/simple", config_path=str(trained_run.config_path),
                                  overrides={**TRAIN_OVERRIDES, "train.nproc": 2, "train.out_dir": str(out_dir)})
    assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
    return wait_for_run(served.server, flow_run_id, log=served.log_path, timeout=420), out_dir


def _artifacts(server, flow_run_id) -> dict:
    with api_client(server) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {artifact.key: artifact for artifact in found}


def test_a_two_process_served_run_shows_what_a_one_process_run_shows(trained_run, two_process_run, served):
    run, out_dir = two_process_run
    assert run.state_name == "Completed", run.state_name
    one, two = task_runs_of(served.server, trained_run.flow_run.id), task_runs_of(served.server, run.id)
    # The data came from the first run's cache: its tokenize chunks (tokenize-<stage>-i/n) ran only then.
    assert sorted(two) == sorted(name for name in one if not re.search(r"-\d+/\d+$", name))
    assert all(task_run.state.is_completed() for task_run in two.values())
    one_artifacts, two_artifacts = _artifacts(served.server, trained_run.flow_run.id), _artifacts(served.server, run.id)
    # The data came from the first run's cache, so only the web stage (fetched every time) reports preparing.
    preparing = {key for key in one_artifacts if key.startswith("tiny-prepare-")} - {"tiny-prepare-web"}
    assert sorted(two_artifacts) == sorted(set(one_artifacts) - preparing)
    for stage in STAGES:
        assert two_artifacts[f"tiny-train-{stage}"].data == 100.0  # rank 0's progress reached the UI
        rows_one = json.loads(one_artifacts[f"tiny-metrics-{stage}"].data)
        rows_two = json.loads(two_artifacts[f"tiny-metrics-{stage}"].data)
        assert [r["stage iteration"] for r in rows_two] == [r["stage iteration"] for r in rows_one] == [4, 8, 12]
        for a, b in zip(rows_one, rows_two, strict=True):  # the same sequences, split over two processes
            assert b["val loss"] == pytest.approx(a["val loss"], rel=1e-4)
    assert (out_dir / "final" / "model.safetensors").is_file()



def test_a_run_whose_process_was_killed_is_marked_crashed_and_its_retry_resumes(own_server, trained_run, hub_mirror,
                                                                                  tmp_path):
    serve_args = ("--crash-after", "60")
    env = {"CURRICULUM_HUB_MIRROR": str(hub_mirror)}
    paused = tmp_path / "paused"
    # The flow run (a child of serve.py) stops after iteration 3 of the books stage, one past its checkpoint at 2.
    served = start_serve(own_server, tmp_path, {**env, **pause_env(paused, "step", stage_index=1, stage_iter=3)},
                         args=serve_args)
    config_path = write_train_config(tmp_path)
    out_dir = tmp_path / "run"
    flow_run_id, result = trigger(own_server, "curriculum/simple", config_path=str(config_path),
                                  overrides={**TRAIN_OVERRIDES, "train.out_dir": str(out_dir)})
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        wait_until_paused(served.process, paused, log=served.log)
        # The serving process and the flow run's child process die together, mid-stage.
        kill_group(served.process)
        assert (out_dir / "checkpoints" / "01-books" / "iter-0000002").is_dir()
        assert not (out_dir / "final").exists()

        # No process is left to report the end: the heartbeat automation marks the run Crashed.
        crashed = wait_for_run(own_server, flow_run_id, timeout=180)
        assert crashed.state_name == "Crashed", crashed.state_name

        again = tmp_path / "restarted"
        again.mkdir()
        served = start_serve(own_server, again, env, args=serve_args)  # no pause this time
        retry = prefect_cli(own_server, "flow-run", "retry", flow_run_id)
        assert retry.returncode == 0, retry.stdout + retry.stderr
        done = wait_for_run(own_server, flow_run_id, timeout=300, log=served.log_path)
        assert done.state_name == "Completed", served.log()[-3000:]
    finally:
        served.stop()

    log = served.log()
    assert "Starting from: resuming at iteration" in log
    assert "Starting from: fresh weights" not in log  # the warmup stage was not trained again
    task_runs = task_runs_of(own_server, flow_run_id)
    assert task_runs["train-warmup"].state.is_completed()
    final = "final/model.safetensors"
    assert sha256(out_dir / final) == sha256(trained_run.out_dir / final)
