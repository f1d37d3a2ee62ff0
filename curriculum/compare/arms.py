"""The arms of a comparison: curricula over shards prepared once, each trained for the curriculum's compute.

    curriculum  the curriculum as configured: the reference compute
    flat        only the last stage's data, at its block size
    mixed       every stage's train shard in one shard file (windows shuffled by the trainer's permutation), at
                the largest block size: separates "what data" from "in which order and at which length"
    lengths     the last stage's data with the curriculum's block-size schedule, each stage the same share of
                compute as the curriculum's stage of that block size: isolates sequence-length warmup

Compute is matched in training tokens or FLOPs (`match`, flops.py): each arm's stages get iteration caps
(CurriculumStage.max_iters) chosen so that its cumulative compute after every stage is the nearest a whole
number of iterations gets to the curriculum's, so an arm's total differs from the curriculum's by at most half
an iteration of its last stage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from curriculum.compare.flops import flops_per_token
from curriculum.config import ConfigError, RunConfig
from curriculum.prepare import ShardsRecord
from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import plan_curriculum, stage_batch_size
from model.config import ModelConfig

ARMS = ("curriculum", "flat", "mixed", "lengths")
Match = Literal["tokens", "flops"]
MIXED_SHARD = "train_mixed.bin"
EVAL_POINTS = 20  # evaluations per run, spread evenly over its iterations (and one at every stage end)


class ArmStage(BaseModel):
    """One stage of an arm: which shards it reads, at which block size, for how many iterations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: CurriculumStage  # as the trainer sees it (name, block size, epochs, max_iters)
    data: str  # the original stage whose train data it reads, or "mixed"
    train_path: Path
    train_sha256: str
    train_tokens: int
    val_path: Path  # the val set the trainer reports as this stage's val_loss
    val_sha256: str
    iters: int
    tokens_per_iter: int
    flops_per_token: float

    @property
    def tokens(self) -> int:
        return self.iters * self.tokens_per_iter

    @property
    def flops(self) -> float:
        return self.tokens * self.flops_per_token


class ArmPlan(BaseModel):
    """An arm: its stages in order and the settings every seed of it trains with (train.seed aside)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arm: str
    stages: list[ArmStage]
    model: ModelConfig  # block_size set to the curriculum's largest in every arm: same initial weights per seed
    train: TrainConfig

    @property
    def curriculum(self) -> Curriculum:
        return Curriculum(stages=[s.stage for s in self.stages])

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.stages)

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.stages)

    def compute(self, match: Match) -> float:
        return float(self.tokens) if match == "tokens" else self.flops


def parse_arms(text: str | list[str]) -> list[str]:
    """`curriculum,flat` (or a list) -> checked arm names, in the order given, the curriculum arm first."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise ConfigError(
            f"--arms {','.join(names) or '(none)'}: unknown arm(s) {unknown or '(none given)'}; choose from "
            f"{','.join(ARMS)} (the curriculum arm is always trained: the others are matched to its compute)"
        )
    return ["curriculum", *dict.fromkeys(n for n in names if n != "curriculum")]


def check_match(match: str) -> Match:
    if match not in ("tokens", "flops"):
        raise ConfigError(f"--match {match!r}: choose tokens or flops")
    return match  # type: ignore[return-value]


def check_comparable(config: RunConfig) -> None:
    """The arms are built from one train shard per stage: a mixed stage (sources) has several."""
    mixed = [stage.name for stage in config.stages if stage.sources]
    if mixed:
        raise ConfigError(
            f"compare: stage(s) {mixed} mix several sources, and the comparison's arms read one train shard per "
            "stage; compare mixtures as separate curriculum runs (python flows/curriculum.py --config ...) for now"
        )


