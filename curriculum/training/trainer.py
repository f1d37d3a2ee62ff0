"""Train one stage of a curriculum: plain functions, no Prefect (the flow's task wraps `train_stage`).

A stage either is finished already (its end checkpoint is intact: the result is returned, nothing trains),
or resumes from its newest intact in-stage checkpoint, or starts from the previous stage's end checkpoint
(stage 0: fresh weights from the seed). Everything that decides the numbers (weights, optimizer moments, RNG
states, data position) is in the checkpoints, so a killed run resumed ends bit-identical to an unbroken one.

train_stage = resolve_stage_start (every check, nothing written) + run_stage (from there on, training writes).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from curriculum.config import ConfigError
from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training import distributed, resume
from curriculum.training.checkpoints import Checkpoint, copy_pretrained
from curriculum.training.config import TrainConfig
from curriculum.training.device import Runtime, resolve_runtime
from curriculum.training.run_dir import (
    RUNTIME_FILE,
    append_jsonl,
    check_run_dir,
    prepare_run_dir,
    restore_stage_metrics,
    rewind_metrics,
    run_fingerprint,
)
from curriculum.training.schedule import StagePlan, plan_curriculum, stage_schedule
from curriculum.training.stage_loop import StageRun, now
from curriculum.training.stop import training_loop
from curriculum.training.trackers import check_trackers_installed, stage_trackers
from curriculum.training.types import (  # noqa: F401  (re-exported: the trainer's public types)
    CheckpointInfo,
    EvalSet,
    MetricsRow,
    StageData,
    StageResult,
    StageStart,
    StepInfo,
    TrainListener,
    TrainListeners,
    mixture_keys,
)
from data.shards import PREPARE_HINT, Shard, ShardError, read_shard
from model.config import ModelConfig
from model.pretrained import model_card

log = logging.getLogger(__name__)

FINAL_DIR = "final"


def resolve_model_config(curriculum: Curriculum, model_cfg: ModelConfig) -> ModelConfig:
    """`model_cfg` with block_size resolved; ConfigError if a stage's block size exceeds it."""
    resolved = model_cfg.with_block_size(curriculum.max_block_size)
    assert resolved.block_size is not None  # with_block_size fills it in when unset
    n = len(curriculum.stages)
    for i, stage in enumerate(curriculum.stages):
        if stage.block_size > resolved.block_size:
            raise ConfigError(
                f"stage {stage.name!r} (stage {i + 1}/{n}) has block_size={stage.block_size}, longer than the "
                f"model supports: model.block_size={resolved.block_size}. Raise it "
                f"(--set model.block_size={stage.block_size}, or leave it unset to use the curriculum's largest "
                f"block size, {curriculum.max_block_size}) or shorten the stage "
                f"(--set stages.{stage.name}.block_size={resolved.block_size})"
            )
    return resolved


def train_stage(
    curriculum: Curriculum,
    stage_index: int,
    data: StageData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    *,
    train_tokens: dict[str, int],
    expect_tokenizer: dict[str, Any],
    listener: TrainListener | None = None,
) -> StageResult:
    """Train stage `stage_index` to its end checkpoint (see the module docstring) and return its result.

    `train_tokens` maps each stage name to its train token count: every stage under the global LR schedule
    (which spans them all), stages 0..stage_index under the per-stage one;
    `expect_tokenizer` (e.g. {"tokenizer": "r50k_base", "vocab_size": 50257}) must match every shard header.
    Every check (block sizes, settings, shards, checkpoints) runs before anything is written. After the last
    stage, `<run_dir>/final/` holds the final weights and config.json.
    """
    run_dir = Path(run_dir).resolve()  # results name their checkpoint wherever the caller's cwd is
    start = resolve_stage_start(
        curriculum, stage_index, data, model_cfg, train_cfg, run_dir,
        train_tokens=train_tokens, expect_tokenizer=expect_tokenizer,
    )
    # Every rank has looked before any writes: what it found is what rank 0 found.
    distributed.barrier()
    if start.finished is not None:
        log.info("stage %r is finished already (%s): nothing to train", start.stage.name, start.finished.path)
        if distributed.is_writer():
            restore_stage_metrics(run_dir, stage_index, start.finished.state["metrics"])
            if start.is_last:
                copy_pretrained(start.finished, run_dir / FINAL_DIR)
        distributed.barrier()
        return StageResult.from_checkpoint(start.finished)
    # Rank 0 alone sends the rows to train.loggers' trackers, as it alone writes metrics.jsonl.
    tracking = (stage_trackers(train_cfg, run_dir, curriculum=curriculum, model_cfg=start.model_cfg,
                               fingerprint=start.fingerprint, stage=start.stage.name, last_stage=start.is_last)
                if distributed.is_writer() else contextlib.nullcontext(TrainListener()))
    # A flow leaving on an exception waits for this stage to checkpoint and stop.
    with training_loop(), tracking as trackers:
        return run_stage(start, train_cfg, run_dir, expect_tokenizer,
                         TrainListeners([listener or TrainListener(), trackers]))


