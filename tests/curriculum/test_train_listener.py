"""Trainer listeners: the base class ignores every event, TrainListeners hands each event to all, in order."""

from __future__ import annotations

from pathlib import Path

from curriculum.training.types import CheckpointInfo, MetricsRow, StepInfo, TrainListener, TrainListeners

STEP = StepInfo(stage="warmup", stage_index=0, stage_iter=1, total_iters=4, iter_num=1, loss=3.5, lr=1e-3,
                tokens_per_s=100.0, step_seconds=0.5, data_seconds=0.01)
ROW: MetricsRow = {"stage": "warmup", "stage_index": 0, "iter_num": 4, "stage_iter": 4, "train_loss": 3.4,
                   "val_loss": 3.6, "lr": 1e-3, "tokens_per_s": 100.0, "time": "2026-01-01T00:00:00+0000"}
CHECKPOINT = CheckpointInfo(Path("ckpt"), "in-stage", "warmup", 0, 4, 4, "0" * 64)


class StepsOnly(TrainListener):
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def on_step(self, step: StepInfo) -> None:
        self.log.append((self.name, "step", step.stage_iter))


class EvalsAndCheckpoints(StepsOnly):
    def on_eval(self, row: MetricsRow) -> None:
        self.log.append((self.name, "eval", row["stage_iter"]))

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        self.log.append((self.name, "checkpoint", checkpoint.kind))


def test_every_event_reaches_every_listener_in_order_and_unhandled_ones_do_nothing():
    log: list = []
    listeners = TrainListeners([StepsOnly("a", log), EvalsAndCheckpoints("b", log), TrainListener()])
    listeners.on_step(STEP)
    listeners.on_eval(ROW)
    listeners.on_checkpoint(CHECKPOINT)
    assert log == [("a", "step", 1), ("b", "step", 1), ("b", "eval", 4), ("b", "checkpoint", "in-stage")]

