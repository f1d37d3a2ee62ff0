"""The arms of a comparison: curricula over shards prepared once, each trained for the curriculum's compute.

    curriculum  the curriculum as configured: the reference compute
    flat        only the last stage's data (a mixed stage: its mixture, same weights), at its block size
    mixed       every stage's train data at the largest block size: separates "what data" from "in which order
                and at which length". Plain stages: their train shards in one shard file (windows shuffled by
                the trainer's permutation). With a mixed stage: one mixed stage of every component, each
                weighted by the tokens the curriculum trains on it
    lengths     the last stage's data with the curriculum's block-size schedule, each stage the same share of
                compute as the curriculum's stage of that block size: isolates sequence-length warmup
    reversed    the curriculum's stages in reverse order, each with its own data, block size, batch size and
                share of compute: the anti-curriculum, the control that separates "this order helps" from "this
                data helps" (Elgaar & Amiri, arXiv 2601.21698)
    versus      a second curriculum (`--versus FILE.yaml`: other mixtures, LR transitions, ...) with its own
                train settings and the same model and seeds, each of its stages its own share of the compute

Compute is matched in training tokens or FLOPs (`match`, flops.py): each arm's stages get iteration caps
(CurriculumStage.max_iters) chosen so that its cumulative compute after every stage is the nearest a whole
number of iterations gets to the curriculum's, so an arm's total differs from the curriculum's by at most half
an iteration of its last stage. Every run evaluates the curriculum's val sets (a mixed stage's: the weighted
mean over its sources', as the trainer reports its val_loss); the last stage's is the target.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, model_validator

from curriculum.compare.flops import flops_per_token
from curriculum.config import ConfigError, RunConfig
from curriculum.prepare import ShardsRecord
from curriculum.sources import SOURCE_FIELDS
from curriculum.stages import Curriculum, CurriculumStage, StageSource
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import StagePlan, plan_curriculum, stage_batch_size
from model.config import ModelConfig

log = logging.getLogger(__name__)

ARMS = ("curriculum", "flat", "mixed", "lengths", "reversed")
VERSUS = "versus"  # the arm of a second curriculum: not among ARMS, a --versus file adds it
Match = Literal["tokens", "flops"]
MIXED_SHARD = "train_mixed.bin"
EVAL_POINTS = 20  # evaluations per run, spread evenly over its iterations (and one at every stage end)
# Settings of a stage that decide how long and how it trains, not which shards its preparation writes.
TRAINING_FIELDS = {"n_epochs", "tokens", "max_iters", "batch_size", "lr"}


class ArmStage(BaseModel):
    """One stage of an arm: which shards it reads, at which block size, for how many iterations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: CurriculumStage  # as the trainer sees it (name, block size, epochs, max_iters; a mixture's sources)
    data: str  # the stage whose train data it reads (of its own curriculum), or "mixed"
    # One record per component (stage.components(): a mixed stage has one per source), in order: the train
    # shards it reads and the val shards of its val_loss (the mixed shard's val set is the last stage's).
    shards: list[ShardsRecord]
    iters: int
    tokens_per_iter: int
    flops_per_token: float

    @model_validator(mode="after")
    def _one_record_per_component(self) -> ArmStage:
        if len(self.shards) != len(self.stage.components()):
            raise ValueError(f"arm stage {self.stage.name!r}: {len(self.shards)} shard records for "
                             f"{len(self.stage.components())} components")
        return self

    @property
    def train_tokens(self) -> int:
        return sum(record.train_tokens for record in self.shards)

    def component_shards(self) -> dict[str, ShardsRecord]:
        """Component name (as the trainer names it: the stage, or `<stage>.<source>`) -> its record."""
        return {c.name: record for c, record in zip(self.stage.components(), self.shards, strict=True)}

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
    label: str | None = None  # the versus arm: the name of its curriculum

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

    def train_tokens(self) -> dict[str, int]:
        """Every component's train token count, as the trainer's train_tokens takes them."""
        return {name: record.train_tokens for s in self.stages for name, record in s.component_shards().items()}


