"""`python flows/curriculum.py` training as a user runs it: cached stages, a retrained last stage, a killed run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.pause import kill_group, pause_env, wait_until_paused
from tests.support.processes import still_running

# Each test runs flows/curriculum.py as a process that trains, with Prefect's temporary server.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "flows" / "curriculum.py"

CONFIG = """
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 32
    n_epochs: 1
    n_items: 200
  - name: books
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 2
  max_iters: 8
  warmup_iters: 2
  eval_interval: 4
  eval_iters: 2
  checkpoint_interval: 2
  dtype: float32
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, books, hub_mirror):
    base = tmp_path_factory.mktemp("train-cli")
    config = base / "tiny.yaml"
    config.write_text(CONFIG.format(book=books / "paine_common-sense_pg147.txt"))
    env = {**os.environ, "CURRICULUM_HUB_MIRROR": str(hub_mirror), "PYTHONUNBUFFERED": "1"}
    return {"base": base, "config": config, "data": base / "data", "env": env}


def command(setup, out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--config", str(setup["config"]), "--data-dir", str(setup["data"]),
            "--out-dir", str(out_dir), *extra]


def run(setup, out_dir: Path, *extra: str) -> str:
    result = subprocess.run(command(setup, out_dir, *extra), capture_output=True, text=True, env=setup["env"],
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr  # the flow's reports go through Prefect's run logger, to stderr


@pytest.fixture(scope="module")
def reference(setup):
    """An uninterrupted run: its final weights are what every other way of getting there must reproduce."""
    out = setup["base"] / "reference"
    output = run(setup, out)
    assert "Starting from: fresh weights" in output and "Starting from: the end of stage 'warmup'" in output
    assert "✓ Curriculum 'tiny' trained" in output
    # The token ledger, before the first stage trains: printed and in the run folder.
    assert output.index("Token ledger (per stage and source, before training):") < output.index("Starting from:")
    ledger = json.loads((out / "token_ledger.json").read_text())
    assert [(row["stage"], row["tokens_trained"], row["capped"]) for row in ledger["rows"]] == [
        ("warmup", 8 * 2 * 32, True), ("books", 8 * 2 * 64, True)]
    # kept aside: a later test retrains this folder with other settings
    (setup["base"] / "reference-metrics.jsonl").write_bytes((out / "metrics.jsonl").read_bytes())
    return out, sha256(out / "final" / "model.safetensors")


def test_second_run_trains_nothing(setup, reference):
    out, final = reference
    output = run(setup, out)
    assert output.count("finished earlier (cached)") == 2
    assert "Iterations:" not in output  # no stage transition, no training
    assert sha256(out / "final" / "model.safetensors") == final


def test_deleting_last_stage_checkpoints_retrains_only_that_stage(setup, reference):
    out, final = reference
    import shutil

    shutil.rmtree(out / "checkpoints" / "01-books")
    output = run(setup, out)
    assert "[Stage 1/2] warmup: finished earlier (cached)" in output
    assert "Starting from: the end of stage 'warmup'" in output
    assert sha256(out / "final" / "model.safetensors") == final


def test_killed_run_resumes_to_identical_weights(setup, reference):
    _, final = reference
    out = setup["base"] / "killed"
    paused, log = setup["base"] / "killed.paused", setup["base"] / "killed.log"
    # Killed mid-stage: after iteration 3 of the books stage, one past its checkpoint at 2.
    env = {**setup["env"], **pause_env(paused, "step", stage_index=1, stage_iter=3)}
    with open(log, "wb") as output:
        process = subprocess.Popen(command(setup, out), env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    wait_until_paused(process, paused, log=lambda: log.read_text(errors="replace"))
    kill_group(process)
    assert (out / "checkpoints" / "01-books" / "iter-0000002").is_dir()
    assert not (out / "final").exists()
    output = run(setup, out)
    assert "[Stage 1/2] warmup: finished earlier (cached)" in output
    assert "Starting from: resuming at iteration" in output
    assert sha256(out / "final" / "model.safetensors") == final


def test_a_killed_run_leaves_no_process_behind_and_the_rerun_resumes(setup):
    """SIGKILL of the run's process alone (`kill -9 <pid>`, the OOM killer), not of its group: what it started dies
    with it, its temporary Prefect server included (flows/temporary_server.py; before, the server ran on)."""
    out = setup["base"] / "sigkilled"
    paused, log = setup["base"] / "sigkilled.paused", setup["base"] / "sigkilled.log"
    env = {**setup["env"], **pause_env(paused, "step", stage_index=0, stage_iter=3)}
    with open(log, "wb") as output:
        process = subprocess.Popen(command(setup, out), env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    started: list[psutil.Process] = []
    try:
        wait_until_paused(process, paused, log=lambda: log.read_text(errors="replace"))
        started = psutil.Process(process.pid).children(recursive=True)
        commands = {p.pid: " ".join(p.cmdline()) for p in started}
        assert any("prefect.server.api.server:create_app" in c for c in commands.values()), commands
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        alive = still_running(started, grace_s=5)
        assert not alive, {p.pid: commands[p.pid] for p in alive}
    finally:
        for child in started:
            with contextlib.suppress(psutil.Error):
                child.kill()
        if process.poll() is None:
            kill_group(process)
    output = run(setup, out)
    assert "Starting from: resuming at iteration" in output


def test_changed_settings_on_resume_are_refused_then_restart_moves_the_folder_aside(setup, reference):
    out, _ = reference
    result = subprocess.run(command(setup, out, "--set", "train.learning_rate=0.001"), capture_output=True,
                            text=True, env=setup["env"], timeout=600)
    assert result.returncode != 0
    assert "train.learning_rate: 0.0006 -> 0.001" in result.stdout + result.stderr
    assert (out / "final" / "model.safetensors").is_file()
    output = run(setup, out, "--set", "train.learning_rate=0.001", "--restart")
    assert "Starting from: fresh weights" in output
    assert list(out.parent.glob(f"{out.name}.old-*"))


def test_two_processes_train_like_one(setup, reference):
    out = setup["base"] / "two-processes"
    result = subprocess.run(command(setup, out, "--nproc", "2", "--set", "train.threads=1"), capture_output=True,
                            text=True, env=setup["env"], timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # rank 0's transition message reaches the train task's run log (Prefect's logger: stderr), as with one process
    logged = [line for line in result.stderr.splitlines() if "train-warmup" in line]
    assert any("[Stage 1/2] warmup" in line for line in logged), result.stderr[-3000:]
    assert "Starting from: fresh weights" in result.stderr
    assert "Starting from: the end of stage 'warmup'" in result.stderr
    assert "✓ Curriculum 'tiny' trained" in result.stderr
    import json

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (setup["base"] / "reference-metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["stage_iter"]) for r in rows] == [(r["stage"], r["stage_iter"]) for r in ref_rows]
    for row, ref in zip(rows, ref_rows, strict=True):
        assert row["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4)
    runtime = [json.loads(line) for line in (out / "runtime.jsonl").read_text().splitlines()]
    assert {r["world_size"] for r in runtime} == {2}


def test_two_machines_run_the_same_command_and_only_the_first_prepares(setup, reference, tmp_path):
    """Two "machines" (two flows, each with a Prefect of its own) meet at a rendezvous on 127.0.0.1. The second
    starts first: it waits for the first's data, takes no folder lock and trains with it."""
    import json
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = setup["base"] / "two-nodes"
    nodes = [("--set", "train.nnodes=2", "--set", f"train.node_rank={rank}", "--set",
              f"train.rdzv_endpoint=127.0.0.1:{port}", "--set", "train.threads=1") for rank in (0, 1)]
    envs = [{**setup["env"], "PREFECT_HOME": str(tmp_path / f"prefect-{rank}")} for rank in (0, 1)]
    second = subprocess.Popen(command(setup, out, *nodes[1]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=envs[1])
    try:
        first = subprocess.run(command(setup, out, *nodes[0]), capture_output=True, text=True, env=envs[0],
                               timeout=600)
        second_output, _ = second.communicate(timeout=300)
    finally:
        second.kill()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert second.returncode == 0, second_output[-3000:]
    assert "✓ Curriculum 'tiny' trained" in first.stderr
    assert "node 1: waiting for node 0" in second_output and "node 0's shards are ready (2 stages)" in second_output
    assert "Cache:" not in second_output and "fetch-" not in second_output  # it prepared nothing
    assert "✓ node 1 of 2: every stage trained" in second_output
    assert (out / "nodes" / "node-1" / ".prefect-results").is_dir() and (out / "prepared.json").is_file()

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (setup["base"] / "reference-metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["stage_iter"]) for r in rows] == [(r["stage"], r["stage_iter"]) for r in ref_rows]
    for row, ref in zip(rows, ref_rows, strict=True):
        assert row["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_training_at_its_next_step_with_a_checkpoint_and_the_rerun_resumes_from_it(
        setup, reference, signum):
    """Training runs on a task runner's thread, where Python never raises a signal's exception: before, Ctrl-C left
    the flow waiting for the stage to train to its end. Now the stage checkpoints at its next step and stops."""
    _, final = reference
    name = signum.name.lower()
    out, paused, log = setup["base"] / name, setup["base"] / f"{name}.paused", setup["base"] / f"{name}.log"
    env = {**setup["env"], **pause_env(paused, "step", stage_index=1, stage_iter=4)}
    with open(log, "wb") as output:
        process = subprocess.Popen(command(setup, out), env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until_paused(process, paused, log=lambda: log.read_text(errors="replace"))
        process.send_signal(signum)  # the flow's process; its temporary Prefect server goes on until it exits
        # The flow's main thread is interrupted while training waits at iteration 4; then iteration 5 trains, and
        # the loop sees the request.
        deadline = time.monotonic() + 60
        while "training stops at its next step" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        paused.unlink()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            kill_group(process)
    output = log.read_text(errors="replace")
    # Iteration 5 of 8: between the stage's checkpoints at 4 and 6, so only the stop could have written it.
    assert "stage 'books' stopped at iteration 5 of 8" in output and f"({signum.name})" in output
    assert (out / "checkpoints" / "01-books" / "iter-0000005").is_dir()
    assert not (out / "checkpoints" / "01-books" / "iter-0000006").exists() and not (out / "final").exists()
    assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGTERM), output[-3000:]
    rerun = run(setup, out)
    assert "Starting from: resuming at iteration 5/8" in rerun
    assert sha256(out / "final" / "model.safetensors") == final
