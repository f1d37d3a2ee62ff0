"""The launcher and its torchrun workers speak JSON: arguments and events read back equal to what was written,
a diverged loss stays NaN, a half-written last line waits, and a message that does not fit is refused by name."""

from __future__ import annotations

import math
from pathlib import Path

import pydantic
import pytest

from curriculum.training.config import TrainConfig
from curriculum.training.schedule import plan_stage
from curriculum.training.types import (
    CheckpointInfo,
    EvalSet,
    StageData,
    StageResult,
    StageStart,
    StepInfo,
    TrainListener,
)
from curriculum.training.worker_messages import WorkerArgs, event_line, replay_lines
from model.config import ModelConfig


class Recorder(TrainListener):
    def __init__(self):
        self.seen: list[tuple[str, object]] = []

    def on_stage_start(self, start):
        self.seen.append(("on_stage_start", start))

    def on_step(self, step):
        self.seen.append(("on_step", step))

    def on_eval(self, row):
        self.seen.append(("on_eval", row))

    def on_checkpoint(self, checkpoint):
        self.seen.append(("on_checkpoint", checkpoint))

    def on_stage_end(self, result):
        self.seen.append(("on_stage_end", result))


def test_arguments_read_back_equal(curriculum, tmp_path):
    data = StageData(train=tmp_path / "t.bin", val=tmp_path / "v.bin", earlier_val={"warmup": tmp_path / "w.bin"},
                     eval_sets={"target": EvalSet(tmp_path / "e.bin", 64),
                                "mixed": EvalSet(tmp_path / "a.bin", 64, ((tmp_path / "a.bin", 3.0),
                                                                          (tmp_path / "b.bin", 1.0)))},
                     sha256={str(tmp_path / "t.bin"): "ab"})
    args = WorkerArgs(curriculum=curriculum, stage_index=1, data=data, model_cfg=ModelConfig(preset="tiny"),
                      train_cfg=TrainConfig(batch_size=8, nproc=2, dist_timeout_s=30), run_dir=tmp_path,
                      train_tokens={"warmup": 10}, expect_tokenizer={"tokenizer": "r50k_base", "vocab_size": 50257})
    back = WorkerArgs.model_validate_json(args.model_dump_json())
    assert back == args
    assert isinstance(back.data.eval_sets["target"], EvalSet) and isinstance(back.data.train, Path)
    assert back.data.eval_sets["mixed"].parts() == ((tmp_path / "a.bin", 3.0), (tmp_path / "b.bin", 1.0))


def test_events_replay_in_order_and_a_partial_line_waits(curriculum, tmp_path):
    plan = plan_stage(curriculum, 0, 10_000, TrainConfig(batch_size=8))
    events = [
        ("on_stage_start", StageStart(plan, 2, None, 8, 1, "per-stage", 0, "fresh weights", tmp_path / "t.bin")),
        ("on_step", StepInfo("warmup", 0, 1, 3, 1, float("nan"), 1e-3, 10.0, 0.1, 0.01)),
        ("on_eval", {"stage": "warmup", "stage_index": 0, "iter_num": 1, "stage_iter": 1, "train_loss": 2.0,
                     "val_loss": float("inf"), "lr": 1e-3, "tokens_per_s": 10.0, "time": "now"}),
        ("on_checkpoint", CheckpointInfo(tmp_path / "ck", "in-stage", "warmup", 0, 1, 1, "cd")),
        ("on_stage_end", StageResult(stage="warmup", stage_index=0, checkpoint=tmp_path / "ck", checkpoint_sha256="cd",
                                     iters=3, tokens_seen=96, train_loss=2.0, val_loss=2.5, forgetting={},
                                     seconds=1.0)),
    ]
    stream = b"".join(event_line(name, event) for name, event in events)
    recorder = Recorder()
    cut = len(stream) - 5
    used = replay_lines(stream[:cut], recorder)
    assert len(recorder.seen) == len(events) - 1  # the last line is not whole yet
    assert replay_lines(stream[used:], recorder) == len(stream) - used
    assert [name for name, _ in recorder.seen] == [name for name, _ in events]
    assert math.isnan(recorder.seen[1][1].loss) and recorder.seen[2][1]["val_loss"] == float("inf")
    assert recorder.seen[0][1] == events[0][1] and recorder.seen[4][1] == events[4][1]


def test_a_message_that_does_not_fit_is_refused_by_field():
    line = event_line("on_step", StepInfo("warmup", 0, 1, 3, 1, 2.0, 1e-3, 10.0, 0.1, 0.01))
    with pytest.raises(pydantic.ValidationError, match="stage_iter"):
        replay_lines(line.replace(b'"stage_iter":1', b'"stage_iter":"one"'), Recorder())
