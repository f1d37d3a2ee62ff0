"""LR at stage boundaries: the 'wsd' schedule and a stage's lr transition (rewarm, anneal) give the values their
formulas give, read back from the run's metrics.jsonl; an lr transition without a schedule over the curriculum is
refused by name."""

from __future__ import annotations

import pytest

from curriculum import ConfigError, load_run_config
from curriculum.training.run_dir import read_metrics


def lrs_by_iteration(run_dir) -> dict[int, float]:
    """metrics.jsonl's lr per iteration: the rate of the step that completed it (with eval_interval=1, all)."""
    return {row["iter_num"]: row["lr"] for row in read_metrics(run_dir)}


@pytest.mark.slow  # trains a whole run, evaluating at every iteration
def test_wsd_with_a_rewarmed_second_stage_follows_its_formulas(kit, shard_dir, curriculum, tmp_path):
    # warmup: 10 iterations of 4 x 16 = 64 tokens; books: 12 of 4 x 32 = 128 tokens; 2,176 tokens in all. The
    # schedule is placed by tokens: the last half (1,088 tokens) decays; books rewarms over warmup_iters=3.
    train = kit.TINY_TRAIN.model_copy(update={"lr_schedule": "wsd", "decay_fraction": 0.5, "eval_interval": 1,
                                             "eval_iters": 1, "checkpoint_interval": 100})
    books = curriculum.stages[1].model_copy(update={"lr": "rewarm"})
    rewarmed = curriculum.model_copy(update={"stages": [curriculum.stages[0], books]})
    kit.train_in_process(tmp_path / "run", shard_dir, rewarmed, train=train)
    lr = lrs_by_iteration(tmp_path / "run")
    peak, floor, warmup = train.learning_rate, train.min_lr, train.warmup_iters
    total, decay = 10 * 64 + 12 * 128, 1088

    def tokens_before(it: int) -> tuple[int, int]:  # it: 0-based iteration of the whole curriculum -> (t, step)
        return (64 * it, 64) if it < 10 else (640 + 128 * (it - 10), 128)

    def wsd(it: int) -> float:
        t, step = tokens_before(it)
        if t < warmup * 64:
            return peak * (t + step) / (warmup * 64 + 64)
        if t + step <= total - decay:
            return peak
        return peak + (floor - peak) * (t - (total - decay) + step) / decay

    assert sorted(lr) == list(range(1, 23))
    assert lr[1] == pytest.approx(peak / 4) and lr[3] == pytest.approx(peak * 3 / 4)  # warmup
    assert lr[4] == pytest.approx(peak) and lr[10] == pytest.approx(peak)  # stable through warmup's end
    for i in range(3):  # books' first iterations rise from min_lr back to the schedule
        assert lr[11 + i] == pytest.approx(floor + (wsd(10 + i) - floor) * (i + 1) / 4)
    for it in range(13, 22):
        assert lr[it + 1] == pytest.approx(wsd(it))
    # Books' 4th step (iteration 13) trains tokens 1,024..1,152: 64 of them past the decay's start at 1,088.
    assert lr[14] == pytest.approx(peak + (floor - peak) * 64 / 1088)
    assert lr[22] == pytest.approx(floor)  # the last iteration trains at min_lr


@pytest.mark.slow  # trains a whole run, evaluating at every iteration
def test_an_annealed_stage_decays_to_min_lr_within_itself(kit, shard_dir, curriculum, tmp_path):
    train = kit.TINY_TRAIN.model_copy(update={"lr_schedule": "global", "eval_interval": 1, "eval_iters": 1,
                                             "checkpoint_interval": 100})
    warmup = curriculum.stages[0].model_copy(update={"lr": "anneal"})
    annealed = curriculum.model_copy(update={"stages": [warmup, curriculum.stages[1]]})
    kit.train_in_process(tmp_path / "run", shard_dir, annealed, train=train)
    lr = lrs_by_iteration(tmp_path / "run")
    start = train.learning_rate / (train.warmup_iters + 1)  # the global schedule at iteration 0
    for i in range(10):
        assert lr[i + 1] == pytest.approx(start + (train.min_lr - start) * i / 9)
    assert lr[10] == pytest.approx(train.min_lr)
    assert lr[11] > lr[10]  # books continues the global cosine where it stands


def test_an_lr_transition_needs_a_schedule_over_the_curriculum():
    with pytest.raises(ConfigError) as error:
        load_run_config(type="simple", overrides=["stages.pretrain.lr=rewarm"])
    message = str(error.value)
    assert "stage 'pretrain' sets lr='rewarm'" in message and "--set train.lr_schedule=wsd" in message
    config = load_run_config(type="simple", overrides=["stages.pretrain.lr=rewarm", "train.lr_schedule=wsd"])
    assert config.stages[1].lr == "rewarm"
    with pytest.raises(ConfigError, match="stages.1.lr.*'continue', 'rewarm' or 'anneal'"):
        load_run_config(type="simple", overrides=["stages.pretrain.lr=restart", "train.lr_schedule=wsd"])
    with pytest.raises(ConfigError, match="train.decay_fraction"):
        load_run_config(type="simple", overrides=["train.lr_schedule=wsd", "train.decay_fraction=0"])


def test_schedules_span_the_stages_they_say(kit):
    from curriculum.training.schedule import StagePlan, stage_schedule

    def plan(index: int, iters: int) -> StagePlan:
        return StagePlan(stage=f"s{index}", stage_index=index, block_size=16, n_epochs=1, tokens_budget=None,
                         batch_size=4, train_tokens=641, windows=40, seqs_per_iter=4, epoch_iters=iters,
                         total_iters=iters)

    plans = [plan(0, 30), plan(1, 70)]
    cfg = kit.TINY_TRAIN.model_copy(update={"lr_schedule": "wsd", "decay_fraction": 0.2})
    second = stage_schedule(plans, 1, cfg, "anneal")
    assert "linear decay to 0.0003 over the last 1,280 of 6,400 tokens of the whole curriculum" in second.describe()
    assert "anneal to 0.0003 over this stage" in second.describe()
    assert second.lr(0) == pytest.approx(cfg.learning_rate) and second.lr(69) == pytest.approx(cfg.min_lr)
    plain = stage_schedule(plans, 1, cfg)
    assert plain.lr(49) == pytest.approx(cfg.learning_rate)  # iteration 79: the last stable one
    assert plain.lr(50) == pytest.approx(cfg.learning_rate + (cfg.min_lr - cfg.learning_rate) / 20)
    assert plain.lr(69) == pytest.approx(cfg.min_lr)
