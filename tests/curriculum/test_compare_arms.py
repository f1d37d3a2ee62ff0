"""The arms of a comparison (curriculum/compare/arms.py) and the report's arithmetic, without training."""

from __future__ import annotations

from pathlib import Path

import pytest

from curriculum.compare.arms import (
    ARMS,
    check_comparable,
    check_versus,
    parse_arms,
    parse_schedules,
    plan_arms,
    run_folder,
    with_schedule,
)
from curriculum.compare.flops import flops_per_token
from curriculum.compare.report import compute_to_reach
from curriculum.config import ConfigError, load_run_config, validate_run_config
from curriculum.prepare import ShardsRecord
from curriculum.training.schedule import plan_curriculum


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
    assert parse_arms(",".join(ARMS)) == ["curriculum", "flat", "mixed", "lengths", "reversed"]  # the default
    with pytest.raises(ConfigError, match="choose from curriculum,flat,mixed,lengths,reversed"):
        parse_arms("flat,shuffled")


@pytest.mark.parametrize("match", ["tokens", "flops"])
def test_the_reversed_arm_trains_the_curriculums_stages_last_first_each_for_its_own_compute(default_run, match):
    config, shards, mixed = default_run
    plans = {p.arm: p for p in plan_arms(config, shards, ["reversed"], match, mixed)}
    curriculum, backwards = plans["curriculum"], plans["reversed"]
    # Stage names, data and block sizes are the curriculum's, in the other order.
    assert [(s.stage.name, s.data, s.stage.block_size) for s in backwards.stages] == [
        ("pretrain", "pretrain", 512), ("foundation", "foundation", 256), ("warmup", "warmup", 128)]
    assert [s.shards for s in backwards.stages] == [s.shards for s in curriculum.stages][::-1]
    reference = {s.stage.name: s for s in curriculum.stages}
    for stage in backwards.stages:
        mine = reference[stage.stage.name]
        assert stage.tokens_per_iter == mine.tokens_per_iter  # its own batch and block size
        one = stage.tokens_per_iter * (1 if match == "tokens" else stage.flops_per_token)
        per_token = 1 if match == "tokens" else stage.flops_per_token
        assert abs(stage.tokens * per_token - mine.tokens * per_token) <= one, stage.stage.name  # its own share
    last = backwards.stages[-1]
    one = last.tokens_per_iter * (1 if match == "tokens" else last.flops_per_token)
    assert abs(backwards.compute(match) - curriculum.compute(match)) <= one / 2
    assert backwards.model == curriculum.model


def test_schedules_are_checked_against_train_lr_schedule_and_the_stages_lr():
    config = load_run_config(type="default", overrides={"model.preset": "tiny"})
    assert parse_schedules(None, config) is None
    assert parse_schedules("wsd, constant,wsd", config) == ["wsd", "constant"]
    with pytest.raises(ConfigError, match=r"unknown schedule\(s\) \['cosine'\]; choose from "
                                          "per-stage,global,wsd,constant"):
        parse_schedules("per-stage,cosine", config)
    steered = load_run_config(type="default", overrides={"model.preset": "tiny", "stages.pretrain.lr": "rewarm",
                                                           "train.lr_schedule": "wsd"})
    assert parse_schedules("global,wsd", steered) == ["global", "wsd"]
    with pytest.raises(ConfigError, match=r"stage\(s\) \['pretrain'\] set an lr transition.*drop per-stage "
                                          "from --schedules or remove the stages' lr"):
        parse_schedules("wsd,per-stage", steered)
    with pytest.raises(ConfigError, match=r"\['pretrain'\]"):  # the versus curriculum's too
        parse_schedules("per-stage", config, steered)


def test_an_arm_under_another_schedule_keeps_its_stages_and_compute(default_run):
    config, shards, mixed = default_run
    for plan in plan_arms(config, shards, ["flat", "reversed"], "flops", mixed):
        other = with_schedule(plan, "constant")
        assert other.train.lr_schedule == "constant" and plan.train.lr_schedule == "per-stage"
        assert other.stages == plan.stages and other.compute("flops") == plan.compute("flops")
        assert other.train.model_copy(update={"lr_schedule": "per-stage"}) == plan.train
    assert run_folder(Path("/c"), "flat", 2) == Path("/c/flat-seed2")
    assert run_folder(Path("/c"), "flat", 2, "wsd") == Path("/c/wsd/flat-seed2")


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