@dataclass(frozen=True)
class ResolvedStart:
    """Where a stage starts, found by resolve_stage_start with every check done and nothing written."""

    curriculum: Curriculum
    stage_index: int
    model_cfg: ModelConfig  # block_size resolved
    fingerprint: dict[str, Any]  # run_fingerprint of the curriculum and settings
    plans: list[StagePlan]  # every stage's (the global LR schedule spans them all)
    previous_end: Checkpoint | None  # the previous stage's end checkpoint; None for stage 0
    finished: Checkpoint | None  # this stage's own intact end checkpoint: nothing to train
    shards: dict[str, Shard]  # verified; empty when finished
    resume_from: Checkpoint | None  # the newest intact in-stage checkpoint; None: start at iteration 0
    eval_blocks: dict[str, int] = field(default_factory=dict)  # StageData.eval_sets' names -> block sizes
    eval_mixtures: dict[str, list[float]] = field(default_factory=dict)  # a mixed eval set's name -> its weights

    @property
    def stage(self) -> CurriculumStage:
        return self.curriculum.stages[self.stage_index]

    @property
    def plan(self) -> StagePlan:
        return self.plans[self.stage_index]

    @property
    def is_last(self) -> bool:
        return self.stage_index == len(self.curriculum.stages) - 1


def resolve_stage_start(
    curriculum: Curriculum,
    stage_index: int,
    data: StageData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: Path,
    *,
    train_tokens: dict[str, int],
    expect_tokenizer: dict[str, Any],
) -> ResolvedStart:
    """Check everything a stage's training depends on and find where it starts; writes nothing.

    Raises on a bad stage index or block size, a run folder or checkpoint of other settings, and missing or
    mismatched shards."""
    n_stages = len(curriculum.stages)
    if not 0 <= stage_index < n_stages:
        raise IndexError(f"stage_index={stage_index} is out of range: the curriculum has stages 0..{n_stages - 1}")
    model_cfg = resolve_model_config(curriculum, model_cfg)
    check_trackers_installed(train_cfg.loggers)
    fingerprint = run_fingerprint(curriculum, model_cfg, train_cfg)
    check_run_dir(run_dir, fingerprint)
    plans = plan_curriculum(curriculum, train_tokens, train_cfg, upto=stage_index)
    previous_end = resume.previous_end(run_dir, curriculum, stage_index, fingerprint)
    resolved = ResolvedStart(
        curriculum=curriculum, stage_index=stage_index, model_cfg=model_cfg, fingerprint=fingerprint, plans=plans,
        previous_end=previous_end, finished=None, shards={}, resume_from=None,
    )
    finished = resume.finished_stage(
        run_dir, curriculum, stage_index, fingerprint, {"train": data.train, "val": data.val}, previous_end
    )
    if finished is not None:
        return replace(resolved, finished=finished)
    shards = _open_shards(curriculum, stage_index, data, plans[stage_index], expect_tokenizer)
    resume_from = resume.newest_in_stage(
        run_dir, curriculum, stage_index, fingerprint, {key: shard.sha256 for key, shard in shards.items()},
        previous_end,
    )
    eval_blocks = {name: eval_set.block_size for name, eval_set in data.eval_sets.items()}
    eval_mixtures = {name: [weight for _, weight in eval_set.mixture]
                     for name, eval_set in data.eval_sets.items() if eval_set.mixture}
    return replace(resolved, shards=shards, resume_from=resume_from, eval_blocks=eval_blocks,
                   eval_mixtures=eval_mixtures)


