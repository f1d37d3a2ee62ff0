"""The trainer reads exactly the shards the run was keyed on: each shard it opens (train, val, earlier stages' val)
must have the checksum its prepare record holds, else a clear error names the file, both checksums and the fix."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from curriculum.prepare import ShardsRecord
from curriculum.training.trainer import train_stage
from data.shards import ShardError, read_header, read_shard
from tasks.train import stage_data


def records(data_dir, curriculum) -> list[ShardsRecord]:
    """The prepare records of the shards in `data_dir` as they are now (what the cache key was made from)."""
    out = []
    for stage in curriculum.stages:
        train, val = stage.shard_path(data_dir, "train"), stage.shard_path(data_dir, "val")
        header = read_header(train)
        out.append(ShardsRecord(
            stage=stage.name, shard_name=stage.shard_name, block_size=stage.block_size,
            tokenizer=header["tokenizer"], vocab_size=header["vocab_size"], train_path=train, val_path=val,
            train_sha256=header["sha256"], val_sha256=read_header(val)["sha256"],
            train_tokens=header["n_tokens"], val_tokens=read_header(val)["n_tokens"],
            train_documents=1, val_documents=1,
        ))
    return out


def _train_books(kit, curriculum, shards, run_dir):
    return train_stage(
        curriculum, 1, stage_data(curriculum, shards, 1), kit.TINY_MODEL, kit.TINY_TRAIN, run_dir,
        train_tokens={s.stage: s.train_tokens for s in shards},
        expect_tokenizer={"tokenizer": shards[1].tokenizer, "vocab_size": shards[1].vocab_size},
    )


@pytest.fixture
def setup(kit, trained_run, shard_dir, curriculum, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shard_dir, data)
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "01-books")  # books trains again, from the warmup's end
    return data, run_dir, records(data, curriculum)


@pytest.mark.parametrize("which", ["train_books_pretrain.bin", "val_books_pretrain.bin", "val_warmup_pretrain.bin"])
def test_a_shard_changed_after_its_record_is_refused(kit, curriculum, setup, which):
    data, run_dir, shards = setup
    before = kit.tree_hashes(run_dir)
    path = data / which
    tokens = np.array(read_shard(path).tokens)
    tokens[len(tokens) // 2] = (int(tokens[len(tokens) // 2]) + 1) % 50257  # one token differs: a whole, valid shard
    path.unlink()
    kit.write_shard(path, tokens)
    keyed = {str(s.train_path): s.train_sha256 for s in shards} | {str(s.val_path): s.val_sha256 for s in shards}
    with pytest.raises(ShardError) as error:
        _train_books(kit, curriculum, shards, run_dir)
    message = str(error.value)
    assert str(path) in message
    assert keyed[str(path)] in message and read_shard(path).sha256 in message
    assert "python flows/curriculum.py" in message and "--prepare-only" in message
    assert kit.tree_hashes(run_dir) == before  # refused before anything was written


def test_a_shard_swapped_for_another_whole_one_is_refused(kit, curriculum, setup):
    data, run_dir, shards = setup
    shutil.copy(data / "val_books_pretrain.bin", data / "val_warmup_pretrain.bin")
    with pytest.raises(ShardError, match="val_warmup_pretrain.bin is not the shard this run was prepared with"):
        _train_books(kit, curriculum, shards, run_dir)


@pytest.mark.slow  # trains a whole run
def test_the_shards_as_keyed_train(kit, trained_run, curriculum, setup):
    data, run_dir, shards = setup
    result = _train_books(kit, curriculum, shards, run_dir)
    assert result.iters == 12
    final = "final/model.safetensors"
    assert (run_dir / final).read_bytes() == (trained_run[0] / final).read_bytes()
