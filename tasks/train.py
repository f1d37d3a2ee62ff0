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

# The code the step runs (tasks/caching.py code_identity): this module (stage_data picks the shards), the whole
# trainer and model, and what they call beyond them. Not what only reports (tasks.ui_publish), names an error
# (ConfigError, UserError) or holds a record's fields (curriculum.prepare's ShardsRecord).
TRAIN_CODE = (
    "tasks.train",
    "curriculum.training",  # the trainer, the step (stage_loop), batches, schedule, checkpoints, device, ranks
    "model",
    "curriculum.stages",  # a stage's components and shard names
    "data.shards",  # the token files read
    "data.atomic",  # checksums and atomic writes of the checkpoints
    "data.checksums",  # the run's fingerprint
    "data.web.urls",  # the fingerprint's redaction of stage settings
)


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
    the trainer finds the earlier stage's end checkpoint in the run folder itself. `run` names artifacts.
    `shards`: one record per component of every stage (Curriculum.components: a mixed stage has one per source)."""
    bar = TerminalProgress()
    ui = TrainMonitor(run, [s.name for s in curriculum.stages], read_metrics(run_dir))
    data = stage_data(curriculum, shards, stage_index)
    mine = next(s for s in shards if s.train_path == data.train)
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


def stage_data(curriculum: Curriculum, shards: list[ShardsRecord], stage_index: int) -> StageData:
    """The shards stage `stage_index` reads, each with the checksum its record (and so this task's key) holds."""
    records = {record.stage: record for record in shards}
    stages = curriculum.stages
    parts = {stage.name: [records[c.name] for c in stage.components()] for stage in stages[: stage_index + 1]}
    mine = parts[stages[stage_index].name]
    keyed = {str(s.val_path): s.val_sha256 for part in parts.values() for s in part}
    keyed |= {str(s.train_path): s.train_sha256 for s in mine}
    mixed = bool(stages[stage_index].sources)
    return StageData(
        train=mine[0].train_path, val=mine[0].val_path,
        earlier_val={s.name: parts[s.name][0].val_path for s in stages[:stage_index]}, sha256=keyed,
        train_sources={s.stage: s.train_path for s in mine} if mixed else {},
        val_sources={s.stage: s.val_path for s in mine} if mixed else {},
        earlier_val_sources={s.name: {r.stage: r.val_path for r in parts[s.name]}
                             for s in stages[:stage_index] if s.sources},
    )
