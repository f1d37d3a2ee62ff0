"""How long each stage trains and at which learning rate: iteration counts from token counts; warmup + cosine per
stage, or one schedule over the whole curriculum placed by tokens trained."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.config import TrainConfig
from data.errors import UserError


class ScheduleError(UserError, ValueError):
    """The stages and the train settings do not make whole batches or iterations: the message names the stage, the
    numbers and the setting to change. In a run config (RunConfig) it is reported as a ConfigError."""


@dataclass(frozen=True)
class StagePlan:
    """The iteration arithmetic of one stage, printed at each transition and stored in its checkpoints.

    The train tokens are cut into `windows` non-overlapping windows of block_size+1 tokens (inputs and
    shifted targets; neighbouring windows share one token, so every token is a target once per epoch).
    Epochs are consecutive seeded permutations of those windows, read as one stream, so a batch may span
    two epochs; a stage of n_epochs trains floor(n_epochs * windows / seqs_per_iter) iterations, which leaves
    out fewer than one iteration's windows of the last epoch. A stage of a token budget (`tokens`) trains
    round(tokens / tokens_per_iter) iterations (at least one): its budget within half an iteration, the
    stream repeating its windows or stopping part-way through an epoch as needed.
    """

    stage: str
    stage_index: int
    block_size: int
    n_epochs: int | None  # None: the stage's length is a token budget
    tokens_budget: int | None  # the stage's `tokens`
    batch_size: int  # sequences per micro-batch of this stage (stage_batch_size)
    train_tokens: int
    windows: int
    seqs_per_iter: int  # batch_size * grad_accum
    epoch_iters: int  # iterations of n_epochs (or of the token budget)
    total_iters: int  # epoch_iters, capped by train.max_iters
    # A mixed stage's windows per source (component name -> windows); `windows` is their sum, an epoch one pass
    # over all of them. Empty for a stage of one source.
    source_windows: dict[str, int] = field(default_factory=dict)

    @property
    def iters_per_epoch(self) -> float:
        return self.windows / self.seqs_per_iter

    @property
    def tokens_per_iter(self) -> int:
        return self.seqs_per_iter * self.block_size

    @property
    def tokens_trained(self) -> int:
        return self.total_iters * self.tokens_per_iter

    @property
    def epochs_realised(self) -> float:
        """Passes over the stage's windows its iterations make: above 1, the data repeats."""
        return self.total_iters * self.seqs_per_iter / self.windows

    def to_json(self) -> dict:
        return asdict(self)


def stage_batch_size(stage: CurriculumStage, cfg: TrainConfig) -> int:
    """Sequences per micro-batch of `stage`: its own batch_size, else the one train.tokens_per_step gives at its
    block size (it must divide exactly, so every step sees the same tokens), else train.batch_size."""
    if stage.batch_size is not None:
        return stage.batch_size
    if cfg.tokens_per_step is None:
        return cfg.batch_size
    per_sequence = stage.block_size * cfg.grad_accum
    if cfg.tokens_per_step % per_sequence:
        raise ScheduleError(
            f"train.tokens_per_step={cfg.tokens_per_step:,} does not divide by stage {stage.name!r}'s block_size x "
            f"grad_accum = {stage.block_size} x {cfg.grad_accum} = {per_sequence:,}: its batch would not be a whole "
            f"number of sequences; make tokens_per_step a multiple of {per_sequence:,} (and of every other stage's), "
            f"or give this stage its own size (--set stages.{stage.name}.batch_size=N)"
        )
    return cfg.tokens_per_step // per_sequence


