"""A mistake the user can fix ends `python flows/curriculum.py` and `python flows/compare.py` with its message: a
non-zero exit status, the value and the fix named, and no traceback on stderr (flows/cli.py, run_flow)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each test runs a command line as a process, with Prefect's temporary server.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CURRICULUM = ROOT / "flows" / "curriculum.py"
COMPARE = ROOT / "flows" / "compare.py"

# Two stages (compare needs two) of one small book: preparing them takes a second, and is cached between tests.
CONFIG = """
stages:
  - name: short
    dataset_key: local-files
    files: [{book}]
    block_size: 32
    n_epochs: 1
  - name: long
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 2
  max_iters: 4
  eval_iters: 1
  dtype: float32
"""

# Diverges within a few iterations (tests/curriculum/test_train_faults.py); the cap only bounds a run that does not.
DIVERGING = ("--set", "train.learning_rate=1e10", "--set", "train.min_lr=1e9", "--set", "train.warmup_iters=0",
             "--set", "train.grad_clip=0", "--set", "train.max_iters=50")

HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from data.folder_lock import folder_lock
with folder_lock(sys.argv[1], sys.argv[2], flow_run_id="1234-abcd", flow_run_name="other-run"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, books):
    base = tmp_path_factory.mktemp("cli-errors")
    config = base / "two.yaml"
    config.write_text(CONFIG.format(book=books / "paine_common-sense_pg147.txt"))
    return {"base": base, "config": config, "data": base / "data"}


def run(setup, script: Path, out_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(script), "--config", str(setup["config"]), "--data-dir", str(setup["data"]),
               "--out-dir", str(out_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          cwd="/", timeout=300)


def assert_user_error(result: subprocess.CompletedProcess, status: int, *named: str) -> str:
    """The run ended with `status`, its output names each of `named`, and stderr holds no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == status, output[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-5000:]
    for text in named:
        assert text in output, output[-3000:]
    return output


@contextlib.contextmanager
def held(folder: Path, purpose: str) -> Iterator[int]:
    """`folder` locked by another process (as another run would hold it); yields that process's pid."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(folder), purpose],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_run_folder_in_use_names_its_holder_and_another_out_dir(setup):
    out = setup["base"] / "locked-run"
    with held(out, "run") as pid:
        result = run(setup, CURRICULUM, out)
    assert_user_error(result, 1, f"error: the run folder {out.resolve()} is in use by pid {pid}", "'other-run'",
                      "give this run another --out-dir")


def test_a_comparison_folder_in_use_names_its_holder_and_another_out_dir(setup):
    out = setup["base"] / "locked-compare"
    with held(out, "compare") as pid:
        result = run(setup, COMPARE, out, "--seeds", "1", "--arms", "curriculum")
    assert_user_error(result, 1, f"error: the compare folder {out.resolve()} is in use by pid {pid}",
                      "give this run another --out-dir")


def test_a_batch_larger_than_the_stage_names_the_stage_and_the_setting(setup):
    # Valid as a config; the stage's 755 windows make no iteration of 1,000 sequences once its data is prepared.
    result = run(setup, CURRICULUM, setup["base"] / "big-batch", "--set", "train.batch_size=1000")
    assert_user_error(result, 1, "error: stage 'short' has", "fewer than one iteration needs",
                      "batch_size*grad_accum = 1000*1 = 1000", "lower train.batch_size")


def test_tokens_per_step_that_makes_no_whole_batch_is_refused_before_the_flow_starts(setup):
    result = run(setup, CURRICULUM, setup["base"] / "tokens-per-step", "--set", "train.tokens_per_step=100")
    output = assert_user_error(result, 2, "train.tokens_per_step=100 does not divide by stage 'short'",
                               "--set stages.short.batch_size=N")
    assert "Beginning flow run" not in output


def test_a_stage_without_text_files_names_the_folder_and_the_setting(setup):
    empty = setup["base"] / "no-books"
    empty.mkdir()
    result = run(setup, CURRICULUM, setup["base"] / "no-text", "--set", f"stages.short.files=[{empty}]")
    assert_user_error(result, 1, f"error: stage 'short' (local-files) found no .txt files in ['{empty}']",
                      "--set stages.short.files=")


def test_a_diverging_learning_rate_names_the_iteration_and_the_settings(setup):
    # Raised in the train task, reported again by the flow: neither shows a traceback.
    result = run(setup, CURRICULUM, setup["base"] / "diverging", *DIVERGING)
    assert_user_error(result, 1, "error: stage 'short' (stage 1/2), iteration ",
                      "Lower train.learning_rate (now 1e+10)", "--restart")


def test_a_diverging_arm_ends_the_comparison_with_its_message(setup):
    # The arms train in the task runner's threads (tasks/compare.py): the failure comes back through its future.
    result = run(setup, COMPARE, setup["base"] / "diverging-compare", "--seeds", "1", "--arms", "curriculum",
                 *DIVERGING)
    assert_user_error(result, 1, "error: stage 'short' (stage 1/2), iteration ",
                      "Lower train.learning_rate (now 1e+10)")
