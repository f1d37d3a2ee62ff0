"""Stage transitions: block size and iteration counts change per stage, the LR schedule restarts or spans all
stages as configured, each epoch reads every window once, and the run folder holds what it promises."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from curriculum.training.batches import TrainWindows, eval_window_ids
from curriculum.training.run_dir import read_metrics
from curriculum.training.schedule import cosine_lr
from model.pretrained import load_pretrained


def test_transition_changes_block_size_and_iterations(trained_run, capsys):
    run_dir, results, rec = trained_run
    warmup, books = (start.plan for start in rec.starts)
    assert (warmup.block_size, books.block_size) == (16, 32)
    # warmup: 640 tokens -> 40 windows of 16, 4 per iteration, 1 epoch; books: 24 windows, 2 epochs
    assert (warmup.windows, warmup.iters_per_epoch, warmup.total_iters) == (40, 10.0, 10)
    assert (books.windows, books.iters_per_epoch, books.total_iters) == (24, 6.0, 12)
    assert [r.iters for r in results] == [10, 12]
    assert [r.tokens_seen for r in results] == [10 * 4 * 16, 12 * 4 * 32]
    assert [s.stage_iter for s in rec.steps] == list(range(1, 11)) + list(range(1, 13))
    assert [s.iter_num for s in rec.steps] == list(range(1, 23))
    assert rec.starts[1].previous_block_size == 16
    assert "the end of stage 'warmup'" in rec.starts[1].starting_from
    # forgetting: the books stage's end evaluates the warmup val set too
    assert list(results[1].forgetting) == ["warmup"] and results[0].forgetting == {}


def test_transition_message_names_what_changes(kit, shard_dir, curriculum, tmp_path, capsys):
    train = kit.TINY_TRAIN.model_copy(update={"max_iters": 2})
    kit.train_in_process(tmp_path / "run", shard_dir, curriculum, train=train)
    out = capsys.readouterr().out
    assert "[Stage 1/2] warmup" in out and "[Stage 2/2] books" in out
    assert "Block size: 16 -> 32" in out
    assert "Epochs: 2" in out
    assert "Iterations per epoch: 6.0 = 24 windows of 33 tokens / 4 sequences per iteration" in out
    assert "Iterations: 2 (capped by max_iters; 2 epoch(s) = 12)" in out
    assert "Tokens per iteration: 128 = batch size 4 x grad accum 1 x block size 32" in out


@pytest.mark.slow  # trains a second whole run
def test_per_stage_schedule_restarts_and_global_schedule_spans_the_curriculum(kit, trained_run, shard_dir,
                                                                             curriculum, tmp_path):
    _, _, per_stage = trained_run
    lrs = [s.lr for s in per_stage.steps]
    cfg = kit.TINY_TRAIN
    assert lrs[:10] == [cosine_lr(i, 10, cfg) for i in range(10)]
    assert lrs[10:] == [cosine_lr(i, 12, cfg) for i in range(12)]
    assert lrs[10] == pytest.approx(cfg.learning_rate / (cfg.warmup_iters + 1))  # warmup again at stage 2

    global_cfg = cfg.model_copy(update={"lr_schedule": "global"})
    _, rec = kit.train_in_process(tmp_path / "run", shard_dir, curriculum, train=global_cfg)
    lrs = [s.lr for s in rec.steps]
    # One cosine over the curriculum's 2,176 tokens (10 steps of 64, then 12 of 128), placed by tokens trained.
    def global_lr(i: int) -> float:
        t, step = (64 * i, 64) if i < 10 else (640 + 128 * (i - 10), 128)
        warmup = cfg.warmup_iters * 64
        if t < warmup:
            return cfg.learning_rate * (t + step) / (warmup + 64)
        coeff = 0.5 * (1 + math.cos(math.pi * (t - warmup) / (2176 - warmup)))
        return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)

    assert lrs == pytest.approx([global_lr(i) for i in range(22)], rel=1e-12)
    assert lrs[10] < lrs[9]  # no second warmup: the decay goes on
    assert lrs[-1] == pytest.approx(cfg.min_lr, rel=0.2) and lrs[-1] >= cfg.min_lr


@pytest.mark.slow  # trains a whole run
def test_grad_accum_counts_sequences_per_iteration(kit, shard_dir, curriculum, tmp_path):
    train = kit.TINY_TRAIN.model_copy(update={"batch_size": 2, "grad_accum": 2, "max_iters": 3})
    results, rec = kit.train_in_process(tmp_path / "run", shard_dir, curriculum, train=train)
    assert [start.plan.epoch_iters for start in rec.starts] == [10, 12]
    assert [r.iters for r in results] == [3, 3]


def test_each_epoch_reads_every_window_once_in_a_seeded_order():
    tokens = np.arange(16 * 10 + 1, dtype=np.uint16)
    windows = TrainWindows(tokens, block_size=16, batch_size=4, grad_accum=1, seed=3, stage_index=0)
    ids = np.concatenate([windows.window_ids(it, 0) for it in range(5)])  # 20 windows = 2 epochs
    assert sorted(ids[:10]) == list(range(10)) and sorted(ids[10:]) == list(range(10))
    assert list(ids[:10]) != list(ids[10:])  # a new permutation each epoch
    again = TrainWindows(tokens, 16, 4, 1, seed=3, stage_index=0)
    assert list(again.window_ids(3, 0)) == list(ids[12:16])  # a pure function of the iteration: resumable
    x, y = windows.batch(0, 0, device=__import__("torch").device("cpu"))
    assert x.shape == y.shape == (4, 16)
    assert (x[:, 1:] == y[:, :-1]).all()  # targets are inputs shifted by one


def test_eval_windows_are_fixed_and_spread():
    assert list(eval_window_ids(16 * 100 + 1, 16, 5)) == [0, 25, 50, 74, 99]
    assert list(eval_window_ids(16 * 3 + 1, 16, 8)) == [0, 1, 2]


def test_run_folder_holds_metrics_runtime_and_final_weights(trained_run, tmp_path):
    run_dir, results, rec = trained_run
    rows = read_metrics(run_dir)
    assert [(r["stage"], r["stage_iter"]) for r in rows] == [
        ("warmup", 4), ("warmup", 8), ("warmup", 10), ("books", 4), ("books", 8), ("books", 12)
    ]
    assert rows == rec.evals
    assert rows[-1]["stage_end"] and rows[-1]["val_loss"] == results[-1].val_loss
    assert {"train_loss", "val_loss", "lr", "tokens_per_s", "time", "iter_num"} <= set(rows[0])
    runtime = [json.loads(line) for line in (run_dir / "runtime.jsonl").read_text().splitlines()]
    assert runtime[0]["device"] == "cpu" and runtime[0]["torch_version"] and "dtype" in runtime[0]
    model, card = load_pretrained(run_dir / "final")
    assert card["tokenizer"] == "r50k_base" and card["vocab_size"] == 50257 and card["model"]["block_size"] == 32
    assert (run_dir / "final" / "model.safetensors").read_bytes() == (
        results[-1].checkpoint / "model.safetensors"
    ).read_bytes()
    assert all(r.is_intact() for r in results)
    # in-stage checkpoints: the newest keep_checkpoints of each stage, plus each stage's end
    books = sorted(p.name for p in (run_dir / "checkpoints" / "01-books").iterdir())
    assert books == ["end", "iter-0000006", "iter-0000009"]
    assert sorted(p.suffix for p in results[-1].checkpoint.iterdir()) == [".json"] * 3 + [".safetensors"] * 2


def test_learning_happens(trained_run):
    run_dir, results, rec = trained_run
    rows = read_metrics(run_dir)
    assert rows[-1]["val_loss"] < rows[3]["val_loss"]  # books val loss falls within the stage


def test_the_train_tokens_of_the_run_must_match_the_shards(kit, shard_dir, curriculum, tmp_path):
    from curriculum.training.trainer import StageData, train_stage

    tokens = {"warmup": kit.TOKENS["train_warmup"] + 5, "books": kit.TOKENS["train_books"]}
    with pytest.raises(ValueError, match=r"train_tokens\['warmup'\]=646 but .* holds 641 tokens"):
        train_stage(curriculum, 0, StageData.for_stage(shard_dir, curriculum, 0), kit.TINY_MODEL, kit.TINY_TRAIN,
                    tmp_path / "run", train_tokens=tokens, expect_tokenizer=kit.EXPECT)
    assert not (tmp_path / "run").exists()  # refused before writing anything


def test_sample_from_the_final_folder(trained_run):
    from model.sample import sample

    text = sample(str(trained_run[0] / "final"), "Once upon a time", max_new_tokens=5, seed=1)
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time")
