"""A damaged manifest, whatever its damage, makes resume fall back to the previous checkpoint with a warning;
a manifest that lists fewer files than a checkpoint has is damaged too (it would leave files unverified)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from curriculum.training.checkpoints import MANIFEST_FILE, CheckpointError, read_checkpoint
from curriculum.training.trainer import StageData, train_stage


@pytest.fixture
def run_copy(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    return run_dir


def _train_books(kit, curriculum, data_dir, run_dir):
    train_tokens = {"warmup": kit.TOKENS["train_warmup"], "books": kit.TOKENS["train_books"]}
    return train_stage(
        curriculum, 1, StageData.for_stage(data_dir, curriculum, 1), kit.TINY_MODEL, kit.TINY_TRAIN, run_dir,
        train_tokens=train_tokens, expect_tokenizer=kit.EXPECT,
    )


def _listing_all_but_one(manifest: dict) -> dict:
    files = dict(manifest["files"])
    files.pop("optimizer.safetensors")
    return {**manifest, "files": files}


DAMAGES = {
    "random bytes": lambda manifest: os.urandom(200) + b"\xff\xfe",  # not UTF-8: UnicodeDecodeError
    "files is a string": lambda manifest: json.dumps({**manifest, "files": "x"}).encode(),
    "files is empty": lambda manifest: json.dumps({**manifest, "files": {}}).encode(),
    "one file left out": lambda manifest: json.dumps(_listing_all_but_one(manifest)).encode(),
    "a list": lambda manifest: b"[1, 2]",
    "a checksum that is not one": lambda manifest: json.dumps(
        {**manifest, "files": {**manifest["files"], "state.json": 7}}).encode(),
}
EXPECTED = {
    "random bytes": "not JSON", "files is a string": "no table of files", "files is empty": "a checkpoint has exactly",
    "one file left out": "a checkpoint has exactly", "a list": "no table of files",
    "a checksum that is not one": "no valid SHA-256",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_manifest_is_refused_by_name(trained_run, tmp_path, damage):
    checkpoint = tmp_path / "iter"
    shutil.copytree(trained_run[0] / "checkpoints" / "01-books" / "iter-0000009", checkpoint)
    manifest = json.loads((checkpoint / MANIFEST_FILE).read_text())
    (checkpoint / MANIFEST_FILE).write_bytes(DAMAGES[damage](manifest))
    with pytest.raises(CheckpointError, match=EXPECTED[damage]):
        read_checkpoint(checkpoint)


@pytest.mark.slow  # resumes and trains, once per damage
@pytest.mark.parametrize("damage", ["random bytes", "files is a string", "files is empty"])
def test_resume_falls_back_past_a_damaged_manifest(kit, trained_run, run_copy, shard_dir, curriculum, caplog, damage):
    shutil.rmtree(run_copy / "checkpoints" / "01-books" / "end")
    newest = run_copy / "checkpoints" / "01-books" / "iter-0000009"
    manifest = json.loads((newest / MANIFEST_FILE).read_text())
    (newest / MANIFEST_FILE).write_bytes(DAMAGES[damage](manifest))
    with caplog.at_level(logging.WARNING):
        result = _train_books(kit, curriculum, shard_dir, run_copy)
    assert "iter-0000009 is unusable, falling back to the previous good checkpoint" in caplog.text
    assert EXPECTED[damage] in caplog.text
    assert result.iters == 12
    # Resumed from iter 6 and trained on to the same end as the uninterrupted run.
    final = "final/model.safetensors"
    assert (run_copy / final).read_bytes() == (trained_run[0] / final).read_bytes()
