"""Schedules over the whole curriculum ('global', 'wsd', 'constant') are placed by tokens trained, not iterations:
a short-context stage does not spend the LR faster per token (SLW, arXiv 2108.06084, appendix A.2). Expected values
are computed here from the formulas, not by the code under test."""

from __future__ import annotations

import math

import pytest

from curriculum.stages import Curriculum, CurriculumStage
from curriculum.training.config import TrainConfig
from curriculum.training.schedule import plan_curriculum, stage_schedule

# Three stages of growing context, 4 sequences per step: 256, 512 and 1,024 tokens per iteration.
CURRICULUM = Curriculum(stages=[
    CurriculumStage(name="short", dataset_key="local-files", block_size=64, tokens=256 * 40),
    CurriculumStage(name="middle", dataset_key="local-files", block_size=128, tokens=512 * 30),
    CurriculumStage(name="long", dataset_key="local-files", block_size=256, tokens=1024 * 20),
])
TOKENS = {"short": 100_000, "middle": 100_000, "long": 100_000}
ITERS, STEP = [40, 30, 20], [256, 512, 1024]
TOTAL = sum(i * s for i, s in zip(ITERS, STEP, strict=True))  # 46,080 tokens
WARMUP = 5


def train(schedule: str, **more) -> TrainConfig:
    return TrainConfig(batch_size=4, lr_schedule=schedule, warmup_iters=WARMUP, learning_rate=1e-3, min_lr=1e-4,
                       **more)


def lrs(cfg: TrainConfig, curriculum: Curriculum = CURRICULUM) -> list[list[float]]:
    plans = plan_curriculum(curriculum, TOKENS, cfg)
    assert [p.total_iters for p in plans] == ITERS
    return [[stage_schedule(plans, k, cfg, s.lr).lr(i) for i in range(plans[k].total_iters)]
            for k, s in enumerate(curriculum.stages)]


def position(stage: int, it: int) -> tuple[int, int]:
    """(tokens trained before iteration `it` of `stage`, that step's tokens)"""
    return sum(i * s for i, s in zip(ITERS[:stage], STEP[:stage], strict=True)) + it * STEP[stage], STEP[stage]


def expected(cfg: TrainConfig, t: int, step: int) -> float:
    peak, floor, warmup = cfg.learning_rate, cfg.min_lr, WARMUP * STEP[0]
    if t < warmup:
        return peak * (t + step) / (warmup + STEP[0])
    if cfg.lr_schedule == "constant":
        return peak
    if cfg.lr_schedule == "wsd":
        decay = round(cfg.decay_fraction * TOTAL)
        return peak if t + step <= TOTAL - decay else peak + (floor - peak) * (t + step - (TOTAL - decay)) / decay
    return floor + 0.5 * (1 + math.cos(math.pi * (t - warmup) / (TOTAL - warmup))) * (peak - floor)


@pytest.mark.parametrize("schedule", ["global", "wsd", "constant"])
def test_every_step_is_the_schedule_at_the_tokens_done(schedule):
    cfg = train(schedule)
    got = lrs(cfg)
    for k, stage in enumerate(got):
        for i, value in enumerate(stage):
            assert value == pytest.approx(expected(cfg, *position(k, i)), rel=1e-12), (k, i)


def test_at_each_block_size_change_the_lr_is_the_schedule_at_the_fraction_of_tokens_done():
    cfg = train("global")
    got = lrs(cfg)
    warmup = WARMUP * STEP[0]
    for k in (1, 2):
        fraction = position(k, 0)[0] / TOTAL  # 2/9, then 5/9 of the tokens: not 40/90 or 70/90 of the steps
        cosine = (fraction * TOTAL - warmup) / (TOTAL - warmup)
        assert got[k][0] == pytest.approx(1e-4 + 0.5 * (1 + math.cos(math.pi * cosine)) * 9e-4)
    by_iterations = 1e-4 + 0.5 * (1 + math.cos(math.pi * (40 - WARMUP) / (90 - WARMUP))) * 9e-4
    assert abs(got[1][0] - by_iterations) > 1e-5  # the old placement would have decayed further already


def test_wsd_decays_over_the_last_share_of_the_tokens_and_ends_at_min_lr():
    cfg = train("wsd", decay_fraction=2 / 9)  # the last 10,240 of 46,080 tokens: the 10 last steps of 'long'
    got = lrs(cfg)
    assert all(v == pytest.approx(1e-3) for v in got[1]) and got[2][9] == pytest.approx(1e-3)
    assert got[2][10] < 1e-3
    assert got[2][-1] == pytest.approx(1e-4)