def run_stage(
    start: ResolvedStart, train_cfg: TrainConfig, run_dir: Path, expect_tokenizer: dict[str, Any],
    listener: TrainListener,
) -> StageResult:
    """Train a stage from where resolve_stage_start found it starts, to its end checkpoint: this writes."""
    curriculum, stage_index, plan, shards = start.curriculum, start.stage_index, start.plan, start.shards
    writer = distributed.is_writer()
    runtime = resolve_runtime(train_cfg.device, train_cfg.dtype, train_cfg.compile)
    start_iter = start.resume_from.state["stage_iter"] if start.resume_from else 0
    if writer:
        prepare_run_dir(run_dir, start.fingerprint)
        append_jsonl(run_dir / RUNTIME_FILE, {"stage": start.stage.name, "started": now(), **runtime.to_json()})
        rewind_metrics(run_dir, stage_index, start_iter)
    distributed.barrier()
    vocab_size = int(shards["train"].meta["vocab_size"])
    run = StageRun(
        curriculum=curriculum,
        plan=plan,
        cfg=train_cfg,
        runtime=runtime,
        run_dir=run_dir,
        shards=shards,
        fingerprint=start.fingerprint,
        expect_tokenizer=expect_tokenizer,
        start_weights_sha256=start.previous_end.weights_sha256 if start.previous_end else None,
        card=model_card(
            start.model_cfg, vocab_size, shards["train"].meta.get("tokenizer"), shards["train"].meta.get("eot_token"),
            stage=start.stage.name, curriculum=[s.name for s in curriculum.stages],
        ),
        listener=listener,
        eval_blocks=start.eval_blocks,
        eval_mixtures=start.eval_mixtures,
    )
    starting_from = run.restore(start.model_cfg, vocab_size, start.resume_from, start.previous_end)
    schedule = stage_schedule(start.plans, stage_index, train_cfg, start.stage.lr)
    announce = StageStart(
        plan=plan,
        n_stages=len(curriculum.stages),
        previous_block_size=curriculum.stages[stage_index - 1].block_size if stage_index else None,
        batch_size=plan.batch_size,
        grad_accum=train_cfg.grad_accum,
        schedule=schedule.describe(),
        start_iter=start_iter,
        starting_from=starting_from,
        train_path=shards["train"].path,
    )
    if writer:
        print(transition_message(announce, runtime), flush=True)
    listener.on_stage_start(announce)

    end = run.train(start_iter, schedule)
    if start.is_last and writer:
        copy_pretrained(end, run_dir / FINAL_DIR)
    distributed.barrier()
    result = StageResult.from_checkpoint(end)
    listener.on_stage_end(result)
    return result


def transition_message(start: StageStart, runtime: Runtime) -> str:
    plan = start.plan
    block = f"{start.previous_block_size} -> {plan.block_size}" if start.previous_block_size else str(plan.block_size)
    length = (f"{plan.n_epochs} epoch(s)" if plan.tokens_budget is None
              else f"a budget of {plan.tokens_budget:,} tokens")
    capped = f" (capped by max_iters; {length} = {plan.epoch_iters:,})"
    epochs = (f"  Epochs: {plan.n_epochs}" if plan.tokens_budget is None else
              f"  Tokens: {plan.tokens_budget:,} budget, {plan.tokens_trained:,} trained = "
              f"{plan.epochs_realised:.2f} epoch(s)")
    lines = [
        f"[Stage {plan.stage_index + 1}/{start.n_stages}] {plan.stage}",
        f"  Block size: {block}",
        epochs,
        f"  Train tokens: {plan.train_tokens:,} "
        + (f"({start.train_path})" if not plan.source_windows else "(sources: " + ", ".join(
            f"{name} {windows:,} windows" for name, windows in plan.source_windows.items()) + ")"),
        f"  Iterations per epoch: {plan.iters_per_epoch:,.1f} = {plan.windows:,} windows of {plan.block_size + 1} "
        f"tokens / {plan.seqs_per_iter} sequences per iteration",
        f"  Iterations: {plan.total_iters:,}" + (capped if plan.total_iters < plan.epoch_iters else ""),
        f"  Tokens per iteration: {plan.tokens_per_iter:,} = batch size {start.batch_size} x grad accum "
        f"{start.grad_accum} x block size {plan.block_size}",
        f"  Learning rate: {start.schedule}",
        f"  Device: {runtime.device}, {runtime.dtype}" + (", compiled" if runtime.compile else ""),
        f"  Starting from: {start.starting_from}",
    ]
    return "\n".join(lines)