def check_batch_sizes(curriculum: Curriculum, cfg: TrainConfig) -> list[int]:
    """Every stage's batch size; ScheduleError naming the stage if one is not whole, or does not split over the
    training processes (when their number is known: nproc is not 'auto')."""
    multiple = math.lcm(*(stage.block_size * cfg.grad_accum for stage in curriculum.stages))
    sizes = []
    for stage in curriculum.stages:
        try:
            size = stage_batch_size(stage, cfg)
        except ScheduleError as error:
            raise ScheduleError(f"{error} (a multiple of {multiple:,} fits every stage)") from None
        if cfg.nproc != "auto" and size % (cfg.nproc * cfg.nnodes):
            processes = cfg.nproc * cfg.nnodes
            raise ScheduleError(
                f"stage {stage.name!r} trains batches of {size} sequences, which do not split over {processes} "
                f"training processes (nproc x nnodes); set stages.{stage.name}.batch_size or train.tokens_per_step "
                f"so every stage's batch is a multiple of {processes}"
            )
        sizes.append(size)
    return sizes


def check_lr_transitions(curriculum: Curriculum, cfg: TrainConfig) -> None:
    """A stage's `lr` steers a schedule that spans stages: with 'per-stage' every stage warms up and decays anyway."""
    if cfg.lr_schedule != "per-stage":
        return
    for stage in curriculum.stages:
        if stage.lr is not None:
            raise ScheduleError(
                f"stage {stage.name!r} sets lr={stage.lr!r}, which steers a schedule over the whole curriculum: "
                "set train.lr_schedule to 'global', 'wsd' or 'constant' (--set train.lr_schedule=wsd), or remove the "
                "stage's lr (with 'per-stage' every stage warms up and decays on its own already)"
            )


def plan_stage(
    curriculum: Curriculum, stage_index: int, train_tokens: int | Mapping[str, int], cfg: TrainConfig
) -> StagePlan:
    """`train_tokens`: the stage's train token count, or for a mixed stage each component's (by name)."""
    stage = curriculum.stages[stage_index]
    source_windows: dict[str, int] = {}
    if isinstance(train_tokens, Mapping):
        source_windows = {c.name: max(int(train_tokens[c.name]) - 1, 0) // stage.block_size
                          for c in stage.components()}
        train_tokens = sum(int(train_tokens[c.name]) for c in stage.components())
        windows = sum(source_windows.values())
        empty = [name for name, count in source_windows.items() if count == 0]
        if empty:
            raise ScheduleError(
                f"stage {stage.name!r}: source(s) {empty} hold fewer train tokens than one window of block_size+1="
                f"{stage.block_size + 1}; prepare more data for them (n_items) or drop them from the mixture"
            )
    else:
        windows = max(train_tokens - 1, 0) // stage.block_size
    batch_size = stage_batch_size(stage, cfg)
    seqs_per_iter = batch_size * cfg.grad_accum
    if stage.tokens is not None:  # (no windows: no iteration either, reported below)
        epoch_iters = max(1, round(stage.tokens / (seqs_per_iter * stage.block_size))) if windows else 0
    else:
        assert stage.n_epochs is not None  # CurriculumStage requires one of the two
        epoch_iters = stage.n_epochs * windows // seqs_per_iter
    if epoch_iters == 0:
        raise ScheduleError(
            f"stage {stage.name!r} has {train_tokens:,} train tokens = {windows:,} windows of block_size+1="
            f"{stage.block_size + 1} tokens, fewer than one iteration needs (batch_size*grad_accum = "
            f"{batch_size}*{cfg.grad_accum} = {seqs_per_iter} sequences per iteration over "
            f"{f'{stage.n_epochs} epoch(s)' if stage.n_epochs else 'its token budget'}); prepare more data for this "
            "stage (n_items) or lower train.batch_size / train.grad_accum"
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
        batch_size=batch_size,
        tokens_budget=stage.tokens,
        source_windows=source_windows,
    )