def test_constant_holds_the_peak_after_warmup_through_every_stage():
    got = lrs(train("constant"))
    assert got[0][:WARMUP] == pytest.approx([1e-3 * (i + 1) / (WARMUP + 1) for i in range(WARMUP)])
    assert all(v == 1e-3 for stage in got for v in stage[WARMUP if stage is got[0] else 0:])


def test_transitions_still_shape_their_stage_in_its_own_iterations():
    stages = list(CURRICULUM.stages)
    stages[1] = stages[1].model_copy(update={"lr": "rewarm"})
    stages[2] = stages[2].model_copy(update={"lr": "anneal"})
    cfg = train("wsd")
    got = lrs(cfg, Curriculum(stages=stages))
    for i in range(WARMUP):  # middle rewarms from min_lr to the schedule over warmup_iters of its own iterations
        assert got[1][i] == pytest.approx(1e-4 + (expected(cfg, *position(1, i)) - 1e-4) * (i + 1) / (WARMUP + 1))
    start = expected(cfg, *position(2, 0))  # long anneals from the schedule's value at its first step
    assert got[2] == pytest.approx([start + (1e-4 - start) * i / 19 for i in range(20)])


@pytest.mark.parametrize("schedule", ["global", "wsd"])
def test_with_equal_tokens_per_step_nothing_changes_from_the_iteration_placed_schedule(schedule):
    """train.tokens_per_step gives every stage the same tokens per step: then a token is an iteration, and the
    values are today's nanoGPT-style ones, to the last bit."""
    cfg = train(schedule, tokens_per_step=1024)
    same = Curriculum(stages=[s.model_copy(update={"tokens": 1024 * n}) for s, n in zip(CURRICULUM.stages, ITERS,
                                                                                           strict=True)])
    plans = plan_curriculum(same, TOKENS, cfg)
    total = sum(p.total_iters for p in plans)
    got = [stage_schedule(plans, k, cfg).lr(i) for k in range(3) for i in range(plans[k].total_iters)]

    def old(it: int) -> float:  # the iteration-placed formulas of before
        peak, floor = cfg.learning_rate, cfg.min_lr
        if it < WARMUP:
            return peak * (it + 1) / (WARMUP + 1)
        if schedule == "wsd":
            decay = max(1, round(cfg.decay_fraction * total))
            return peak if it < total - decay else peak + (floor - peak) * (it - (total - decay) + 1) / decay
        ratio = (it - WARMUP) / max(total - WARMUP, 1)
        return floor + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak - floor)

    assert got == [old(it) for it in range(total)]


@pytest.mark.slow  # trains a whole (tiny) run, evaluating at every iteration
def test_a_trained_wsd_run_enters_its_second_stage_at_the_token_placed_value(kit, shard_dir, curriculum, tmp_path):
    from curriculum.training.run_dir import read_metrics

    # warmup: 10 steps of 4 x 16 = 64 tokens, books: 12 of 4 x 32 = 128; 2,176 tokens = 34 units of 64 (the gcd of
    # the steps' tokens, to which the decay's length is rounded): the last round(0.6 * 34) = 20 units = 1,280
    # tokens decay, from token 896, books' third step. By iterations (the old rule) the last round(0.6 * 22) = 13
    # of 22 steps would decay, from iteration 9, so books would have started below the peak.
    cfg = kit.TINY_TRAIN.model_copy(update={"lr_schedule": "wsd", "decay_fraction": 0.6, "eval_interval": 1,
                                           "eval_iters": 1, "checkpoint_interval": 100})
    _, rec = kit.train_in_process(tmp_path / "run", shard_dir, curriculum, train=cfg)
    peak, floor = cfg.learning_rate, cfg.min_lr
    lr = {row["iter_num"]: row["lr"] for row in read_metrics(tmp_path / "run")}  # iter_num: steps done
    assert lr[11] == peak and rec.steps[10].lr == peak  # books' first step, tokens 640..768
    assert lr[11] != pytest.approx(peak + (floor - peak) * (10 - 9 + 1) / 13)  # what iterations would give
    assert lr[12] == peak  # tokens 768..896: ends where the decay starts
    assert lr[13] == pytest.approx(peak + (floor - peak) * 128 / 1280, rel=1e-9)  # tokens 896..1,024
    assert lr[22] == pytest.approx(floor)  # the last step trains at min_lr
    assert "placed by tokens" in rec.starts[1].schedule and "this stage from token 640" in rec.starts[1].schedule
    assert "over the last 1,280 of 2,176 tokens" in rec.starts[1].schedule
