"""Several training processes (torchrun, gloo on CPU): the same data and losses as one process, rank 0's events
in the launcher's listener, a killed rank failing the stage quickly with nothing left running, and a run
resumed with another process count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from curriculum.training.run_dir import read_metrics

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _cfgs(kit, nproc, dtype="auto"):
    """The tiny model and settings with `nproc` processes. Tests that compare runs with different process counts
    need float32: in bfloat16 the ranks' split of the batch changes how sums round (see the bf16 test)."""
    model = kit.TINY_MODEL.model_copy(update={"dropout": 0.0})  # dropout streams differ per rank: docs/scale-out.md
    train = kit.TINY_TRAIN.model_copy(update={"nproc": nproc, "threads": 1, "dtype": dtype})
    return model, train


def train_launched(curriculum, data_dir, model_cfg, train_cfg, run_dir, listener=None):
    """Every stage in order through the launcher (torchrun when train_cfg.nproc > 1)."""
    from curriculum.training.launch import train_stage_launched
    from curriculum.training.trainer import StageData
    from data.shards import read_header

    tokens = {s.name: int(read_header(s.shard_path(data_dir, "train"))["n_tokens"]) for s in curriculum.stages}
    return [
        train_stage_launched(
            curriculum, i, StageData.for_stage(data_dir, curriculum, i), model_cfg, train_cfg, run_dir,
            train_tokens=tokens, expect_tokenizer={"tokenizer": "r50k_base", "vocab_size": 50257}, listener=listener,
        )
        for i in range(len(curriculum.stages))
    ]


def _weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