def plan_curriculum(
    curriculum: Curriculum, train_tokens: dict[str, int], cfg: TrainConfig, upto: int | None = None
) -> list[StagePlan]:
    """One plan per stage; `train_tokens` maps every stage name (a mixed stage: each of its components' names,
    CurriculumStage.components) to its train token count. With `upto` and the per-stage LR schedule, only stages
    0..upto: a stage can then train before later stages are prepared (a schedule over the whole curriculum,
    'global', 'wsd' or 'constant', needs every stage's length)."""
    stages = curriculum.stages if upto is None or cfg.lr_schedule != "per-stage" else curriculum.stages[: upto + 1]
    missing = [c.name for stage in stages for c in stage.components() if c.name not in train_tokens]
    if missing:
        raise ValueError(
            f"train_tokens has no count for stage(s) {missing}; give the train token count of every stage "
            f"(the n_tokens of each train shard header), stages: {[s.name for s in stages]}"
        )
    check_lr_transitions(curriculum, cfg)
    return [
        plan_stage(curriculum, i, train_tokens if stage.sources else int(train_tokens[stage.name]), cfg)
        for i, stage in enumerate(stages)
    ]


def cosine_lr(it: int, total_iters: int, cfg: TrainConfig) -> float:
    """nanoGPT's schedule: linear warmup over warmup_iters, then cosine decay to min_lr at total_iters."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= total_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(total_iters - cfg.warmup_iters, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def wsd_decay_units(total: int, cfg: TrainConfig) -> int:
    """'wsd': how much of `total` decays (iterations, or units of a TokenAxis)."""
    return max(1, round(cfg.decay_fraction * total))


@dataclass(frozen=True)
class TokenAxis:
    """Where one stage lies on the token axis of a schedule over the whole curriculum ('global', 'wsd',
    'constant'): every position is counted in `unit` tokens, the greatest common divisor of all stages' tokens
    per iteration, so each is a whole number, and when every stage trains the same tokens per iteration a unit is
    one iteration and the schedule's arithmetic is the iteration-placed one of before, bit for bit."""

    unit: int  # tokens
    total: int  # T: every stage's tokens
    warmup: int  # W: warmup_iters iterations of the first stage
    first_step: int  # the first stage's tokens per iteration
    start: int  # the tokens of the stages before this one
    step: int  # this stage's tokens per iteration

    @classmethod
    def of(cls, plans: list[StagePlan], stage_index: int, cfg: TrainConfig) -> TokenAxis:
        unit = math.gcd(*(plan.tokens_per_iter for plan in plans))
        return cls(
            unit=unit,
            total=sum(plan.tokens_trained for plan in plans) // unit,
            warmup=cfg.warmup_iters * plans[0].tokens_per_iter // unit,
            first_step=plans[0].tokens_per_iter // unit,
            start=sum(plan.tokens_trained for plan in plans[:stage_index]) // unit,
            step=plans[stage_index].tokens_per_iter // unit,
        )

    def tokens(self, units: int) -> int:
        return units * self.unit


