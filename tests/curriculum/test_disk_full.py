"""A checkpoint write that runs out of space (here a real file-size limit, RLIMIT_FSIZE, in the training process)
ends the run with a clear error and leaves nothing half-written; the next run resumes and finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from curriculum.training.checkpoints import in_stage_dirs, read_checkpoint

# Training subprocesses: one stopped by the size limit, one that resumes and finishes.
pytestmark = pytest.mark.slow


def _real_checkpoints(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / "checkpoints").glob("*/*") if not p.name.startswith(".")]


def test_a_full_disk_mid_checkpoint_fails_cleanly_and_the_next_run_resumes(kit, trained_run, shard_dir, curriculum,
                                                                            tmp_path):
    reference = trained_run[0]
    run_dir = tmp_path / "run"
    paused = tmp_path / "paused"
    # 1. Train into the second stage, then stop (SIGKILL): books has its iteration-3 checkpoint.
    proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, kit.TINY_TRAIN,
                              pause_at="step:1:4", paused_file=paused)
    kit.kill_when_paused(proc, paused)
    books = run_dir / "checkpoints" / "01-books"
    assert [i for i, _ in in_stage_dirs(books)] == [3]
    before = kit.tree_hashes(run_dir / "checkpoints")

    # 2. Resume with no room for a whole checkpoint: its optimizer file is larger than any file may grow.
    iter3 = books / "iter-0000003"
    weights, optimizer = (iter3 / "model.safetensors").stat().st_size, (iter3 / "optimizer.safetensors").stat().st_size
    assert weights < optimizer
    proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, kit.TINY_TRAIN,
                              file_size_limit=(weights + optimizer) // 2)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert "CheckpointWriteError" in out and f"could not write checkpoint {books / 'iter-0000006'}" in out, out
    assert "File too large" in out and "Free some space and run again" in out, out
    # Nothing half-written: no temporary folder, no new checkpoint, the earlier ones untouched and whole.
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
    assert kit.tree_hashes(run_dir / "checkpoints") == before
    for path in _real_checkpoints(run_dir):
        read_checkpoint(path)
    assert not (run_dir / "final").exists()

    # 3. With room again, the run resumes from iteration 3 of books and ends where an unbroken run ends.
    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, kit.TINY_TRAIN)
    assert "iter-0000003" in out, out
    final = "final/model.safetensors"
    assert (run_dir / final).read_bytes() == (reference / final).read_bytes()
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
