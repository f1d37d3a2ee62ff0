"""Exact resume: a training subprocess SIGKILLed at a named moment and then resumed ends with final weights
bit-identical to an uninterrupted run; finished stages are not trained again."""

from __future__ import annotations

import json
import shutil

import pytest

from curriculum.training.run_dir import read_metrics

# Training subprocesses, each killed or run to the end (five of them, plus a reference run).
pytestmark = pytest.mark.slow

VOLATILE = {"time", "tokens_per_s"}  # wall-clock fields of a metrics row


def _final_weights(run_dir):
    return (run_dir / "final" / "model.safetensors").read_bytes()


def _rows(run_dir):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in read_metrics(run_dir)]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def precision(request, kit):
    """Exact resume holds in both precisions, so both run on every CPU (bfloat16 is emulated where the CPU has no
    native bf16; `dtype: auto` picks one of them by the CPU, and this test should not depend on which)."""
    return kit.TINY_TRAIN.model_copy(update={"dtype": request.param})


@pytest.fixture(scope="module")
def reference(kit, tmp_path_factory, shard_dir, curriculum, precision):
    """An uninterrupted run in a subprocess, like the interrupted ones."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, precision)
    return run_dir


# Where the run is killed, in order, and what the next run must say about where it resumes. One chain of
# kills (each run resumes the previous one's leftovers) keeps this to five short subprocesses.
KILLS = [
    # mid-epoch, two iterations after the checkpoint at 3: at most one checkpoint interval is lost
    ("step:0:5", "resuming at iteration 3/10"),
    # inside the stage-end checkpoint write of stage 1: files written, folder not yet renamed into place
    ("checkpoint-write:0:10", "resuming at iteration 9/10"),
    # right after the transition to stage 2 (block 16 -> 32), before its first checkpoint
    ("step:1:1", "Starting from: the end of stage 'warmup'"),
    # inside an in-stage checkpoint write of stage 2
    ("checkpoint-write:1:6", "resuming at iteration 3/12"),
]


def test_killed_run_resumes_to_bit_identical_weights(kit, reference, precision, shard_dir, curriculum, tmp_path):
    run_dir, paused = tmp_path / "run", tmp_path / "paused"
    expected_next = None
    for pause_at, says_next in KILLS:
        proc = kit.spawn_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, precision,
                                  pause_at=pause_at, paused_file=paused)
        out = kit.kill_when_paused(proc, paused)
        paused.unlink()
        if expected_next:
            assert expected_next in out, out
        expected_next = says_next
        assert not (run_dir / "final").exists()

    out = kit.run_training(run_dir, shard_dir, curriculum, kit.TINY_MODEL, precision)
    assert expected_next in out and "stage 'warmup' is finished already" in out
    runtime = [json.loads(line) for line in (run_dir / "runtime.jsonl").read_text().splitlines()]
    assert {row["dtype"] for row in runtime} == {precision.dtype}
    assert _final_weights(run_dir) == _final_weights(reference)
    end = "checkpoints/01-books/end/optimizer.safetensors"
    assert (run_dir / end).read_bytes() == (reference / end).read_bytes()
    # metrics.jsonl: each evaluation once, same numbers as the uninterrupted run
    assert _rows(run_dir) == _rows(reference)
    assert not [p for p in run_dir.rglob(".*tmp-*")], "temporary files left behind"


def test_finished_run_trains_nothing_and_a_deleted_last_stage_retrains_only_that_stage(kit, trained_run, shard_dir,
                                                                                     curriculum, tmp_path):
    source, results, _ = trained_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    before = kit.tree_hashes(run_dir)

    again, rec = kit.train_in_process(run_dir, shard_dir, curriculum)
    assert rec.steps == [] and rec.checkpoints == []
    def without_path(rs):
        return [r.model_dump(exclude={"checkpoint"}) for r in rs]

    assert without_path(again) == without_path(results)
    assert kit.tree_hashes(run_dir) == before

    shutil.rmtree(run_dir / "checkpoints" / "01-books")  # the whole last stage: end and in-stage checkpoints
    retrained, rec = kit.train_in_process(run_dir, shard_dir, curriculum)
    assert {s.stage for s in rec.steps} == {"books"} and len(rec.steps) == 12
    assert retrained[0].checkpoint_sha256 == results[0].checkpoint_sha256
    assert _final_weights(run_dir) == _final_weights(source)
    assert _rows(run_dir) == _rows(source)


def test_deleted_stage_end_resumes_from_the_stages_last_checkpoint(kit, trained_run, shard_dir, curriculum, tmp_path):
    source, results, _ = trained_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "01-books" / "end")
    _, rec = kit.train_in_process(run_dir, shard_dir, curriculum)
    assert [(s.stage, s.stage_iter) for s in rec.steps] == [("books", 10), ("books", 11), ("books", 12)]
    assert _final_weights(run_dir) == _final_weights(source)


def test_metrics_of_finished_stages_are_restored_from_their_checkpoints(kit, trained_run, shard_dir, curriculum,
                                                                        tmp_path):
    source, _, _ = trained_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    (run_dir / "metrics.jsonl").unlink()
    _, rec = kit.train_in_process(run_dir, shard_dir, curriculum)
    assert rec.steps == []
    assert read_metrics(run_dir) == read_metrics(source)