def curriculum_lr(t: int, axis: TokenAxis, cfg: TrainConfig) -> float:
    """The LR of the step that trains tokens [t, t + axis.step) of the curriculum (in axis units) under a schedule
    that spans it:

        warmup    t < W: learning_rate * (t + step) / (W + first_step), capped at learning_rate: nanoGPT's
                  (it + 1) / (warmup_iters + 1) in tokens, so the first step does not train at 0
        global    cosine from learning_rate at W to min_lr at T, placed at the step's first token
        wsd       learning_rate until the last D = round(decay_fraction * T) tokens (rounded to whole units, so
                  to whole iterations when all steps are equal, as before), then linear to min_lr, placed at
                  the step's last token (so the last step trains at min_lr)
        constant  learning_rate to the end
    """
    step, warmup = axis.step, axis.warmup
    if t < warmup:
        return cfg.learning_rate * min(t + step, warmup + axis.first_step) / (warmup + axis.first_step)
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if t >= axis.total:
        return cfg.min_lr
    if cfg.lr_schedule == "wsd":
        decay = wsd_decay_units(axis.total, cfg)
        first = axis.total - decay
        if t + step <= first:
            return cfg.learning_rate
        return cfg.learning_rate + (cfg.min_lr - cfg.learning_rate) * (t - first + step) / decay
    ratio = (t - warmup) / max(axis.total - warmup, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


@dataclass(frozen=True)
class StageSchedule:
    """The learning rate at each iteration of one stage: a whole schedule of its own ('per-stage': warmup and
    cosine over the stage's iterations, which all train the same tokens), or its part of one schedule over every
    stage ('global', 'wsd', 'constant': placed by tokens on `axis`, curriculum_lr), shaped at this stage by its
    `lr` transition, in the stage's own iterations:

        continue  the schedule's value
        rewarm    the first warmup_iters iterations rise linearly from min_lr to the schedule's value:
                  min_lr + (schedule - min_lr) * (i + 1) / (warmup_iters + 1) at stage iteration i
        anneal    from the schedule's value at the stage's first iteration, linearly to min_lr at its last:
                  start + (min_lr - start) * i / (stage_iters - 1)
    """

    cfg: TrainConfig
    stage_iters: int
    axis: TokenAxis | None = None  # None: 'per-stage'
    transition: str = "continue"

    def base(self, stage_iter: int) -> float:
        if self.axis is None:
            return cosine_lr(stage_iter, self.stage_iters, self.cfg)
        return curriculum_lr(self.axis.start + stage_iter * self.axis.step, self.axis, self.cfg)

    def lr(self, stage_iter: int) -> float:
        cfg = self.cfg
        if self.transition == "anneal":
            start = self.base(0)
            return start + (cfg.min_lr - start) * min(stage_iter, self.stage_iters - 1) / max(self.stage_iters - 1, 1)
        value = self.base(stage_iter)
        if self.transition == "rewarm" and stage_iter < cfg.warmup_iters:
            return cfg.min_lr + (value - cfg.min_lr) * (stage_iter + 1) / (cfg.warmup_iters + 1)
        return value

    def describe(self) -> str:
        cfg, axis = self.cfg, self.axis
        if axis is None:
            return (f"{cfg.lr_schedule} (warmup {cfg.warmup_iters}, cosine {cfg.learning_rate:g} -> {cfg.min_lr:g} "
                    f"over {self.stage_iters:,} iterations)")
        span = (f"{axis.tokens(axis.total):,} tokens of the whole curriculum, this stage from token "
                f"{axis.tokens(axis.start):,}")
        warmup = f"warmup {cfg.warmup_iters} ({axis.tokens(axis.warmup):,} tokens)"
        if cfg.lr_schedule == "wsd":
            decay = axis.tokens(wsd_decay_units(axis.total, cfg))
            shape = (f"{warmup}, stable {cfg.learning_rate:g}, linear decay to {cfg.min_lr:g} over the last "
                     f"{decay:,} of {span}")
        elif cfg.lr_schedule == "constant":
            shape = f"{warmup}, then {cfg.learning_rate:g} over {span}"
        else:
            shape = f"{warmup}, cosine {cfg.learning_rate:g} -> {cfg.min_lr:g} over {span}"
        transition = {"rewarm": f"; rewarm over {cfg.warmup_iters} iterations",
                      "anneal": f"; anneal to {cfg.min_lr:g} over this stage"}.get(self.transition, "")
        return f"{cfg.lr_schedule} (placed by tokens: {shape}){transition}"


def stage_schedule(plans: list[StagePlan], stage_index: int, cfg: TrainConfig,
                   transition: str | None = None) -> StageSchedule:
    """`transition`: the stage's `lr` (None: continue). A schedule over the curriculum needs every stage's plan."""
    stage_iters = plans[stage_index].total_iters
    if cfg.lr_schedule != "per-stage":
        return StageSchedule(cfg=cfg, stage_iters=stage_iters, axis=TokenAxis.of(plans, stage_index, cfg),
                             transition=transition or "continue")
    return StageSchedule(cfg=cfg, stage_iters=stage_iters)
