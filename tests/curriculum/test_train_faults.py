"""A NaN or infinite loss stops training before it reaches the weights or a checkpoint, with an error naming the
stage, the iteration and the last good checkpoint; the checkpoints on disk stay finite and a re-run works."""

from __future__ import annotations

import math
import shutil

import pytest
from safetensors.torch import load_file

from curriculum.training.checkpoints import read_checkpoint
from curriculum.training.run_dir import prepare_run_dir, run_fingerprint
from curriculum.training.stage_loop import NonFiniteLossError
from curriculum.training.trainer import StageData, train_stage


def _checkpoints(run_dir):
    return sorted(p for p in (run_dir / "checkpoints").glob("*/*") if not p.name.startswith("."))


def _assert_whole_and_finite(run_dir) -> None:
    for path in _checkpoints(run_dir):
        read_checkpoint(path)  # every file matches its manifest
        for name in ("model.safetensors", "optimizer.safetensors"):
            for key, tensor in load_file(str(path / name)).items():
                if tensor.is_floating_point():
                    assert bool(tensor.isfinite().all()), f"{path / name}: {key} is not finite"


@pytest.mark.slow  # training subprocesses
def test_a_nan_loss_mid_stage_stops_before_it_is_written_and_a_rerun_resumes(kit, trained_run, shard_dir,
                                                                             curriculum, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("CURRICULUM_NAN_AT", "1:8")  # stage books, iteration 8: after its iteration-6 checkpoint
    proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, kit.TINY_TRAIN)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    books = run_dir / "checkpoints" / "01-books"
    assert "NonFiniteLossError: stage 'books' (stage 2/2), iteration 8/12: the training loss is nan" in out, out
    assert f"the last good checkpoint is {books / 'iter-0000006'}" in out, out
    assert "Lower train.learning_rate (now 0.003)" in out and "--restart" in out, out
    # Nothing after the bad step was written; the good checkpoints were not pruned.
    assert sorted(p.name for p in books.iterdir()) == ["iter-0000003", "iter-0000006"]
    assert not (run_dir / "final").exists()
    _assert_whole_and_finite(run_dir)

    monkeypatch.delenv("CURRICULUM_NAN_AT")
    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, kit.TINY_TRAIN)
    assert "resuming at iteration 6/12" in out, out
    final = "final/model.safetensors"
    assert (run_dir / final).read_bytes() == (trained_run[0] / final).read_bytes()


@pytest.mark.slow  # a checkpoint every step until it diverges
def test_a_learning_rate_that_diverges_stops_with_the_stage_and_iteration(kit, shard_dir, curriculum, tmp_path):
    run_dir = tmp_path / "run"
    wild = kit.TINY_TRAIN.model_copy(update={"learning_rate": 1e10, "min_lr": 1e9, "warmup_iters": 0,
                                             "grad_clip": 0.0, "checkpoint_interval": 1})
    train_tokens = {"warmup": kit.TOKENS["train_warmup"], "books": kit.TOKENS["train_books"]}
    data = StageData.for_stage(shard_dir, curriculum, 0)

    def train(cfg):
        return train_stage(curriculum, 0, data, kit.TINY_MODEL, cfg, run_dir, train_tokens=train_tokens,
                           expect_tokenizer=kit.EXPECT)

    with pytest.raises(NonFiniteLossError) as error:
        train(wild)
    message = str(error.value)
    assert message.startswith("stage 'warmup' (stage 1/2), iteration ")
    assert "Lower train.learning_rate (now 1e+10)" in message
    _assert_whole_and_finite(run_dir)
    written = _checkpoints(run_dir)
    if written:  # the loss may stay finite for a step or two while the weights grow
        assert f"the last good checkpoint is {written[-1]}" in message
    else:
        assert "no checkpoint was written yet" in message

    # Saner settings are another run: --restart moves this folder aside, and training then works.
    prepare_run_dir(run_dir, run_fingerprint(curriculum, kit.TINY_MODEL, kit.TINY_TRAIN), restart=True)
    result = train(kit.TINY_TRAIN)
    assert math.isfinite(result.val_loss) and result.iters > 0
    shutil.rmtree(run_dir)