def parse_arms(text: str | list[str]) -> list[str]:
    """`curriculum,flat` (or a list) -> checked arm names, in the order given, the curriculum arm first."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise ConfigError(
            f"--arms {','.join(names) or '(none)'}: unknown arm(s) {unknown or '(none given)'}; choose from "
            f"{','.join(ARMS)} (the curriculum arm is always trained: the others are matched to its compute; "
            "--versus FILE.yaml adds a second curriculum as the arm 'versus')"
        )
    return ["curriculum", *dict.fromkeys(n for n in names if n != "curriculum")]


def schedule_names() -> tuple[str, ...]:
    """The LR schedules train.lr_schedule allows."""
    return get_args(TrainConfig.model_fields["lr_schedule"].annotation)


def parse_schedules(text: str | None, config: RunConfig, versus: RunConfig | None = None) -> list[str] | None:
    """`per-stage,wsd` -> checked schedule names in the order given (None: the curriculum's own schedule alone).
    A stage `lr` transition steers a schedule over the whole curriculum: 'per-stage' cannot train it."""
    if text is None:
        return None
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    allowed = schedule_names()
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ConfigError(f"--schedules {text!r}: unknown schedule(s) {unknown or '(none given)'}; choose from "
                          f"{','.join(allowed)}")
    if "per-stage" in names:
        steered = [s.name for run in (config, versus) if run is not None for s in run.stages if s.lr is not None]
        if steered:
            raise ConfigError(
                f"--schedules {text}: stage(s) {steered} set an lr transition, which 'per-stage' cannot train (it "
                "warms up and decays every stage anyway); drop per-stage from --schedules or remove the stages' lr"
            )
    return names


def with_schedule(plan: ArmPlan, schedule: str) -> ArmPlan:
    """The arm trained under another LR schedule: same stages and compute."""
    return plan.model_copy(update={"train": plan.train.model_copy(update={"lr_schedule": schedule})})


def check_match(match: str) -> Match:
    if match not in ("tokens", "flops"):
        raise ConfigError(f"--match {match!r}: choose tokens or flops")
    return match  # type: ignore[return-value]


def check_comparable(config: RunConfig) -> None:
    """What a comparison needs of the curriculum, checked before anything is prepared."""
    if len(config.stages) < 2:
        raise ConfigError(
            f"a comparison needs a curriculum of at least 2 stages; {config.name!r} has {len(config.stages)} "
            f"({[s.name for s in config.stages]}): add a stage, or compare it as the --versus of one that has"
        )


def check_versus(config: RunConfig, versus: RunConfig, path: str | Path) -> RunConfig:
    """The second curriculum of a comparison (`--versus FILE.yaml`), checked against the first before anything
    is prepared, with the first's data folder: same model, same data preparation and scrape settings, same seed
    and evaluation batches (so seed k starts from the same weights and the target is measured on the same
    windows); stages, mixtures and the rest of `train` (lr_schedule, per-stage lr, tokens_per_step, ...) are
    its own. ConfigError names the first differing field."""
    where = f"--versus {path}"

    def differing(section: str, mine: dict, theirs: dict, fix: str) -> None:
        for key in mine.keys() | theirs.keys():
            if mine.get(key) != theirs.get(key):
                raise ConfigError(
                    f"{where}: {section}.{key} is {theirs.get(key)!r} there and {mine.get(key)!r} in the curriculum "
                    f"{config.name!r}; {fix}. Set it alike in both files (a --set applies to both curricula)"
                )

    differing("model", config.model.model_dump(mode="json"), versus.model.model_dump(mode="json"),
              "every arm trains the same model, so seed k of every arm starts from the same weights")
    differing("data", config.data.model_dump(mode="json", exclude={"data_dir"}),
              versus.data.model_dump(mode="json", exclude={"data_dir"}),
              "both curricula are prepared into one data folder and judged on the curriculum's val sets")
    differing("scrape", config.scrape.model_dump(mode="json"), versus.scrape.model_dump(mode="json"),
              "both curricula are prepared into one data folder")
    evaluation = {"seed", "batch_size", "eval_iters"}
    differing("train", config.train.model_dump(mode="json", include=evaluation),
              versus.train.model_dump(mode="json", include=evaluation),
              "seed k of every arm is train.seed + k - 1 of the curriculum, and the target is measured on "
              "train.batch_size x train.eval_iters windows (to train the versus with other batches, set "
              "train.tokens_per_step or a stage's batch_size)")
    model = config.model.with_block_size(config.curriculum.max_block_size)
    longer = [s.name for s in versus.stages if s.block_size > (model.block_size or 0)]
    if longer:
        raise ConfigError(
            f"{where}: stage(s) {longer} are longer than the model the comparison trains (model.block_size="
            f"{model.block_size}, the curriculum's largest block size): every arm trains the same model. Set "
            f"model.block_size to the longest of both (--set model.block_size=N) or shorten those stages"
        )
    # One data folder: a component of each curriculum with the same name (work folder) or shard file must be
    # the same data, or preparing one would overwrite the other's files.
    names = {c.name: c for c in config.components()}
    files = {c.shard_name.casefold(): c for c in config.components()}  # compared as macOS and Windows do
    for component in versus.components():
        other = names.get(component.name) or files.get(component.shard_name.casefold())
        if other is not None and (other.model_dump(mode="json", exclude=TRAINING_FIELDS)
                                  != component.model_dump(mode="json", exclude=TRAINING_FIELDS)):
            raise ConfigError(
                f"{where}: stage {component.name!r} would write the files of the curriculum's stage {other.name!r} "
                f"(train_{other.shard_name}.bin, prepared into the same data folder) from other data or at another "
                "block size; rename it in the versus file (or give it another dataset_suffix)"
            )
    if versus.data.data_dir != config.data.data_dir:
        log.info("%s: prepared into the curriculum's data folder %s (its data.data_dir %s is not used: every arm "
                 "reads the shards of one data folder)", where, config.data.data_dir, versus.data.data_dir)
    return versus.model_copy(update={"data": versus.data.model_copy(update={"data_dir": config.data.data_dir})})


def stage_shards(curriculum: Curriculum, shards: list[ShardsRecord]) -> list[list[ShardsRecord]]:
    """Every stage's records, one per component in order, from the records of every component (prepare_stages)."""
    by_name = {record.stage: record for record in shards}
    missing = [c.name for c in curriculum.components() if c.name not in by_name]
    if missing:
        raise ValueError(f"no shard record for stage(s) {missing}; prepare every stage (prepare_stages) first")
    return [[by_name[c.name] for c in stage.components()] for stage in curriculum.stages]


def needs_mixed_shard(config: RunConfig, arms: list[str]) -> bool:
    """The mixed arm of plain stages reads one shard file of every stage's train data (mixed_record); with a
    mixed stage it is a mixture of the prepared shards instead."""
    return "mixed" in arms and not any(stage.sources for stage in config.stages)


def plan_arms(
    config: RunConfig, shards: list[ShardsRecord], arms: list[str], match: Match, mixed: ShardsRecord | None = None,
    eval_points: int = EVAL_POINTS, versus: RunConfig | None = None, versus_shards: list[ShardsRecord] | None = None,
) -> list[ArmPlan]:
    """Every arm of `arms` over `shards` (one record per component of every stage, in order, as prepare_stages
    gives them); `mixed` is the record of the mixed shard (mixed_record), needed when needs_mixed_shard; each run
    evaluates about `eval_points` times. `versus` (checked by check_versus) adds the arm 'versus' over
    `versus_shards`."""
    check_comparable(config)
    curriculum = config.curriculum
    model = config.model.with_block_size(curriculum.max_block_size)
    vocab = shards[-1].vocab_size
    train = config.train.model_copy(update={"out_dir": None})
    plans = plan_curriculum(curriculum, {s.stage: s.train_tokens for s in shards}, train)
    records = stage_shards(curriculum, shards)
    reference = [
        ArmStage(stage=stage, data=stage.name, shards=mine, iters=plan.total_iters,
                 tokens_per_iter=plan.tokens_per_iter, flops_per_token=flops_per_token(model, vocab, stage.block_size))
        for stage, mine, plan in zip(curriculum.stages, records, plans, strict=True)
    ]
    result = [_arm("curriculum", reference, model, train, eval_points)]
    targets = [s.tokens if match == "tokens" else s.flops for s in reference]  # compute of each curriculum stage
    last, last_records = curriculum.stages[-1], records[-1]

    def per_token(block_size: int) -> float:
        return 1.0 if match == "tokens" else flops_per_token(model, vocab, block_size)

    def matched(arm: str, parts: list[tuple[CurriculumStage, str, list[ShardsRecord]]], budget: list[float],
                settings: TrainConfig = train, label: str | None = None) -> ArmPlan:
        """Stages (stage, data name, its components' records) trained for their shares of `budget` with
        `settings` (the batch sizes, and the LR schedule the arm trains with)."""
        stages, done = [], 0.0
        for (stage, data, mine), share_end in zip(parts, _cumulative(budget), strict=True):
            seqs = stage_batch_size(stage, settings) * settings.grad_accum
            per_iter = seqs * stage.block_size * per_token(stage.block_size)
            iters = max(1, round((share_end - done) / per_iter))
            done += iters * per_iter
            windows = [(record.train_tokens - 1) // stage.block_size for record in mine]
            for record, count in zip(mine, windows, strict=True):
                if count == 0:
                    raise ConfigError(
                        f"arm {arm!r}: {record.train_path} holds {record.train_tokens:,} tokens, not one window of "
                        f"block_size+1={stage.block_size + 1}; prepare more data for stage {record.stage!r}"
                    )
            epochs = max(1, math.ceil(iters * seqs / sum(windows)))
            # The iteration cap is the arm's length: a token budget of the stage it copies would be another.
            stage = stage.model_copy(update={"n_epochs": epochs, "tokens": None, "max_iters": iters})
            stages.append(ArmStage(stage=stage, data=data, shards=mine, iters=iters,
                                   tokens_per_iter=seqs * stage.block_size,
                                   flops_per_token=flops_per_token(model, vocab, stage.block_size)))
        return _arm(arm, stages, model, settings.model_copy(update={"max_iters": None}), eval_points, label)

    total = [sum(targets)]
    mixture = any(stage.sources for stage in curriculum.stages)
    for arm in arms:
        if arm == "flat":
            result.append(matched(arm, [(last, last.name, last_records)], total))
        elif arm == "mixed" and mixture:  # one mixture of every component, not one shard file
            stage = CurriculumStage(name="mixed", block_size=curriculum.max_block_size, n_epochs=1,
                                    dataset_suffix=last.dataset_suffix, sources=mixed_sources(curriculum, plans))
            result.append(matched(arm, [(stage, "mixed", [r for mine in records for r in mine])], total))
        elif arm == "mixed":
            if mixed is None:
                raise ValueError("plan_arms: the 'mixed' arm needs the mixed shard's record (mixed_record)")
            stage = CurriculumStage(name="mixed", dataset_key="mixed", block_size=curriculum.max_block_size,
                                    n_epochs=1, dataset_suffix=last.dataset_suffix)
            result.append(matched(arm, [(stage, "mixed", [mixed])], total))
        elif arm == "lengths":
            parts = [
                (last.model_copy(update={"name": f"{last.name}-{i + 1}-b{s.block_size}", "block_size": s.block_size}),
                 last.name, last_records)
                for i, s in enumerate(curriculum.stages)
            ]
            result.append(matched(arm, parts, targets))
        elif arm == "reversed":
            parts = [(stage, stage.name, mine) for stage, mine in zip(curriculum.stages, records, strict=True)]
            result.append(matched(arm, parts[::-1], targets[::-1]))
    if versus is not None:
        if versus_shards is None:
            raise ValueError("plan_arms: the versus arm needs its shard records (versus_shards)")
        own = versus.train.model_copy(update={"out_dir": None})
        theirs = plan_curriculum(versus.curriculum, {s.stage: s.train_tokens for s in versus_shards}, own)
        # Each of its stages keeps its own share of its compute, scaled to the curriculum's total.
        compute = [p.tokens_trained * per_token(p.block_size) for p in theirs]
        scale = sum(targets) / sum(compute)
        parts = [(stage, stage.name, mine)
                 for stage, mine in zip(versus.stages, stage_shards(versus.curriculum, versus_shards), strict=True)]
        result.append(matched(VERSUS, parts, [c * scale for c in compute], own, label=versus.name))
    return result


def mixed_sources(curriculum: Curriculum, plans: list[StagePlan]) -> list[StageSource]:
    """Every component of the curriculum as a source of one mixture (named after it), weighted by the tokens the
    curriculum trains on it: a mixed stage's share of its stage's tokens by its weight."""
    sources = []
    for stage, plan in zip(curriculum.stages, plans, strict=True):
        for component, weight in zip(stage.components(), stage.weights, strict=True):
            options = component.model_dump(include={"n_items", *SOURCE_FIELDS}, exclude_defaults=True)
            sources.append(StageSource(name=component.name, dataset_key=component.data_key,
                                       weight=plan.tokens_trained * weight / sum(stage.weights), **options))
    return sources


def _arm(arm: str, stages: list[ArmStage], model: ModelConfig, train: TrainConfig, eval_points: int,
         label: str | None = None) -> ArmPlan:
    iters = sum(s.iters for s in stages)
    # Bookkeeping only (not in the run fingerprint): about `eval_points` evaluations per run, at the same
    # iterations in every seed's run, so seeds of one arm can be averaged point by point.
    interval = max(1, round(iters / eval_points))
    return ArmPlan(arm=arm, stages=stages, model=model, label=label,
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


def run_folder(compare_dir: Path, arm: str, k: int, schedule: str | None = None) -> Path:
    """`<arm>-seed<k>`, under `<schedule>/` in a comparison of several schedules (--schedules)."""
    base = Path(compare_dir) / schedule if schedule else Path(compare_dir)
    return base / f"{arm}-seed{k}"
