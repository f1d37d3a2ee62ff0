"""train.loggers: every metrics row also reaches TensorBoard event files and a real MLflow server, each step once,
also across a SIGKILL and a resume; a tracker that fails or hangs never stops or holds up training; the setting is
validated and stays out of the run's fingerprint."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path

import pytest

from curriculum.config import ConfigError, load_run_config
from curriculum.training.mlflow_tracker import RUN_FILE
from curriculum.training.run_dir import read_metrics, run_fingerprint
from curriculum.training.trackers import TENSORBOARD_DIR, metrics_of
from tests.support.pause import wait_until_paused

EXACT = ("train_loss", "val_loss", "lr", "stage_index")  # the same in a row evaluated again after a resume


def tracked(kit, **update):
    return kit.TINY_TRAIN.model_copy(update={"dtype": "float32", **update})


def event_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's TensorBoard event files, as tensorboard's own reader reads them: tag -> (step,
    value) in the order written."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_tensorboard_holds_every_row_once(run_dir: Path) -> None:
    rows = read_metrics(run_dir)
    scalars = event_scalars(run_dir)
    assert scalars["val_loss"] and [step for step, _ in scalars["val_loss"]] == [row["iter_num"] for row in rows]
    for tag in ("train_loss", "val_loss", "lr", "forgetting/warmup"):
        expected = [(row["iter_num"], metrics_of(row)[tag]) for row in rows if tag in metrics_of(row)]
        assert [step for step, _ in scalars[tag]] == [step for step, _ in expected], tag
        for (_, got), (_, want) in zip(scalars[tag], expected, strict=True):
            assert got == pytest.approx(want, rel=1e-6), tag  # event files hold float32


def test_unknown_logger_is_a_config_error_naming_it_and_the_allowed_names():
    with pytest.raises(ConfigError) as caught:
        load_run_config(type="simple", overrides={"train.loggers": ["tensorboard", "wandb"]})
    assert "train.loggers" in str(caught.value) and "'wandb'" in str(caught.value)
    assert "allowed: tensorboard, mlflow" in str(caught.value)
    assert load_run_config(type="simple").train.loggers == []
    # --set train.loggers=mlflow,tensorboard arrives as one string
    assert load_run_config(type="simple", overrides={"train.loggers": "mlflow,tensorboard"}).train.loggers == [
        "mlflow", "tensorboard"]


def test_tracker_settings_are_bookkeeping(kit, curriculum):
    plain = kit.TINY_TRAIN
    tracking = plain.model_copy(update={"loggers": ["tensorboard", "mlflow"], "mlflow_experiment": "e",
                                        "mlflow_tracking_uri": "http://127.0.0.1:1", "mlflow_parent_run_id": "p"})
    assert run_fingerprint(curriculum, kit.TINY_MODEL, plain) == run_fingerprint(curriculum, kit.TINY_MODEL, tracking)


@pytest.mark.slow  # an MLflow server and three training subprocesses
def test_a_killed_and_resumed_run_logs_every_row_once(kit, mlflow_server, shard_dir, curriculum, tmp_path):
    """Session 1 trains without trackers and is killed after iteration 7 (row 4 written, checkpoint at 6); session 2
    turns them on, sends row 4 from metrics.jsonl, logs row 8 and is killed there; session 3 resumes from 6,
    evaluates iteration 8 again (already in MLflow: skipped) and trains to the end."""
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    train = tracked(kit, loggers=["tensorboard", "mlflow"], mlflow_tracking_uri=mlflow_server.url,
                    mlflow_experiment="killed-run")
    client = mlflow_server.client()

    proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, tracked(kit),
                              pause_at="step:0:7", paused_file=paused)
    kit.kill_when_paused(proc, paused)
    paused.unlink()
    assert [row["iter_num"] for row in read_metrics(run_dir)] == [4] and not (run_dir / RUN_FILE).exists()

    proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, train,
                              pause_at="step:0:8", paused_file=paused)
    wait_until_paused(proc, paused)
    deadline = time.monotonic() + 60  # the tracker's thread imports mlflow and opens the run meanwhile
    while not (run_dir / RUN_FILE).is_file():
        assert time.monotonic() < deadline and proc.poll() is None, "no MLflow run was recorded"
        time.sleep(0.1)
    run_id = json.loads((run_dir / RUN_FILE).read_text())["run_id"]
    while [m.step for m in client.get_metric_history(run_id, "val_loss")] != [4, 8]:  # row 8 sent, then killed
        assert time.monotonic() < deadline, client.get_metric_history(run_id, "val_loss")
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    paused.unlink()

    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, train)
    assert "resuming at iteration 6/10" in out
    assert json.loads((run_dir / RUN_FILE).read_text())["run_id"] == run_id  # the same MLflow run, continued
    rows = read_metrics(run_dir)
    assert [row["iter_num"] for row in rows] == [4, 8, 10, 14, 18, 22]
    for key in (*EXACT, "forgetting/warmup"):
        expected = [(row["iter_num"], metrics_of(row)[key]) for row in rows if key in metrics_of(row)]
        history = sorted(((m.step, m.timestamp), m.value) for m in client.get_metric_history(run_id, key))
        assert [(step, value) for (step, _), value in history] == expected, key  # each step once, same numbers

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["fingerprint_sha256"] == json.loads((run_dir / "run.json").read_text())["fingerprint_sha256"]
    assert run.data.params["train.batch_size"] == "4" and run.data.params["model.n_layer"] == "2"
    assert run.data.params["stages.books.block_size"] == "32"
    experiment = client.get_experiment_by_name("killed-run")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]
    assert_tensorboard_holds_every_row_once(run_dir)


@pytest.mark.slow  # a training subprocess
def test_a_hanging_tracker_does_not_hold_training(kit, hanging_server, shard_dir, curriculum, tmp_path, monkeypatch):
    # MLflow's client would wait an hour for each answer, so only a tracker off the training thread lets it finish.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3600")
    run_dir = tmp_path / "run"
    train = tracked(kit, loggers=["mlflow", "tensorboard"], mlflow_tracking_uri=hanging_server)
    started = time.monotonic()
    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, train)
    seconds = time.monotonic() - started
    warnings = [line for line in out.splitlines() if line.startswith("WARNING") and "mlflow tracker" in line]
    assert len(warnings) == 1, out
    assert hanging_server in warnings[0] and "still busy after 10 s at the end of stage 'warmup'" in warnings[0]
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert [row["iter_num"] for row in read_metrics(run_dir)] == [4, 8, 10, 14, 18, 22]
    assert_tensorboard_holds_every_row_once(run_dir)  # the other tracker is not held up either
    print(f"trained with a hanging MLflow server in {seconds:.1f}s")


def test_a_failing_tracker_is_warned_about_once_and_training_goes_on(kit, shard_dir, curriculum, tmp_path, caplog):
    run_dir = tmp_path / "run"
    train = tracked(kit, loggers=["mlflow"], mlflow_tracking_uri="nowhere://at-all")
    with caplog.at_level(logging.WARNING, logger="curriculum.training.trackers"):
        results, recorder = kit.train_in_process(run_dir, shard_dir, curriculum, train=train)
    warnings = [r.getMessage() for r in caplog.records if r.name == "curriculum.training.trackers"]
    assert len(warnings) == 1, warnings  # two stages, two sessions of the tracker: one warning
    assert "the mlflow tracker (nowhere://at-all) failed" in warnings[0] and "'nowhere://at-all'" in warnings[0]
    assert "training goes on" in warnings[0]
    assert [r.stage for r in results] == ["warmup", "books"] and len(recorder.evals) == 6
    assert len(read_metrics(run_dir)) == 6 and not (run_dir / RUN_FILE).exists()


class _SlowServer:
    """A tracker whose destination answers only when `answer` is set, holding what it was sent: the stand-in for a
    tracking server that hangs, then recovers (what cannot be made to hang on cue)."""

    name, destination = "mlflow", "http://127.0.0.1:9/hangs-then-answers"

    def __init__(self, store: dict[int, int], answer: threading.Event):
        self.store, self.answer = store, answer

    def open(self, last_key: str) -> int:
        self.answer.wait()
        return max(self.store, default=0)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        time.sleep(0.05)  # a slow answer: both sessions are awake at once
        self.store[step] = self.store.get(step, 0) + 1

    def close(self, status: str | None) -> None:
        pass


def test_a_session_left_behind_a_hung_tracker_and_the_next_one_never_send_a_step_twice(tmp_path):
    from curriculum.training.trackers import _Feed

    store: dict[int, int] = {}
    answer = threading.Event()
    rows = [{"iter_num": step, "val_loss": 5.0} for step in (4, 8)]
    chain = f"mlflow {_SlowServer.destination} {tmp_path}"
    first = _Feed(_SlowServer(store, answer), rows, chain=chain)  # stage 1: the server hangs at its end
    first.ask_to_close(None)
    assert not first.wait(time.monotonic() + 0.2, "the end of stage 'one'")
    # Stage 2 starts with the whole of metrics.jsonl as its backlog, then its own rows.
    second = _Feed(_SlowServer(store, answer), [*rows, {"iter_num": 12, "val_loss": 4.0}], chain=chain)
    second.send({"iter_num": 16, "val_loss": 3.9})
    second.ask_to_close("FINISHED")
    answer.set()  # the server answers again: both sessions go on
    assert first.done.wait(10) and second.done.wait(10)
    assert store == {4: 1, 8: 1, 12: 1, 16: 1}
