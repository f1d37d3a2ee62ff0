"""Token budgets: a stage's length in tokens instead of epochs trains its budget (within one step), repeating or
cutting its data; the ledger of planned vs trained tokens and the repetition warning come before any training."""

from __future__ import annotations

import json

import pytest

from curriculum import ConfigError, CurriculumStage, load_run_config
from curriculum.training.ledger import LEDGER_FILE, ledger_table, repetition_warnings, token_ledger, write_ledger


@pytest.mark.slow  # trains a whole run
def test_a_budget_stage_trains_its_budget_repeating_or_cutting_its_data(kit, shard_dir, curriculum, tmp_path):
    # warmup: 64 tokens per iteration, 640 train tokens -> 1,000 tokens repeat the data; books: 128 per
    # iteration, 768 train tokens -> 300 tokens are less than one epoch.
    warmup = curriculum.stages[0].model_copy(update={"n_epochs": None, "tokens": 1000})
    books = curriculum.stages[1].model_copy(update={"n_epochs": None, "tokens": 300})
    budgets = curriculum.model_copy(update={"stages": [warmup, books]})
    train = kit.TINY_TRAIN.model_copy(update={"eval_interval": 100, "checkpoint_interval": 100})
    results, rec = kit.train_in_process(tmp_path / "run", shard_dir, budgets, train=train)
    for result, start, budget in zip(results, rec.starts, (1000, 300), strict=True):
        assert abs(result.tokens_seen - budget) <= start.plan.tokens_per_iter  # within one step
    assert [r.tokens_seen for r in results] == [16 * 64, 2 * 128]  # round(1000 / 64), round(300 / 128) steps

    rows = token_ledger(budgets, [start.plan for start in rec.starts])
    assert [(r.stage, r.source, r.tokens_planned, r.tokens_trained, r.source_tokens, r.epochs_realised)
            for r in rows] == [
        ("warmup", "roneneldan/TinyStories", 1000, 1024, 640, 1.6),
        ("books", "local-files", 300, 256, 768, 0.3333),
    ]
    [warning] = repetition_warnings(rows, max_repetition=1.5)
    assert "stage 'warmup' repeats source 'roneneldan/TinyStories' 1.60 times" in warning
    assert "(1,024 tokens trained from 640 train tokens)" in warning and "train.max_repetition=1.5" in warning
    assert repetition_warnings(rows, max_repetition=4) == []


def test_the_ledger_of_an_epoch_stage_and_its_file(tmp_path, kit, shard_dir, curriculum):
    from curriculum.training.schedule import plan_curriculum

    train = kit.TINY_TRAIN.model_copy(update={"max_iters": 8})
    plans = plan_curriculum(curriculum, {"warmup": 641, "books": 769}, train)
    rows = token_ledger(curriculum, plans)
    # warmup: 1 epoch of 40 windows of 16 = 640 planned, 8 (capped) x 64 trained; books: 2 epochs of 24 x 32
    assert [(r.length, r.tokens_planned, r.tokens_trained, r.capped) for r in rows] == [
        ("1 epoch(s)", 640, 512, True), ("2 epoch(s)", 1536, 1024, True)]
    table = ledger_table(rows)
    assert table.splitlines()[1].split() == ["stage", "source", "length", "tokens", "planned", "tokens", "trained",
                                             "source", "tokens", "epochs"]
    assert "0.80 (max_iters)" in table
    path = write_ledger(tmp_path, rows, max_repetition=0.5)
    record = json.loads(path.read_text())
    assert path.name == LEDGER_FILE and [row["stage"] for row in record["rows"]] == ["warmup", "books"]
    assert record["max_repetition"] == 0.5 and len(record["warnings"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER_FILE]  # no temporary file left beside it


def test_a_stage_has_one_length():
    with pytest.raises(ValueError, match="stage 'warmup' gives both n_epochs=1 and tokens=5,000"):
        CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=64, n_epochs=1, tokens=5000)
    with pytest.raises(ValueError, match="stage 'warmup' has no length: give n_epochs"):
        CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=64)
    with pytest.raises(ConfigError, match="stage 'pretrain' gives both n_epochs=2 and tokens=1,000"):
        load_run_config(type="simple", overrides=["stages.pretrain.tokens=1000"])
    config = load_run_config(type="simple",
                             overrides={"stages.pretrain.tokens": 1000, "stages.pretrain.n_epochs": None})
    assert (config.stages[1].tokens, config.stages[1].n_epochs) == (1000, None)


def test_the_ledger_of_a_mixed_stage_has_a_row_per_source(books):
    from curriculum import Curriculum
    from curriculum.training.config import TrainConfig
    from curriculum.training.schedule import plan_curriculum

    curriculum = Curriculum(stages=[CurriculumStage(name="main", block_size=32, tokens=40 * 4 * 32, sources=[
        {"name": "stories", "dataset_key": "roneneldan/TinyStories", "weight": 3},
        {"name": "book", "dataset_key": "local-files", "files": [str(books)], "weight": 1}])])
    plans = plan_curriculum(curriculum, {"main.stories": 32 * 100 + 1, "main.book": 32 * 10 + 1},
                            TrainConfig(batch_size=4))
    rows = token_ledger(curriculum, plans)
    assert [(r.source, r.length, r.tokens_planned, r.tokens_trained, r.source_tokens, r.epochs_realised)
            for r in rows] == [
        ("main.stories (roneneldan/TinyStories)", "a budget of 5,120 tokens, weight 3", 3840, 3840, 3200, 1.2),
        ("main.book (local-files)", "a budget of 5,120 tokens, weight 1", 1280, 1280, 320, 4.0),
    ]
    [warning] = repetition_warnings(rows, max_repetition=3)
    assert "repeats source 'main.book (local-files)' 4.00 times" in warning