def mixed_run(**train):
    """--type default with its last stage a mixture (TinyStories 3 : a book 1, block 512), and one record per
    component: warmup, foundation, pretrain.stories, pretrain.book."""
    config = validate_run_config({"name": "mix", "stages": [
        {"name": "warmup", "dataset_key": "roneneldan/TinyStories", "block_size": 128, "n_epochs": 1, "n_items": 500},
        {"name": "foundation", "dataset_key": "local-files", "files": ["books/"], "block_size": 256, "n_epochs": 2},
        {"name": "pretrain", "block_size": 512, "n_epochs": 1, "sources": [
            {"name": "stories", "dataset_key": "roneneldan/TinyStories", "n_items": 2000, "weight": 3},
            {"name": "book", "dataset_key": "local-files", "files": ["books/alice.txt"], "weight": 1}]},
    ], "model": {"preset": "tiny"}, "train": train})
    shards = [record("warmup", 400_000, 128), record("foundation", 300_000, 256),
              record("pretrain.stories", 250_000, 512), record("pretrain.book", 150_000, 512)]
    return config, shards


@pytest.mark.parametrize("match", ["tokens", "flops"])
def test_a_mixed_last_stage_is_read_with_its_weights_in_every_arm_at_matched_compute(match):
    config, shards = mixed_run()
    stories, book = shards[2:]
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed", "lengths"], match)}
    reference = plans["curriculum"].compute(match)
    for arm in ("flat", "mixed", "lengths"):
        plan = plans[arm]
        last = plan.stages[-1]
        assert abs(plan.compute(match) - reference) <= last.tokens_per_iter * (
            1 if match == "tokens" else last.flops_per_token) / 2, arm
        # The trainer's own arithmetic (a mixed stage: windows of every source) gives each stage's iterations.
        trained = plan_curriculum(plan.curriculum, plan.train_tokens(), plan.train)
        assert [p.total_iters for p in trained] == [s.iters for s in plan.stages], arm
    # curriculum, flat and lengths read the last stage's mixture: its sources' shards with weights 3 : 1.
    for arm, blocks in (("curriculum", [512]), ("flat", [512]), ("lengths", [128, 256, 512])):
        mixtures = [s for s in plans[arm].stages if s.stage.sources]
        assert [s.stage.block_size for s in mixtures] == blocks, arm
        for stage in mixtures:
            assert stage.stage.weights == [3, 1] and stage.shards == [stories, book], arm
            assert stage.component_shards() == {f"{stage.stage.name}.stories": stories,
                                                f"{stage.stage.name}.book": book}
    assert [s.data for s in plans["lengths"].stages] == ["pretrain"] * 3
    # mixed: one mixture of every component at the largest block size, each weighted by the tokens the
    # curriculum trains on it (the mixed stage's tokens shared 3 : 1).
    [mixed] = plans["mixed"].stages
    curriculum = plans["curriculum"].stages
    assert (mixed.stage.name, mixed.data, mixed.stage.block_size, mixed.shards) == ("mixed", "mixed", 512, shards)
    assert [s.name for s in mixed.stage.sources] == ["warmup", "foundation", "pretrain.stories", "pretrain.book"]
    assert mixed.stage.weights == pytest.approx([curriculum[0].tokens, curriculum[1].tokens,
                                                 curriculum[2].tokens * 3 / 4, curriculum[2].tokens / 4])


def test_a_mixed_first_stage_and_a_plain_last_stage():
    """Mixture in stage 1 only: the flat arm is a plain stage, the mixed arm still one mixture of all components."""
    config = validate_run_config({"name": "mix1", "stages": [
        {"name": "warmup", "block_size": 128, "n_epochs": 1, "sources": [
            {"dataset_key": "roneneldan/TinyStories", "weight": 1}, {"dataset_key": "local-files", "weight": 2}]},
        {"name": "main", "dataset_key": "local-files", "block_size": 256, "n_epochs": 1}],
        "model": {"preset": "tiny"}})
    shards = [record("warmup.s1", 100_000, 128), record("warmup.s2", 50_000, 128), record("main", 200_000, 256)]
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat", "mixed"], "flops")}
    assert [s.shards for s in plans["curriculum"].stages] == [shards[:2], shards[2:]]
    [flat] = plans["flat"].stages
    assert flat.stage.sources is None and flat.shards == [shards[2]]
    [mixed] = plans["mixed"].stages
    assert [s.name for s in mixed.stage.sources] == ["warmup.s1", "warmup.s2", "main"] and mixed.shards == shards
    warmup = plans["curriculum"].stages[0].tokens
    assert mixed.stage.weights[:2] == pytest.approx([warmup / 3, warmup * 2 / 3])