def plan_arms(
    config: RunConfig, shards: list[ShardsRecord], arms: list[str], match: Match, mixed: ShardsRecord | None = None,
    eval_points: int = EVAL_POINTS,
) -> list[ArmPlan]:
    """Every arm of `arms` over `shards` (one record per stage, in order); `mixed` is the record of the mixed
    shard (mixed_record), needed when `arms` holds 'mixed'; each run evaluates about `eval_points` times."""
    check_comparable(config)
    if len(config.stages) < 2:
        raise ConfigError(
            f"a comparison needs a curriculum of at least 2 stages; {config.name!r} has {len(config.stages)}"
        )
    curriculum = config.curriculum
    model = config.model.with_block_size(curriculum.max_block_size)
    vocab = shards[-1].vocab_size
    train = config.train.model_copy(update={"out_dir": None})
    plans = plan_curriculum(curriculum, {s.stage: s.train_tokens for s in shards}, train)
    reference = [
        ArmStage(stage=stage, data=stage.name, train_path=record.train_path, train_sha256=record.train_sha256,
                 train_tokens=record.train_tokens, val_path=record.val_path, val_sha256=record.val_sha256,
                 iters=plan.total_iters, tokens_per_iter=plan.tokens_per_iter,
                 flops_per_token=flops_per_token(model, vocab, stage.block_size))
        for stage, record, plan in zip(curriculum.stages, shards, plans, strict=True)
    ]
    result = [_arm("curriculum", reference, model, train, eval_points)]
    targets = [s.tokens if match == "tokens" else s.flops for s in reference]  # compute of each curriculum stage
    last, last_record = curriculum.stages[-1], shards[-1]
    uncapped = train.model_copy(update={"max_iters": None})  # the arms' caps are per stage

    def matched(arm: str, parts: list[tuple[CurriculumStage, str, ShardsRecord]], budget: list[float]) -> ArmPlan:
        """Stages (stage, data name, train shard) trained for their shares of `budget`; every one reports the
        last stage's val set as its val_loss (the target)."""
        stages, done = [], 0.0
        for (stage, data, record), share_end in zip(parts, _cumulative(budget), strict=True):
            seqs = stage_batch_size(stage, train) * train.grad_accum
            per_iter = seqs * stage.block_size * (1.0 if match == "tokens" else flops_per_token(model, vocab,
                                                                                                stage.block_size))
            iters = max(1, round((share_end - done) / per_iter))
            done += iters * per_iter
            windows = (record.train_tokens - 1) // stage.block_size
            if windows == 0:
                raise ConfigError(
                    f"arm {arm!r}: {record.train_path} holds {record.train_tokens:,} tokens, not one window of "
                    f"block_size+1={stage.block_size + 1}; prepare more data for stage {record.stage!r}"
                )
            epochs = max(1, math.ceil(iters * seqs / windows))
            # The iteration cap is the arm's length: a token budget of the stage it copies would be another.
            stage = stage.model_copy(update={"n_epochs": epochs, "tokens": None, "max_iters": iters})
            stages.append(ArmStage(
                stage=stage, data=data, train_path=record.train_path, train_sha256=record.train_sha256,
                train_tokens=record.train_tokens, val_path=last_record.val_path, val_sha256=last_record.val_sha256,
                iters=iters, tokens_per_iter=seqs * stage.block_size,
                flops_per_token=flops_per_token(model, vocab, stage.block_size),
            ))
        return _arm(arm, stages, model, uncapped, eval_points)

    total = [sum(targets)]
    for arm in arms:
        if arm == "flat":
            result.append(matched(arm, [(last, last.name, last_record)], total))
        elif arm == "mixed":
            if mixed is None:
                raise ValueError("plan_arms: the 'mixed' arm needs the mixed shard's record (mixed_record)")
            stage = CurriculumStage(name="mixed", dataset_key="mixed", block_size=curriculum.max_block_size,
                                    n_epochs=1, dataset_suffix=last.dataset_suffix)
            result.append(matched(arm, [(stage, "mixed", mixed)], total))
        elif arm == "lengths":
            parts = [
                (last.model_copy(update={"name": f"{last.name}-{i + 1}-b{s.block_size}", "block_size": s.block_size}),
                 last.name, last_record)
                for i, s in enumerate(curriculum.stages)
            ]
            result.append(matched(arm, parts, targets))
    return result


def _arm(arm: str, stages: list[ArmStage], model: ModelConfig, train: TrainConfig, eval_points: int) -> ArmPlan:
    iters = sum(s.iters for s in stages)
    # Bookkeeping only (not in the run fingerprint): about `eval_points` evaluations per run, at the same
    # iterations in every seed's run, so seeds of one arm can be averaged point by point.
    interval = max(1, round(iters / eval_points))
    return ArmPlan(arm=arm, stages=stages, model=model,
                   train=train.model_copy(update={"eval_interval": interval, "checkpoint_interval": interval * 5}))


def _cumulative(values: list[float]) -> list[float]:
    out, total = [], 0.0
    for value in values:
        total += value
        out.append(total)
    return out


def seed_of(train: TrainConfig, k: int) -> int:
    """Seed k = 1, 2, ... of a comparison: train.seed, train.seed + 1, ..."""
    return train.seed + k - 1


def run_folder(compare_dir: Path, arm: str, k: int) -> Path:
    return Path(compare_dir) / f"{arm}-seed{k}"
