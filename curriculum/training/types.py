"""What a stage's training takes and gives: its shards, its result record, and the events hooks receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from curriculum.training.checkpoints import Checkpoint, CheckpointError, read_checkpoint
from curriculum.training.schedule import StagePlan
from curriculum.stages import Curriculum


@dataclass(frozen=True)
class StageData:
    train: Path  # train_{stage}_{suffix}.bin
    val: Path  # val_{stage}_{suffix}.bin
    earlier_val: dict[str, Path] = field(default_factory=dict)  # earlier stage name -> its val shard

    @classmethod
    def for_stage(cls, data_dir: str | Path, curriculum: Curriculum, stage_index: int) -> StageData:
        """The shard paths of the original design's naming, `<data_dir>/{train,val}_{stage}_{suffix}.bin`."""
        data_dir = Path(data_dir)
        stages = curriculum.stages
        return cls(
            train=data_dir / f"train_{stages[stage_index].shard_name}.bin",
            val=data_dir / f"val_{stages[stage_index].shard_name}.bin",
            earlier_val={s.name: data_dir / f"val_{s.shard_name}.bin" for s in stages[:stage_index]},
        )


class StageResult(BaseModel):
    """What a finished stage leaves behind: small and JSON-able (the Prefect task's persisted result)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    stage_index: int
    checkpoint: Path  # the stage's end checkpoint folder
    checkpoint_sha256: str  # checksum of its manifest, which holds the checksum of every file
    iters: int  # optimizer steps of this stage
    tokens_seen: int  # training tokens of this stage (iters * batch_size * grad_accum * block_size)
    train_loss: float  # mean training loss since the stage's last evaluation before its end
    val_loss: float
    forgetting: dict[str, float]  # val loss on each earlier stage's val set (at that stage's block size)
    seconds: float  # training time of the stage, summed over resumed sessions

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> StageResult:
        state = checkpoint.state
        return cls(
            stage=state["stage"],
            stage_index=state["curriculum_stage_idx"],
            checkpoint=checkpoint.path,
            checkpoint_sha256=checkpoint.sha256,
            **state["result"],
        )

    def is_intact(self) -> bool:
        """The checkpoint exists and every file matches the checksums this result recorded."""
        try:
            read_checkpoint(self.checkpoint, expect_sha256=self.checkpoint_sha256)
        except CheckpointError:
            return False
        return True


@dataclass(frozen=True)
class StageStart:
    """The transition into a stage, as printed: what changes and how long the stage trains."""

    plan: StagePlan
    n_stages: int
    previous_block_size: int | None
    batch_size: int
    grad_accum: int
    schedule: str
    start_iter: int  # > 0 when resuming inside the stage
    starting_from: str  # human-readable: fresh weights / end of the previous stage / a checkpoint
    train_path: Path


@dataclass(frozen=True)
class StepInfo:
    stage: str
    stage_index: int
    stage_iter: int  # iterations of this stage done, 1..total_iters
    total_iters: int
    iter_num: int  # iterations of the whole run done
    loss: float
    lr: float
    tokens_per_s: float
    step_seconds: float
    data_seconds: float  # of step_seconds, spent building batches


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str  # "in-stage" or "stage-end"
    stage: str
    stage_index: int
    stage_iter: int
    iter_num: int
    sha256: str


@dataclass(frozen=True)
class TrainHooks:
    """Optional callbacks, e.g. for progress bars, a workflow logger or UI artifacts. None of them is called
    for a stage that was finished already (train_stage returns its result without training)."""

    on_stage_start: Callable[[StageStart], None] | None = None
    on_step: Callable[[StepInfo], None] | None = None
    on_eval: Callable[[dict[str, Any]], None] | None = None  # one metrics.jsonl row
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None
    on_stage_end: Callable[[StageResult], None] | None = None

