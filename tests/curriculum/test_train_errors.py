"""Bad inputs give a clear error (what, which value, what to run) and leave the existing checkpoints intact;
a damaged checkpoint is skipped with a warning in favour of the previous good one."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from curriculum.config import ConfigError
from curriculum.training.checkpoints import CheckpointError
from curriculum.training.run_dir import RunMismatchError, prepare_run_dir, run_fingerprint
from curriculum.training.trainer import StageData, train_stage
from data.shards import ShardError, read_shard


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the finished run, free to damage."""
    source = trained_run[0]
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    return run_dir


@pytest.fixture
def data_copy(shard_dir, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(shard_dir, folder)
    return folder


def _train(kit, curriculum, data_dir, run_dir, stage_index=1, model=None, train=None):
    train_tokens = {"warmup": kit.TOKENS["train_warmup"], "books": kit.TOKENS["train_books"]}
    return train_stage(
        curriculum, stage_index, StageData.for_stage(data_dir, curriculum, stage_index), model or kit.TINY_MODEL,
        train or kit.TINY_TRAIN, run_dir, train_tokens=train_tokens, expect_tokenizer=kit.EXPECT,
    )


def test_missing_shard_names_the_file_and_the_prepare_command(kit, run_copy, data_copy, shard_dir, curriculum):
    shutil.rmtree(run_copy / "checkpoints" / "01-books")
    before = kit.tree_hashes(run_copy)
    (data_copy / "train_books_pretrain.bin").unlink()
    with pytest.raises(FileNotFoundError) as error:
        _train(kit, curriculum, data_copy, run_copy)
    message = str(error.value)
    assert str(data_copy / "train_books_pretrain.bin") in message
    assert "python flows/curriculum.py --type <type> (or --config FILE.yaml) --prepare-only" in message
    assert kit.tree_hashes(run_copy) == before

    shutil.copy(shard_dir / "train_books_pretrain.bin", data_copy)
    (data_copy / "val_warmup_pretrain.bin").unlink()  # an earlier stage's val shard: needed for forgetting
    with pytest.raises(FileNotFoundError, match="val_warmup_pretrain.bin"):
        _train(kit, curriculum, data_copy, run_copy)
    assert kit.tree_hashes(run_copy) == before


def test_finished_stage_needs_no_shards(kit, run_copy, data_copy, curriculum):
    for shard in data_copy.iterdir():
        shard.unlink()
    result = _train(kit, curriculum, data_copy, run_copy)
    assert result.is_intact() and result.iters == 12


def test_shard_of_another_tokenizer_is_refused(kit, run_copy, data_copy, curriculum):
    shutil.rmtree(run_copy / "checkpoints" / "01-books")
    before = kit.tree_hashes(run_copy)
    tokens = np.asarray(read_shard(data_copy / "val_books_pretrain.bin").tokens)
    kit.write_shard(data_copy / "val_books_pretrain.bin", tokens, tokenizer="p50k_base", vocab_size=50281)
    with pytest.raises(ShardError) as error:
        _train(kit, curriculum, data_copy, run_copy)
    message = str(error.value)
    assert "val_books_pretrain.bin" in message and "'p50k_base'" in message and "'r50k_base'" in message
    assert "--prepare-only" in message
    assert kit.tree_hashes(run_copy) == before


def test_changed_curriculum_is_refused_naming_the_difference(kit, run_copy, shard_dir, books):
    before = kit.tree_hashes(run_copy)
    changed = kit.make_curriculum(books, warmup_block=24)
    with pytest.raises(RunMismatchError) as error:
        _train(kit, changed, shard_dir, run_copy)
    message = str(error.value)
    assert "curriculum.warmup.block_size: 16 -> 24" in message and "--restart" in message
    with pytest.raises(RunMismatchError, match=r"train.learning_rate: 0.003 -> 0.001"):
        _train(kit, kit.make_curriculum(books), shard_dir, run_copy,
               train=kit.TINY_TRAIN.model_copy(update={"learning_rate": 1e-3}))
    assert kit.tree_hashes(run_copy) == before

    # bookkeeping settings may change on resume
    _train(kit, kit.make_curriculum(books), shard_dir, run_copy,
           train=kit.TINY_TRAIN.model_copy(update={"eval_interval": 5, "checkpoint_interval": 2}))

    # --restart moves the old run aside, untouched, and starts a new one
    payload = run_fingerprint(changed, kit.TINY_MODEL.with_block_size(32), kit.TINY_TRAIN)
    prepare_run_dir(run_copy, payload, restart=True)
    (aside,) = run_copy.parent.glob("run.old-*")
    assert kit.tree_hashes(aside) == before
    assert sorted(p.name for p in run_copy.iterdir()) == ["run.json"]


def test_block_size_beyond_the_model_fails_before_training(kit, run_copy, shard_dir, curriculum):
    before = kit.tree_hashes(run_copy)
    small = kit.TINY_MODEL.model_copy(update={"block_size": 16})
    with pytest.raises(ConfigError) as error:
        _train(kit, curriculum, shard_dir, run_copy, stage_index=0, model=small)
    message = str(error.value)
    assert "stage 'books' (stage 2/2) has block_size=32" in message and "model.block_size=16" in message
    assert "--set model.block_size=32" in message
    assert kit.tree_hashes(run_copy) == before


@pytest.mark.slow  # resumes and trains to the end
def test_damaged_checkpoint_falls_back_to_the_previous_good_one(kit, trained_run, run_copy, shard_dir, curriculum,
                                                                 caplog):
    shutil.rmtree(run_copy / "checkpoints" / "01-books" / "end")
    newest = run_copy / "checkpoints" / "01-books" / "iter-0000009"
    weights = newest / "optimizer.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated, e.g. a full disk
    before = kit.tree_hashes(run_copy)
    with caplog.at_level(logging.WARNING):
        result = _train(kit, curriculum, shard_dir, run_copy)
    assert "iter-0000009" in caplog.text and "does not match its checksum" in caplog.text
    assert result.iters == 12
    after = kit.tree_hashes(run_copy)
    kept = {k: v for k, v in before.items() if k.startswith("checkpoints/") and "iter-0000009" not in k}
    assert {k: v for k, v in after.items() if k in kept} == kept  # the good checkpoints are untouched
    # the damaged one is kept aside for inspection, not deleted
    (aside,) = (run_copy / "checkpoints" / "01-books").glob("iter-0000009.replaced-*")
    assert kit.tree_hashes(aside) == {k.split("/", 3)[3]: v for k, v in before.items() if "iter-0000009" in k}
    final = "final/model.safetensors"
    assert (run_copy / final).read_bytes() == (trained_run[0] / final).read_bytes()


def test_damaged_start_checkpoint_is_a_clear_error(kit, run_copy, shard_dir, curriculum):
    shutil.rmtree(run_copy / "checkpoints" / "01-books")
    weights = run_copy / "checkpoints" / "00-warmup" / "end" / "model.safetensors"
    weights.write_bytes(b"\0" * 64)
    before = kit.tree_hashes(run_copy)
    with pytest.raises(CheckpointError) as error:
        _train(kit, curriculum, shard_dir, run_copy)
    message = str(error.value)
    assert "00-warmup/end" in message and "train stage 'warmup' first" in message and "--restart" in message
    assert kit.tree_hashes(run_copy) == before


def test_stage_result_is_intact_only_while_its_checkpoint_is(trained_run, tmp_path):
    _, results, _ = trained_run
    copy = tmp_path / "end"
    shutil.copytree(results[0].checkpoint, copy)
    result = results[0].model_copy(update={"checkpoint": copy})
    assert result.is_intact()
    (copy / "state.json").write_text((copy / "state.json").read_text().replace('"iters"', '"iters" '))
    assert not result.is_intact()
    shutil.rmtree(copy)
    assert not result.is_intact()