def _open_shards(
    curriculum: Curriculum, stage_index: int, data: StageData, plan: StagePlan, expect: dict[str, Any]
) -> dict[str, Shard]:
    """Every shard this stage reads, verified: its train and val shards and the earlier stages' val shards."""
    stage = curriculum.stages[stage_index]
    earlier = curriculum.stages[:stage_index]
    missing = [s.name for s in earlier if s.name not in data.earlier_val]
    if missing:
        raise ValueError(
            f"StageData.earlier_val has no val shard for earlier stage(s) {missing} of stage {stage.name!r}; "
            "give every earlier stage's val shard (StageData.for_stage(data_dir, curriculum, index) does)"
        )
    paths = {"train": data.train, "val": data.val} | {f"val:{s.name}": data.earlier_val[s.name] for s in earlier}
    blocks = {"train": stage.block_size, "val": stage.block_size} | {f"val:{s.name}": s.block_size for s in earlier}
    for name, eval_set in data.eval_sets.items():  # a mixed one: each source's shard, eval:<name>@<i>
        for i, (path, _) in enumerate(eval_set.parts()):
            key = f"eval:{name}@{i}" if eval_set.mixture else f"eval:{name}"
            paths[key], blocks[key] = path, eval_set.block_size
    # Mixed stages: every source's shards, under the keys mixture_keys() names.
    for s in [*earlier, stage]:
        if not s.sources:
            continue
        sources = data.earlier_val_sources.get(s.name, {}) if s is not stage else data.val_sources
        parts = {"val": sources} if s is not stage else {"train": data.train_sources, "val": sources}
        for split, given in parts.items():
            for name, key in mixture_keys(s, split if s is stage else f"val:{s.name}").items():
                if name not in given:
                    raise ValueError(
                        f"StageData has no {split} shard for source {name!r} of mixed stage {s.name!r}; give every "
                        "source's shards (StageData.for_stage(data_dir, curriculum, index) does)"
                    )
                paths[key], blocks[key] = given[name], s.block_size
    shards = {key: read_shard(path, expect=expect, hint=PREPARE_HINT) for key, path in paths.items()}
    for shard in shards.values():
        keyed = data.sha256.get(str(shard.path))
        if keyed is not None and shard.sha256 != keyed:
            raise ShardError(
                f"{shard.path} is not the shard this run was prepared with: its tokens have sha256 {shard.sha256}, "
                f"the data preparation recorded {keyed} (the file was replaced or re-prepared since); "
                f"{PREPARE_HINT}"
            )
    train_tokens = (sum(shards[key].n_tokens for key in mixture_keys(stage, "train").values()) if stage.sources
                    else shards["train"].n_tokens)
    if train_tokens != plan.train_tokens:
        raise ValueError(
            f"train_tokens[{stage.name!r}]={plan.train_tokens:,} but {data.train} holds {train_tokens:,} "
            "tokens; pass the n_tokens of each train shard's header as train_tokens"
        )
    for key, shard in shards.items():
        if shard.n_tokens < blocks[key] + 1:
            raise ValueError(
                f"{shard.path} holds {shard.n_tokens:,} tokens, fewer than one window of block_size+1="
                f"{blocks[key] + 1}; prepare more data for this stage (n_items, data.val_fraction): {PREPARE_HINT}"
            )
    return shards

