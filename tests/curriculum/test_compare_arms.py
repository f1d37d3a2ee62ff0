"""The arms of a comparison (curriculum/compare/arms.py) and the report's arithmetic, without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from curriculum.compare.arms import parse_arms, plan_arms
from curriculum.compare.flops import flops_per_token
from curriculum.compare.report import compute_to_reach
from curriculum.config import ConfigError, load_run_config
from curriculum.prepare import ShardsRecord


def record(stage: str, train_tokens: int, block: int) -> ShardsRecord:
    return ShardsRecord(
        stage=stage, shard_name=f"{stage}_pretrain", block_size=block, tokenizer="r50k_base", vocab_size=50257,
        train_path=Path(f"/data/train_{stage}_pretrain.bin"), val_path=Path(f"/data/val_{stage}_pretrain.bin"),
        train_sha256=f"t-{stage}", val_sha256=f"v-{stage}", train_tokens=train_tokens, val_tokens=5_000,
        train_documents=10, val_documents=1,
    )


@pytest.fixture
def default_run():
    """--type default: three stages at blocks 128, 256 and 512 (nothing is prepared: plans need only counts)."""
    config = load_run_config(type="default", overrides={"model.preset": "tiny"})
    shards = [record("warmup", 400_000, 128), record("foundation", 300_000, 256), record("pretrain", 200_000, 512)]
    mixed = record("mixed", 900_000, 512).model_copy(update={"stage": "mixed"})
    return config, shards, mixed


@pytest.mark.parametrize("match", ["tokens", "flops"])
def test_every_arm_matches_the_curriculums_compute_within_one_iteration(default_run, match):
    config, shards, mixed = default_run
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed", "lengths"], match, mixed)}
    reference = plans["curriculum"].compute(match)
    for arm in ("flat", "mixed", "lengths"):
        plan = plans[arm]
        last = plan.stages[-1]
        one_iteration = last.tokens_per_iter * (1 if match == "tokens" else last.flops_per_token)
        assert abs(plan.compute(match) - reference) <= one_iteration / 2, arm
        for stage in plan.stages:  # each stage's epochs cover its iterations, and its cap is exactly them
            assert stage.stage.max_iters == stage.iters
            windows = (stage.train_tokens - 1) // stage.stage.block_size
            assert stage.stage.n_epochs * windows // (config.train.batch_size * config.train.grad_accum) >= stage.iters


def test_arms_read_the_right_data_at_the_right_block_sizes(default_run):
    config, shards, mixed = default_run
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed", "lengths"], "flops", mixed)}
    assert [(s.data, s.stage.block_size) for s in plans["curriculum"].stages] == [
        ("warmup", 128), ("foundation", 256), ("pretrain", 512)]
    assert [(s.data, s.stage.block_size) for s in plans["flat"].stages] == [("pretrain", 512)]
    assert [(s.data, s.stage.block_size) for s in plans["mixed"].stages] == [("mixed", 512)]
    assert [(s.data, s.stage.block_size) for s in plans["lengths"].stages] == [
        ("pretrain", 128), ("pretrain", 256), ("pretrain", 512)]
    assert {p.model.block_size for p in plans.values()} == {512}  # one model shape: the same initial weights
    # lengths gives each block size the curriculum's share of compute at that block size.
    for mine, theirs in zip(plans["lengths"].stages, plans["curriculum"].stages, strict=True):
        assert mine.flops == pytest.approx(theirs.flops, abs=mine.tokens_per_iter * mine.flops_per_token)


def test_a_long_context_token_costs_more_flops():
    from model.config import ModelConfig

    model = ModelConfig(preset="small")
    n = 12 * 6 * 256**2 + 50257 * 256
    assert flops_per_token(model, 50257, 128) == 6 * n + 12 * 6 * 256 * 128
    assert flops_per_token(model, 50257, 512) > flops_per_token(model, 50257, 128)


def test_unknown_arms_are_refused_with_the_choices():
    assert parse_arms("flat,lengths") == ["curriculum", "flat", "lengths"]
    with pytest.raises(ConfigError, match="choose from curriculum,flat,mixed,lengths"):
        parse_arms("flat,shuffled")


def test_compute_to_reach_interpolates_between_evaluations_and_says_when_never():
    points = [{"tokens": 100, "target": 8.0}, {"tokens": 200, "target": 6.0}, {"tokens": 300, "target": 5.0}]
    assert compute_to_reach(points, 7.0, "tokens") == pytest.approx(150)
    assert compute_to_reach(points, 5.0, "tokens") == pytest.approx(300)
    assert compute_to_reach(points, 9.0, "tokens") == pytest.approx(100)
    assert compute_to_reach(points, 4.9, "tokens") is None


def test_arms_accept_batch_budget_and_lr_settings_unchanged(default_run):
    """tokens_per_step, a stage's batch_size, a token budget, wsd and an lr transition pass through every arm."""
    from curriculum.training.schedule import plan_curriculum

    _, shards, mixed = default_run
    config = load_run_config(type="default", overrides={
        "model.preset": "tiny", "train.tokens_per_step": 4096, "stages.warmup.batch_size": 16,
        "stages.foundation.n_epochs": None, "stages.foundation.tokens": 500_000, "train.lr_schedule": "wsd",
        "stages.pretrain.lr": "rewarm"})
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed", "lengths"], "tokens", mixed)}
    assert [s.tokens_per_iter for s in plans["curriculum"].stages] == [16 * 128, 4096, 4096]
    assert plans["curriculum"].stages[1].iters == round(500_000 / 4096)
    reference = plans["curriculum"].tokens
    for arm in ("flat", "mixed", "lengths"):
        plan = plans[arm]
        assert abs(plan.tokens - reference) <= plan.stages[-1].tokens_per_iter / 2, arm
        # Each arm trains as planned: the trainer's own arithmetic gives the arm's iterations.
        counts = {s.stage.name: s.train_tokens for s in plan.stages}
        trained = plan_curriculum(plan.curriculum, counts, plan.train)
        assert [p.total_iters for p in trained] == [s.iters for s in plan.stages], arm
        assert all(s.stage.tokens is None for s in plan.stages)  # the arm's length is its iteration cap
    assert plans["flat"].stages[0].stage.lr == "rewarm" and plans["flat"].train.lr_schedule == "wsd"


def test_a_mixed_stage_is_refused_by_name_before_anything_is_prepared(default_run):
    from curriculum.compare.arms import check_comparable

    _, shards, mixed = default_run
    config = load_run_config(type="default", overrides={"model.preset": "tiny", "stages.warmup.dataset_key": None,
                                                       "stages.warmup.n_items": None, "stages.warmup.sources": [
        {"dataset_key": "roneneldan/TinyStories", "weight": 1}, {"dataset_key": "local-files", "weight": 1}]})
    with pytest.raises(ConfigError, match=r"compare: stage\(s\) \['warmup'\] mix several sources"):
        check_comparable(config)
    with pytest.raises(ConfigError, match="mix several sources"):
        plan_arms(config, shards, ["flat"], "tokens", mixed)