def test_two_processes_train_like_one(kit, shard_dir, curriculum, tmp_path):
    """Float32, on any CPU: the ranks split each batch exactly as one process takes it."""
    model, one_cfg = _cfgs(kit, 1, dtype="float32")
    _, two_cfg = _cfgs(kit, 2, dtype="float32")
    kit.train_all_stages(curriculum, shard_dir, model, one_cfg, tmp_path / "one", expect_tokenizer=kit.EXPECT)
    recorder = kit.Recorder()
    results = train_launched(curriculum, shard_dir, model, two_cfg, tmp_path / "two", listener=recorder)

    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [(r["stage"], r["stage_iter"]) for r in two] == [(r["stage"], r["stage_iter"]) for r in one]
    for a, b in zip(one, two, strict=True):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, a, b)
        for name, value in a.get("forgetting", {}).items():
            assert b["forgetting"][name] == pytest.approx(value, rel=1e-4)
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert w1.keys() == w2.keys()
    for name in w1:
        np.testing.assert_allclose(w2[name], w1[name], rtol=1e-3, atol=1e-5, err_msg=name)
    # rank 0's events reached this process's listener, as from a one-process run
    assert len(recorder.steps) == 10 + 12 and len(recorder.evals) == len(two)
    assert [e.stage for e in recorder.ends] == ["warmup", "books"]
    assert [r.stage for r in results] == ["warmup", "books"]
    assert results[-1].checkpoint == (tmp_path / "two" / "checkpoints" / "01-books" / "end").resolve()
    runtime = [json.loads(line) for line in (tmp_path / "two" / "runtime.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in runtime] == [2, 2] and [r["threads"] for r in runtime] == [1, 1]


RUNNER = """
import sys
sys.path[:0] = [{root!r}, {here!r}]
import conftest, test_train_ddp
from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig
from model.config import ModelConfig
spec = {spec!r}
test_train_ddp.train_launched(Curriculum.model_validate(spec["curriculum"]), spec["data_dir"],
    ModelConfig.model_validate(spec["model"]), TrainConfig.model_validate(spec["train"]), spec["run_dir"])
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: /proc says so
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def _spec(curriculum, shard_dir, model, train_cfg, run_dir) -> dict:
    return {"curriculum": curriculum.model_dump(mode="json", exclude_unset=True), "data_dir": str(shard_dir),
            "model": model.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json"), "run_dir": str(run_dir)}


def start_paused(runner: str, spec: dict, pause_at: str, paused: Path, scratch: Path,
                 new_session: bool = False, ranks: int = 2) -> subprocess.Popen:
    """`runner` (a script template) in a process of its own, with every rank pausing at `pause_at`; returns once
    all `ranks` of them pause (each adds its line to `paused`; the launcher's folder, with the ranks' pid files,
    is under `scratch`)."""
    env = dict(os.environ, CURRICULUM_PAUSE_AT=pause_at, CURRICULUM_PAUSED_FILE=str(paused), TMPDIR=str(scratch))
    code = runner.format(root=str(ROOT), here=str(HERE), spec=spec)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
    deadline = time.monotonic() + 240
    while not paused.exists() or len(paused.read_text().splitlines()) < ranks:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[0])
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training did not reach its pause point")
        time.sleep(0.1)
    return proc


def test_a_killed_rank_fails_the_stage_and_a_single_process_resumes_it(kit, shard_dir, curriculum, tmp_path):
    model, two_cfg = _cfgs(kit, 2)
    run_dir, paused, scratch = tmp_path / "run", tmp_path / "paused", tmp_path / "scratch"
    scratch.mkdir()
    # every rank pauses after iteration 4 of stage 2 (its checkpoint at 3 is written); rank 1 is then killed
    proc = start_paused(RUNNER, _spec(curriculum, shard_dir, model, two_cfg, run_dir), "step:1:4", paused, scratch)
    try:
        pids = {p.name: int(p.read_text()) for p in scratch.glob("curriculum-ddp-*/pid-rank*")}
        assert set(pids) == {"pid-rank0", "pid-rank1"}
        killed_at = time.monotonic()
        os.kill(pids["pid-rank1"], signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "DistributedTrainingError: training with 2 processes failed" in out, out
    assert "SIGKILL" in out or "-9" in out, out
    assert took < 30, f"the failure took {took:.1f}s to surface"
    time.sleep(1)
    assert not [pid for pid in pids.values() if _alive(pid)], "a training process outlived the failed stage"
    assert not list(scratch.glob("curriculum-ddp-*")), "the launcher's folder was left behind"
    assert not (run_dir / "final").exists()

    # The same run goes on with one process: world size is bookkeeping, the resume guard lets it through.
    paused.unlink(missing_ok=True)
    _, one_cfg = _cfgs(kit, 1)
    recorder = kit.Recorder()
    kit.train_all_stages(curriculum, shard_dir, model, one_cfg, run_dir, expect_tokenizer=kit.EXPECT,
                         listener=recorder)
    assert recorder.starts[0].start_iter == 3  # the newest in-stage checkpoint of the two-process run
    assert (run_dir / "final" / "model.safetensors").is_file()
    books = [r["stage_iter"] for r in read_metrics(run_dir) if r["stage"] == "books"]
    assert books == [4, 8, 12]  # metrics continue without a gap (nor a repeat)


def test_a_killed_two_process_run_resumes_bit_identical(kit, shard_dir, curriculum, tmp_path):
    """With dropout on: each rank's dropout stream is a function of (seed, stage, iteration, rank)."""
    _, two_cfg = _cfgs(kit, 2)
    model = kit.TINY_MODEL
    train_launched(curriculum, shard_dir, model, two_cfg, tmp_path / "unbroken")
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = start_paused(RUNNER, _spec(curriculum, shard_dir, model, two_cfg, run_dir), "step:1:5", paused, scratch,
                        new_session=True)
    try:
        pids = [int(p.read_text()) for p in scratch.glob("curriculum-ddp-*/pid-rank*")]
        os.kill(proc.pid, signal.SIGKILL)  # the task's process only: torchrun and the ranks must follow it
        proc.communicate(timeout=60)  # returns once nothing holds its output open: every rank is gone
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(pids) == 2
    time.sleep(1)
    assert not [pid for pid in pids if _alive(pid)], "a training process outlived the killed task"
    assert not (run_dir / "final").exists()
    paused.unlink(missing_ok=True)
    recorder = kit.Recorder()
    train_launched(curriculum, shard_dir, model, two_cfg, run_dir, listener=recorder)
    assert recorder.starts[0].start_iter == 3
    final = "final/model.safetensors"
    assert (run_dir / final).read_bytes() == (tmp_path / "unbroken" / final).read_bytes()
    end = "checkpoints/01-books/end/optimizer.safetensors"
    assert (run_dir / end).read_bytes() == (tmp_path / "unbroken" / end).read_bytes()


STOPPED_RUNNER = """
import contextvars, sys, threading
sys.path[:0] = [{root!r}, {here!r}]
import conftest, test_train_ddp
from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig
from curriculum.training.stop import stop_on_exit
from model.config import ModelConfig
spec = {spec!r}
finished = threading.Event()
def train():  # on a thread of its own, in a copy of the flow body's context, as a Prefect task runs
    try:
        test_train_ddp.train_launched(Curriculum.model_validate(spec["curriculum"]), spec["data_dir"],
            ModelConfig.model_validate(spec["model"]), TrainConfig.model_validate(spec["train"]), spec["run_dir"])
    except Exception as error:
        # one write: the flow thread prints too
        print("TRAIN TASK: " + type(error).__name__ + " " + str(error), flush=True)
    finally:
        finished.set()
try:
    with stop_on_exit() as stop:
        task = threading.Thread(target=contextvars.copy_context().run, args=(train,))
        task.start()
        # The flow waits on its task's result, as Prefect's engine does. Not Thread.join: on Python 3.11 a
        # Ctrl-C inside join() marks the thread as ended while it runs on (threading.py, bpo-45274), and the
        # interpreter then exits without waiting for it.
        finished.wait()
except KeyboardInterrupt:
    print("FLOW: interrupted, training loops still running: " + str(stop.running), flush=True)
    finished.wait()
"""


def test_ctrl_c_stops_two_processes_and_their_ranks(kit, shard_dir, curriculum, tmp_path):
    """The launcher's thread sees the flow's stop request and stops torchrun: no rank trains on to the stage end."""
    model, two_cfg = _cfgs(kit, 2)
    run_dir, paused, scratch = tmp_path / "run", tmp_path / "paused", tmp_path / "scratch"
    scratch.mkdir()
    proc = start_paused(STOPPED_RUNNER, _spec(curriculum, shard_dir, model, two_cfg, run_dir), "step:1:4", paused,
                        scratch, new_session=True)
    try:
        pids = [int(p.read_text()) for p in scratch.glob("curriculum-ddp-*/pid-rank*")]
        os.kill(proc.pid, signal.SIGINT)  # the flow's process only, as a scheduler signals a job
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "TRAIN TASK: TrainingStopped training with 2 processes stopped (SIGINT)" in out, out
    assert "FLOW: interrupted, training loops still running: 0" in out, out
    assert len(pids) == 2
    time.sleep(1)
    assert not [pid for pid in pids if _alive(pid)], "a rank outlived the stop"
    assert (run_dir / "checkpoints" / "01-books" / "iter-0000003").is_dir() and not (run_dir / "final").exists()


def test_a_stop_before_the_ranks_start_starts_none(kit, shard_dir, curriculum, tmp_path, monkeypatch):
    """A flow stopped between its stages: the next stage's launcher raises TrainingStopped and starts no torchrun."""
    from curriculum.training.stop import TrainingStopped, stop_on_exit

    model, two_cfg = _cfgs(kit, 2)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the launcher would make its folder
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(KeyboardInterrupt), stop_on_exit() as stop:
        stop.request("SIGINT")
        with pytest.raises(TrainingStopped, match=r"stage 'warmup' stopped before its 2 processes started \(SIGINT\)"):
            train_launched(curriculum, shard_dir, model, two_cfg, tmp_path / "run")
        assert stop.running == 0
        raise KeyboardInterrupt
    assert not list(scratch.iterdir()), "a launcher folder was made: torchrun was about to start"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_two_processes_in_bfloat16_train_like_one_within_bf16_rounding(kit, shard_dir, curriculum, tmp_path):
    """bfloat16 autocast (emulated on a CPU without native bf16, so this runs everywhere): 1 and 2 processes agree
    on every loss to within what bf16 rounding explains. bf16 keeps 8 significant bits (a rounding moves a value
    by up to u = 2**-8 relative); with two ranks each half batch's matmuls and the all-reduced gradient round at
    other places than the whole batch's, and over 22 steps the differences compound. Measured: 1.4e-4 relative at
    most (this machine, AVX-512 BF16), 1.2e-3 on the machine that filed issue 19 (10.0089 vs 10.0214). Allowed:
    4u = 2**-6 (1.6 %), thirteen times the worst seen. The weights are not compared: in bf16 they drift by up to
    1e-2 absolute between the two runs while the losses agree."""
    model, one_cfg = _cfgs(kit, 1, dtype="bfloat16")
    _, two_cfg = _cfgs(kit, 2, dtype="bfloat16")
    kit.train_all_stages(curriculum, shard_dir, model, one_cfg, tmp_path / "one", expect_tokenizer=kit.EXPECT)
    train_launched(curriculum, shard_dir, model, two_cfg, tmp_path / "two")
    runtime = [json.loads(line) for line in (tmp_path / "two" / "runtime.jsonl").read_text().splitlines()]
    assert {r["dtype"] for r in runtime} == {"bfloat16"}
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [(r["stage"], r["stage_iter"]) for r in two] == [(r["stage"], r["stage_iter"]) for r in one]
    for a, b in zip(one, two, strict=True):
        for key in ("train_loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=2**-6), (key, a, b)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_meeting_on_loopback_train_like_one_process(kit, shard_dir, curriculum, tmp_path):
    """Two launchers with nnodes=2, as two machines would run them, sharing the run folder (float32: a parity test)."""
    model, one_cfg = _cfgs(kit, 1, dtype="float32")
    kit.train_all_stages(curriculum, shard_dir, model, one_cfg, tmp_path / "one", expect_tokenizer=kit.EXPECT)
    endpoint = f"127.0.0.1:{_free_port()}"
    run_dir = tmp_path / "two-nodes"
    procs = []
    for node_rank in (0, 1):
        cfg = one_cfg.model_copy(update={"nnodes": 2, "node_rank": node_rank, "rdzv_endpoint": endpoint})
        code = RUNNER.format(root=str(ROOT), here=str(HERE), spec=_spec(curriculum, shard_dir, model, cfg, run_dir))
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True))
    try:
        outs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert [proc.returncode for proc in procs] == [0, 0], "\n=====\n".join(outs)
    one, two = read_metrics(tmp_path / "one"), read_metrics(run_dir)
    assert [(r["stage"], r["stage_iter"]) for r in two] == [(r["stage"], r["stage_iter"]) for r in one]
    for a, b in zip(one, two, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4), (a, b)
    w1, w2 = _weights(tmp_path / "one"), _weights(run_dir)
    for name in w1:
        np.testing.assert_allclose(w2[name], w1[name], rtol=1e-3, atol=1e-5, err_msg=name)
