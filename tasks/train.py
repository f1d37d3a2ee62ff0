"""The per-stage train task: a thin wrapper over curriculum.training.trainer.train_stage, cached on content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from curriculum.prepare import ShardsRecord
from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig
from curriculum.training.launch import train_stage_launched
from curriculum.training.progress import TerminalProgress
from curriculum.training.run_dir import read_metrics, run_fingerprint
from curriculum.training.trainer import StageData, StageResult, TrainListeners, train_stage
from model.config import ModelConfig
from tasks.caching import keyed_by
from tasks.ui_publish import TrainMonitor

TRAIN_CODE = ("curriculum.training.trainer", "curriculum.training.batches", "curriculum.training.schedule",
              "curriculum.training.checkpoints", "model.gpt")


def _train_identity(parameters: dict[str, Any]) -> Any:
    """Stage settings, model and training settings, every shard's checksum, the previous checkpoint's."""
    shards: list[ShardsRecord] = parameters["shards"]
    previous: StageResult | None = parameters["previous"]
    return [
        run_fingerprint(parameters["curriculum"], parameters["model"], parameters["train"]),
        parameters["stage_index"],
        [(s.stage, s.train_sha256, s.val_sha256) for s in shards],
        previous.checkpoint_sha256 if previous else None,
    ]


@task(
    name="train",
    task_run_name="train-{stage_name}",
    cache_key_fn=keyed_by(_train_identity, *TRAIN_CODE),
    persist_result=True,
    result_serializer="json",
    log_prints=True,  # the stage transition messages reach the run's logs in the UI too
)
def train(
    stage_name: str,
    curriculum: Curriculum,
    stage_index: int,
    shards: list[ShardsRecord],
    model: ModelConfig,
    train: TrainConfig,
    run_dir: Path,
    previous: StageResult | None,
    run: str = "run",
) -> StageResult:
    """Train one stage; `previous` (the earlier stage's result) only orders the tasks and keys the cache:
    the trainer finds the earlier stage's end checkpoint in the run folder itself. `run` names artifacts."""
    bar = TerminalProgress()
    ui = TrainMonitor(run, [s.name for s in curriculum.stages], read_metrics(run_dir))
    mine = shards[stage_index]
    data = stage_data(shards, stage_index)
    # Several processes (train.nproc, train.nnodes): torchrun runs the stage, its rank 0 events reach these listeners.
    run_it = train_stage_launched if train.distributed() else train_stage
    try:
        return run_it(
            curriculum, stage_index, data, model, train, run_dir,
            train_tokens={s.stage: s.train_tokens for s in shards},
            expect_tokenizer={"tokenizer": mine.tokenizer, "vocab_size": mine.vocab_size},
            listener=TrainListeners([bar, ui]),
        )
    finally:
        bar.close()


def stage_data(shards: list[ShardsRecord], stage_index: int) -> StageData:
    """The shards stage `stage_index` reads, each with the checksum its record (and so this task's key) holds."""
    mine = shards[stage_index]
    keyed = {str(s.val_path): s.val_sha256 for s in shards[: stage_index + 1]}
    keyed[str(mine.train_path)] = mine.train_sha256
    return StageData(train=mine.train_path, val=mine.val_path,
                     earlier_val={s.stage: s.val_path for s in shards[:stage_index]}, sha256=keyed)
