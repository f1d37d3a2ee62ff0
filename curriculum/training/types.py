"""What a stage's training takes and gives: its shards, its result record, and the events listeners receive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict

from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.checkpoints import Checkpoint, CheckpointError, read_checkpoint
from curriculum.training.schedule import StagePlan


@dataclass(frozen=True)
class EvalSet:
    """A token shard evaluated at every evaluation besides the stage's own val set, at its own block size.

    A mixed stage's val set is several shards: `mixture` holds each source's val shard with its weight (`path` is
    then the first's), and the loss is their weighted mean, as the trainer reports a mixed stage's val_loss."""

    path: Path
    block_size: int
    mixture: tuple[tuple[Path, float], ...] = ()

    def parts(self) -> tuple[tuple[Path, float], ...]:
        """(shard, weight) pairs: the mixture, or the one shard with weight 1."""
        return self.mixture or ((self.path, 1.0),)


@dataclass(frozen=True)
class StageData:
    train: Path
    val: Path
    earlier_val: dict[str, Path] = field(default_factory=dict)  # earlier stage name -> its val shard
    # Name -> extra set evaluated at every evaluation, written to metrics.jsonl as `evals` (e.g. a comparison's
    # target set, the same for every arm). Only measured: the trained weights do not depend on them.
    eval_sets: dict[str, EvalSet] = field(default_factory=dict)
    # Shard path (str) -> the checksum it had when the caller's cache key was made (its ShardsRecord): a shard
    # whose tokens differ now (re-prepared, swapped, edited) is refused. Shards not listed are checked only whole.
    sha256: dict[str, str] = field(default_factory=dict)
    # A mixed stage (CurriculumStage.sources): each source's shards, by component name (CurriculumStage.components);
    # train and val above are then its first source's. Its val loss is the weighted mean over the sources' val sets.
    train_sources: dict[str, Path] = field(default_factory=dict)
    val_sources: dict[str, Path] = field(default_factory=dict)
    earlier_val_sources: dict[str, dict[str, Path]] = field(default_factory=dict)  # earlier mixed stage -> ...

    @classmethod
    def for_stage(cls, data_dir: str | Path, curriculum: Curriculum, stage_index: int) -> StageData:
        """The shards in `data_dir` under their usual names (CurriculumStage.shard_path of each component)."""
        stages = curriculum.stages
        mine = stages[stage_index]

        def vals(stage: CurriculumStage) -> dict[str, Path]:
            return {c.name: c.shard_path(data_dir, "val") for c in stage.components()}

        return cls(
            train=mine.components()[0].shard_path(data_dir, "train"),
            val=mine.components()[0].shard_path(data_dir, "val"),
            earlier_val={s.name: s.components()[0].shard_path(data_dir, "val") for s in stages[:stage_index]},
            train_sources={c.name: c.shard_path(data_dir, "train") for c in mine.components()} if mine.sources else {},
            val_sources=vals(mine) if mine.sources else {},
            earlier_val_sources={s.name: vals(s) for s in stages[:stage_index] if s.sources},
        )


def mixture_keys(stage: CurriculumStage, prefix: str) -> dict[str, str]:
    """A mixed stage's shard keys in the trainer's shards, by component: `<prefix>@<component name>`, the prefix
    `train` or `val` for the stage being trained, `val:<stage>` for an earlier stage's val sets."""
    return {c.name: f"{prefix}@{c.name}" for c in stage.components()}


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


class MetricsRow(TypedDict):
    """One evaluation: a line of metrics.jsonl, and what TrainListener.on_eval receives."""

    stage: str
    stage_index: int
    iter_num: int  # iterations of the whole run done
    stage_iter: int  # iterations of this stage done
    train_loss: float  # mean training loss since the previous evaluation
    val_loss: float
    lr: float
    tokens_per_s: float
    time: str
    stage_end: NotRequired[bool]  # only on the stage-end evaluation
    forgetting: NotRequired[dict[str, float]]  # stage end: val loss on each earlier stage's val set
    evals: NotRequired[dict[str, float]]  # loss on each of StageData.eval_sets, when there are any
    # With train.ema, the same losses of the weight average, on the same windows:
    val_loss_ema: NotRequired[float]
    forgetting_ema: NotRequired[dict[str, float]]  # stage end
    evals_ema: NotRequired[dict[str, float]]  # the keys of evals


class TrainListener:
    """Receives the trainer's events, e.g. for progress bars, a workflow logger or UI artifacts. Every method
    does nothing here: a subclass overrides the ones it needs. None of them is called for a stage that was
    finished already (train_stage returns its result without training)."""

    def on_stage_start(self, start: StageStart) -> None:
        pass

    def on_step(self, step: StepInfo) -> None:
        pass

    def on_eval(self, row: MetricsRow) -> None:
        pass

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        pass

    def on_stage_end(self, result: StageResult) -> None:
        pass


class TrainListeners(TrainListener):
    """Several listeners as one: each event goes to every listener, in the order given."""

    def __init__(self, listeners: Sequence[TrainListener] = ()):
        self.listeners = list(listeners)

    def on_stage_start(self, start: StageStart) -> None:
        for listener in self.listeners:
            listener.on_stage_start(start)

    def on_step(self, step: StepInfo) -> None:
        for listener in self.listeners:
            listener.on_step(step)

    def on_eval(self, row: MetricsRow) -> None:
        for listener in self.listeners:
            listener.on_eval(row)

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        for listener in self.listeners:
            listener.on_checkpoint(checkpoint)

    def on_stage_end(self, result: StageResult) -> None:
        for listener in self.listeners:
            listener.on_stage_end(result)
