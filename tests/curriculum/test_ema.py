"""train.ema: an exponential moving average of the weights, kept beside them across stages, evaluated on the same
windows (val_loss_ema, forgetting_ema, evals_ema), checkpointed in ema.safetensors and resumed exactly, without
changing the raw weights by a bit."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from curriculum.training.checkpoints import EMA_FILE, MANIFEST_FILE, CheckpointError, read_checkpoint
from curriculum.training.config import TrainConfig
from curriculum.training.run_dir import RunMismatchError, read_metrics, run_fingerprint
from curriculum.training.trainer import EvalSet, StageData, train_stage
from data.shards import read_header
from model.gpt import GPT
from model.pretrained import load_weights

DECAY = 0.9
VOLATILE = {"time", "tokens_per_s"}  # wall-clock fields of a metrics row


def _train(kit, curriculum, data_dir, run_dir, train_cfg, eval_sets=None):
    """Every stage in order, like kit.train_in_process, optionally with extra eval sets."""
    recorder = kit.Recorder()
    train_tokens = {s.name: int(read_header(s.shard_path(data_dir, "train"))["n_tokens"])
                    for s in curriculum.stages}
    results = []
    for i in range(len(curriculum.stages)):
        data = StageData.for_stage(data_dir, curriculum, i)
        if eval_sets:
            data = replace(data, eval_sets=eval_sets)
        results.append(train_stage(curriculum, i, data, kit.TINY_MODEL, train_cfg, run_dir, train_tokens=train_tokens,
                                   expect_tokenizer=kit.EXPECT, listener=recorder))
    return results, recorder


def _stage_dir(run_dir, index):
    return next((run_dir / "checkpoints").glob(f"{index:02d}-*"))


@pytest.fixture(scope="module")
def ema_run(kit, tmp_path_factory, shard_dir, curriculum):
    """The whole test curriculum with train.ema and an extra eval set; same settings as `trained_run` else."""
    run_dir = tmp_path_factory.mktemp("ema") / "run"
    target = {"target": EvalSet(path=shard_dir / "val_books_pretrain.bin", block_size=32)}
    results, recorder = _train(kit, curriculum, shard_dir, run_dir,
                               kit.TINY_TRAIN.model_copy(update={"ema": DECAY}), target)
    return run_dir, results, recorder


def test_the_stored_average_is_decay_times_the_old_plus_the_rest_times_the_new_weights(kit, shard_dir, curriculum,
                                                                                      tmp_path):
    # Two steps per stage, a checkpoint after each: the weights and the average after every step are on disk.
    cfg = kit.TINY_TRAIN.model_copy(update={"ema": DECAY, "max_iters": 2, "checkpoint_interval": 1,
                                            "dtype": "float32"})
    run_dir = tmp_path / "run"
    _train(kit, curriculum, shard_dir, run_dir, cfg)
    torch.manual_seed(cfg.seed)  # how the trainer makes stage 0's initial weights
    vocab = int(read_header(shard_dir / "train_warmup_pretrain.bin")["vocab_size"])
    model_cfg = kit.TINY_MODEL.with_block_size(curriculum.max_block_size)
    w0 = {k: v.float() for k, v in GPT(model_cfg, vocab).state_dict().items()}
    average = w0
    for index in (0, 1):  # the second stage's average goes on from the first's end
        for step in ("iter-0000001", "end"):
            folder = _stage_dir(run_dir, index) / step
            weights, stored = load_file(str(folder / "model.safetensors")), load_file(str(folder / EMA_FILE))
            assert sorted(stored) == sorted(weights)  # the names of model.safetensors
            expected = {name: DECAY * average[name] + (1 - DECAY) * weights[name] for name in weights}
            for name in weights:
                torch.testing.assert_close(stored[name], expected[name], rtol=1e-6, atol=1e-7)
            assert not torch.equal(stored["lm_head.weight"], weights["lm_head.weight"])  # it lags behind them
            average = stored
    # A user loads the average like the weights; final/ holds it beside them.
    model = GPT(model_cfg, vocab)
    load_weights(model, run_dir / "final" / EMA_FILE)
    assert (run_dir / "final" / EMA_FILE).read_bytes() == (_stage_dir(run_dir, 1) / "end" / EMA_FILE).read_bytes()
    assert torch.equal(model.lm_head.weight, average["lm_head.weight"])


def test_the_raw_weights_and_losses_do_not_change_with_the_average(ema_run, trained_run):
    ema_dir, ema_results, ema_rec = ema_run
    raw_dir, raw_results, raw_rec = trained_run
    weights = "final/model.safetensors"
    assert (ema_dir / weights).read_bytes() == (raw_dir / weights).read_bytes()
    assert [s.loss for s in ema_rec.steps] == [s.loss for s in raw_rec.steps]
    for ours, theirs in zip(ema_rec.evals, raw_rec.evals, strict=True):
        assert (ours["val_loss"], ours["train_loss"], ours.get("forgetting")) == (
            theirs["val_loss"], theirs["train_loss"], theirs.get("forgetting"))
    assert [r.val_loss for r in ema_results] == [r.val_loss for r in raw_results]
    assert not (raw_dir / "final" / EMA_FILE).exists()
    assert not list(raw_dir.rglob(EMA_FILE))


def test_every_evaluation_measures_the_average_beside_the_weights(ema_run):
    run_dir, _, rec = ema_run
    rows = read_metrics(run_dir)
    assert rows == [dict(row) for row in rec.evals] and len(rows) == 6  # iterations 4, 8 and the end of each stage
    for row in rows:
        # 0.9 ** 4 of the average is still the initial weights at the first evaluation: it lags behind.
        assert row["val_loss_ema"] != row["val_loss"] and row["val_loss_ema"] > 0
        assert set(row["evals_ema"]) == set(row["evals"]) == {"target"}
        assert row["evals_ema"]["target"] != row["evals"]["target"]
        assert ("forgetting_ema" in row) == ("forgetting" in row) == bool(row.get("stage_end"))
        if "forgetting" in row:
            assert set(row["forgetting_ema"]) == set(row["forgetting"])
    books_end = rows[-1]
    assert books_end["forgetting_ema"]["warmup"] != books_end["forgetting"]["warmup"]


def test_a_run_folder_resumes_only_with_the_same_decay(kit, ema_run, shard_dir, curriculum, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(ema_run[0], run_dir)
    for other in (0.99, None):
        with pytest.raises(RunMismatchError, match=r"train\.ema"):
            _train(kit, curriculum, shard_dir, run_dir, kit.TINY_TRAIN.model_copy(update={"ema": other}))
    # Unset, ema is left out of the fingerprint: run folders from before train.ema existed still resume.
    assert "ema" not in run_fingerprint(curriculum, kit.TINY_MODEL, kit.TINY_TRAIN)["train"]
    assert run_fingerprint(curriculum, kit.TINY_MODEL, kit.TINY_TRAIN.model_copy(update={"ema": 0.9}))["train"]["ema"]


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1])
def test_the_decay_lies_strictly_between_0_and_1(decay):
    with pytest.raises(ValidationError, match="ema"):
        TrainConfig(ema=decay)


def test_a_checkpoint_without_the_average_is_refused_by_name(kit, ema_run, shard_dir, curriculum, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(ema_run[0], run_dir)
    warmup_end = _stage_dir(run_dir, 0) / "end"
    (warmup_end / EMA_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {EMA_FILE}"):
        read_checkpoint(warmup_end)
    # Listed nowhere (a checkpoint written without one): the stage that would continue its average says so.
    manifest = json.loads((warmup_end / MANIFEST_FILE).read_text())
    del manifest["files"][EMA_FILE]
    (warmup_end / MANIFEST_FILE).write_text(json.dumps(manifest))
    shutil.rmtree(_stage_dir(run_dir, 1))
    with pytest.raises(CheckpointError, match=f"has no {EMA_FILE}.*--restart"):
        _train(kit, curriculum, shard_dir, run_dir, kit.TINY_TRAIN.model_copy(update={"ema": DECAY}))


# Where the run is killed, and what the next run must say about where it resumes.
KILLS = [("step:0:5", "resuming at iteration 3/10"), ("step:1:5", "resuming at iteration 3/12")]


@pytest.mark.slow  # training subprocesses: two killed, one resumed to the end, one reference
def test_a_killed_run_resumes_to_bit_identical_weights_and_average(kit, shard_dir, curriculum, tmp_path):
    cfg = kit.TINY_TRAIN.model_copy(update={"ema": DECAY, "dtype": "float32"})
    reference = tmp_path / "reference"
    kit.run_training(reference, shard_dir, curriculum, kit.TINY_MODEL, cfg)
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    expected_next = None
    for pause_at, says_next in KILLS:
        proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, cfg, pause_at=pause_at,
                                  paused_file=paused)
        out = kit.kill_when_paused(proc, paused)
        paused.unlink()
        if expected_next:
            assert expected_next in out, out
        expected_next = says_next
    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, cfg)
    assert expected_next in out and "EMA val loss" in out
    for name in ("final/model.safetensors", f"final/{EMA_FILE}", f"checkpoints/00-warmup/end/{EMA_FILE}",
                 f"checkpoints/01-books/end/{EMA_FILE}"):
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name

    def rows(folder):
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in read_metrics(folder)]

    assert rows(run_dir) == rows(reference)
