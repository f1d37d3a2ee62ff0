"""How long each stage trains and at which learning rate: iteration counts from token counts, warmup + cosine."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from curriculum.stages import Curriculum
from curriculum.training.config import TrainConfig


@dataclass(frozen=True)
class StagePlan:
    """The iteration arithmetic of one stage, printed at each transition and stored in its checkpoints.

    The train tokens are cut into `windows` non-overlapping windows of block_size+1 tokens (inputs and
    shifted targets; neighbouring windows share one token, so every token is a target once per epoch).
    Epochs are consecutive seeded permutations of those windows, read as one stream, so a batch may span
    two epochs; the stage trains floor(n_epochs * windows / seqs_per_iter) iterations, which leaves out
    fewer than one iteration's windows of the last epoch.
    """

    stage: str
    stage_index: int
    block_size: int
    n_epochs: int
    train_tokens: int
    windows: int
    seqs_per_iter: int  # batch_size * grad_accum
    epoch_iters: int  # iterations of n_epochs
    total_iters: int  # epoch_iters, capped by train.max_iters

    @property
    def iters_per_epoch(self) -> float:
        return self.windows / self.seqs_per_iter

    @property
    def tokens_per_iter(self) -> int:
        return self.seqs_per_iter * self.block_size

    def to_json(self) -> dict:
        return asdict(self)


def plan_stage(curriculum: Curriculum, stage_index: int, train_tokens: int, cfg: TrainConfig) -> StagePlan:
    stage = curriculum.stages[stage_index]
    windows = max(train_tokens - 1, 0) // stage.block_size
    seqs_per_iter = cfg.batch_size * cfg.grad_accum
    epoch_iters = stage.n_epochs * windows // seqs_per_iter
    if epoch_iters == 0:
        raise ValueError(
            f"stage {stage.name!r} has {train_tokens:,} train tokens = {windows:,} windows of block_size+1="
            f"{stage.block_size + 1} tokens, fewer than one iteration needs (batch_size*grad_accum = "
            f"{cfg.batch_size}*{cfg.grad_accum} = {seqs_per_iter} sequences per iteration over {stage.n_epochs} "
            "epoch(s)); prepare more data for this stage (n_items) or lower train.batch_size / train.grad_accum"
        )
    caps = [cap for cap in (cfg.max_iters, stage.max_iters) if cap is not None]
    total = min([epoch_iters, *caps])
    return StagePlan(
        stage=stage.name,
        stage_index=stage_index,
        block_size=stage.block_size,
        n_epochs=stage.n_epochs,
        train_tokens=train_tokens,
        windows=windows,
        seqs_per_iter=seqs_per_iter,
        epoch_iters=epoch_iters,
        total_iters=total,
    )


def plan_curriculum(
    curriculum: Curriculum, train_tokens: dict[str, int], cfg: TrainConfig, upto: int | None = None
) -> list[StagePlan]:
    """One plan per stage; `train_tokens` maps every stage name to its train token count. With `upto` and the
    per-stage LR schedule, only stages 0..upto: a stage can then train before later stages are prepared."""
    stages = curriculum.stages if upto is None or cfg.lr_schedule == "global" else curriculum.stages[: upto + 1]
    missing = [stage.name for stage in stages if stage.name not in train_tokens]
    if missing:
        raise ValueError(
            f"train_tokens has no count for stage(s) {missing}; give the train token count of every stage "
            f"(the n_tokens of each train shard header), stages: {[s.name for s in stages]}"
        )
    return [plan_stage(curriculum, i, int(train_tokens[stage.name]), cfg) for i, stage in enumerate(stages)]


def cosine_lr(it: int, total_iters: int, cfg: TrainConfig) -> float:
    """nanoGPT's schedule: linear warmup over warmup_iters, then cosine decay to min_lr at total_iters."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= total_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(total_iters - cfg.warmup_iters, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


@dataclass(frozen=True)
class StageSchedule:
    """The learning rate at each iteration of one stage: a whole schedule of its own ('per-stage'), or its
    part of one schedule over every stage ('global', offset by the iterations of earlier stages)."""

    offset: int
    total_iters: int
    cfg: TrainConfig

    def lr(self, stage_iter: int) -> float:
        return cosine_lr(self.offset + stage_iter, self.total_iters, self.cfg)

    def describe(self) -> str:
        cfg = self.cfg
        span = f"{self.total_iters:,} iterations"
        if cfg.lr_schedule == "global":
            span += f" of the whole curriculum, this stage from iteration {self.offset:,}"
        return (
            f"{cfg.lr_schedule} (warmup {cfg.warmup_iters}, cosine {cfg.learning_rate:g} -> {cfg.min_lr:g} over "
            f"{span})"
        )


def stage_schedule(plans: list[StagePlan], stage_index: int, cfg: TrainConfig) -> StageSchedule:
    if cfg.lr_schedule == "global":
        offset = sum(plan.total_iters for plan in plans[:stage_index])
        return StageSchedule(offset=offset, total_iters=sum(plan.total_iters for plan in plans), cfg=cfg)
    return StageSchedule(offset=0, total_iters=plans[stage_index].total_iters, cfg=cfg)