def versus_of(config, **changes):
    """`config` as a versus file would give it, with `changes` applied as dotted overrides."""
    raw = config.model_dump(mode="json", exclude_unset=True) | {"name": "other"}
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if section == "stages":
            name, _, field = field.partition(".")
            stage = next(s for s in raw["stages"] if s["name"] == name)
            stage[field] = value
        else:
            raw.setdefault(section, {})[field] = value
    return validate_run_config(raw)


def test_a_versus_curriculum_of_other_weights_and_lr_transitions_is_matched_and_keeps_its_settings():
    config, shards = mixed_run()
    sources = [{"name": "stories", "dataset_key": "roneneldan/TinyStories", "n_items": 2000, "weight": 1},
               {"name": "book", "dataset_key": "local-files", "files": ["books/alice.txt"], "weight": 1}]
    versus = check_versus(config, versus_of(config, **{"stages.pretrain.sources": sources,
                                                       "train.lr_schedule": "wsd", "train.decay_fraction": 0.3,
                                                       "stages.pretrain.lr": "rewarm"}), "other.yaml")
    assert versus.data.data_dir == config.data.data_dir  # prepared into the curriculum's data folder
    plans = {p.arm: p for p in plan_arms(config, shards, ["flat"], "flops", versus=versus, versus_shards=shards)}
    curriculum, other = plans["curriculum"], plans["versus"]
    assert other.label == "other" and other.model == curriculum.model
    assert (other.train.lr_schedule, other.train.decay_fraction) == ("wsd", 0.3)
    assert curriculum.train.lr_schedule == "per-stage"
    assert other.stages[-1].stage.lr == "rewarm" and other.stages[-1].stage.weights == [1, 1]
    # Same stage lengths: the same iterations per stage as the curriculum, so the same compute.
    assert [s.iters for s in other.stages] == [s.iters for s in curriculum.stages]
    assert other.compute("flops") == curriculum.compute("flops")
    trained = plan_curriculum(other.curriculum, other.train_tokens(), other.train)
    assert [p.total_iters for p in trained] == [s.iters for s in other.stages]
    # Judged on the curriculum's val sets: the arm's plan carries its own data, the flow gives it the judge.
    assert [s.data for s in other.stages] == ["warmup", "foundation", "pretrain"]


def test_a_versus_curriculum_of_other_lengths_keeps_its_stage_shares_at_the_curriculums_total():
    config, shards = mixed_run()
    versus = check_versus(config, versus_of(config, **{"stages.foundation.n_epochs": 1,
                                                       "train.tokens_per_step": 4096}), "short.yaml")
    plans = {p.arm: p for p in plan_arms(config, shards, [], "tokens", versus=versus, versus_shards=shards)}
    curriculum, other = plans["curriculum"], plans["versus"]
    assert abs(other.tokens - curriculum.tokens) <= other.stages[-1].tokens_per_iter / 2
    assert [s.tokens_per_iter for s in other.stages] == [4096, 4096, 4096]
    own = plan_curriculum(versus.curriculum, {s.stage: s.train_tokens for s in shards}, versus.train)
    shares = [p.tokens_trained / sum(q.tokens_trained for q in own) for p in own]
    assert [s.tokens / other.tokens for s in other.stages] == pytest.approx(shares, abs=4096 / other.tokens)


@pytest.mark.parametrize(("changes", "message"), [
    ({"model.n_embd": 128}, r"model\.n_embd is 128 there and 64 in the curriculum 'mix'; every arm trains the same"),
    ({"train.seed": 7}, r"train\.seed is 7 there and 1337 .*seed k of every arm"),
    ({"train.eval_iters": 3}, r"train\.eval_iters is 3 there .*train\.tokens_per_step"),
    ({"data.val_fraction": 0.1}, r"data\.val_fraction is 0\.1 there"),
    ({"stages.warmup.block_size": 1024}, r"stage\(s\) \['warmup'\] are longer than the model .*block_size=512"),
    ({"stages.warmup.n_items": 900}, r"stage 'warmup' would write the files of the curriculum's stage 'warmup' "
                                     r"\(train_warmup_pretrain\.bin"),
])
def test_a_versus_curriculum_that_cannot_be_compared_is_refused_by_field(changes, message):
    config, _ = mixed_run()
    with pytest.raises(ConfigError, match=r"--versus other\.yaml: " + message):
        check_versus(config, versus_of(config, **changes), "other.yaml")


def test_a_one_stage_curriculum_is_refused_with_what_to_do():
    config = validate_run_config({"stages": [{"name": "only", "dataset_key": "local-files", "block_size": 64,
                                              "n_epochs": 1}]})
    with pytest.raises(ConfigError, match="at least 2 stages; 'custom' has 1 .*--versus"):
        check_comparable(config)
