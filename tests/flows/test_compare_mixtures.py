"""`python flows/compare.py --versus`: a curriculum whose last stage mixes two sources, compared with its control
arms and with a second curriculum of other weights and another LR transition. Every arm trains the mixture with
its weights, all are matched in compute and judged on the same target, the mixed stage's weighted val loss."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.compare.flops import flops_per_token
from curriculum.training.checkpoints import read_checkpoint
from curriculum.training.run_dir import read_metrics
from model.config import ModelConfig
from tests.support.configs import COMPARE_TAIL
from tests.support.prefect_server import ROOT

pytestmark = pytest.mark.slow  # a Prefect server and a training subprocess

BOOK = "paine_common-sense_pg147.txt"
# warmup: TinyStories at block 32; main: TinyStories 3 : a book 1 at block 64. Tiny model, 8 steps per stage.
CONFIG = """\
stages:
  - {{name: warmup, dataset_key: roneneldan/TinyStories, block_size: 32, n_epochs: 1, n_items: 200}}
  - name: main
    block_size: 64
    n_epochs: 1
    sources:
      - {{name: stories, dataset_key: roneneldan/TinyStories, n_items: 200, weight: {stories}}}
      - {{name: book, dataset_key: local-files, files: [{book}], weight: {book_weight}}}
""" + COMPARE_TAIL + "{train}"
MODEL = ModelConfig(preset="tiny", n_embd=32)
VOCAB = 50257
ARMS = ("curriculum", "flat", "mixed", "lengths", "reversed", "versus")
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def comparison(prefect_server, shared, hub_mirror, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare-mix")
    book = shared / "corpora" / "books" / BOOK
    first, other = folder / "mix31.yaml", folder / "mix13-wsd.yaml"
    first.write_text(CONFIG.format(stories=3, book_weight=1, book=book, data_dir=folder / "data", train=""))
    # The versus file: the weights the other way round, a wsd schedule and a rewarm at the mixed stage.
    other.write_text(CONFIG.format(stories=1, book_weight=3, book=book, data_dir=folder / "other-data",
                                   train="  lr_schedule: wsd\n").replace(
        "    block_size: 64\n    n_epochs: 1\n", "    block_size: 64\n    n_epochs: 1\n    lr: rewarm\n"))
    out = folder / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(first), "--versus", str(other),
         "--seeds", "1", "--evals", "4", "--out-dir", str(out)],
        cwd=ROOT, env=prefect_server.env(CURRICULUM_COMPARE_WORKERS="2", CURRICULUM_HUB_MIRROR=str(hub_mirror),
                                         PYTHONUNBUFFERED="1"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return {"out": out, "data": folder / "data", "log": result.stdout}


def ends(out: Path, arm: str) -> list[dict]:
    return [read_checkpoint(end).state for end in sorted((out / f"{arm}-seed1" / "checkpoints").glob("*/end"))]


def test_every_arm_reads_the_mixture_with_its_weights(comparison):
    out, data = comparison["out"], comparison["data"]

    def train_shards(state: dict) -> dict[str, Path]:
        return {key: Path(s["path"]) for key, s in state["shards"].items() if key.startswith("train")}

    stories, book = data / "train_main.stories_pretrain.bin", data / "train_main.book_pretrain.bin"
    warmup = data / "train_warmup_pretrain.bin"
    expected = {
        "curriculum": [{"train": warmup}, {"train": stories, "train@main.stories": stories, "train@main.book": book}],
        "flat": [{"train": stories, "train@main.stories": stories, "train@main.book": book}],
        "lengths": [{"train": stories, "train@main-1-b32.stories": stories, "train@main-1-b32.book": book},
                    {"train": stories, "train@main-2-b64.stories": stories, "train@main-2-b64.book": book}],
        "mixed": [{"train": warmup, "train@mixed.warmup": warmup, "train@mixed.main.stories": stories,
                   "train@mixed.main.book": book}],
        "versus": [{"train": warmup}, {"train": stories, "train@main.stories": stories, "train@main.book": book}],
        "reversed": [{"train": stories, "train@main.stories": stories, "train@main.book": book}, {"train": warmup}],
    }
    for arm, stages in expected.items():
        states = ends(out, arm)
        assert [train_shards(s) for s in states] == stages, arm
        assert {s["fingerprint"]["model"]["block_size"] for s in states} == {64}  # one model: same initial weights
    assert not (out / "train_mixed.bin").exists()  # with a mixed stage the mixed arm is a mixture, not one file
    def sources(arm: str) -> list[dict]:
        state = ends(out, arm)[-1]
        return state["fingerprint"]["curriculum"][state["stage"]]["sources"]

    weights = {arm: [s["weight"] for s in sources(arm)] for arm in ("curriculum", "flat", "lengths", "versus")}
    assert weights == {"curriculum": [3, 1], "flat": [3, 1], "lengths": [3, 1], "versus": [1, 3]}
    mixed = sources("mixed")
    # Weighted by the tokens the curriculum trained on each: 8 steps of 4 x 32 on warmup, 8 of 4 x 64 split 3 : 1.
    assert [s["weight"] for s in mixed] == pytest.approx([8 * 4 * 32, 8 * 4 * 64 * 3 / 4, 8 * 4 * 64 / 4])


def test_the_versus_arm_trains_its_own_lr_transition(comparison):
    states = ends(comparison["out"], "versus")
    train = states[-1]["fingerprint"]["train"]
    assert train["lr_schedule"] == "wsd"
    assert states[-1]["fingerprint"]["curriculum"]["main"]["lr"] == "rewarm"
    rows = read_metrics(comparison["out"] / "versus-seed1")
    # wsd spans the arm's iterations: its last step trains at min_lr.
    assert rows[-1]["stage_end"] and rows[-1]["lr"] == pytest.approx(train["min_lr"])


def test_every_arm_is_matched_in_compute_and_judged_on_the_mixed_target(comparison):
    out = comparison["out"]
    report = json.loads((out / "report.json").read_text())
    assert list(report["arms"]) == list(ARMS)
    assert report["target"] == "main" and report["target_mixture"] == {"main.stories": 3, "main.book": 1}

    def compute(arm: str) -> tuple[float, float]:
        total, last = 0.0, 0.0
        for state in ends(out, arm):
            p = state["plan"]
            last = p["seqs_per_iter"] * p["block_size"] * flops_per_token(MODEL, VOCAB, p["block_size"])
            total += p["total_iters"] * last
        return total, last

    reference, _ = compute("curriculum")
    for arm in ARMS:
        total, per_iter = compute(arm)
        assert abs(total - reference) <= per_iter / 2, (arm, total, reference)
        entry = report["arms"][arm]
        assert all(math.isfinite(v) for v in entry["final_target_loss"]["seeds"]), arm
        rows = read_metrics(out / f"{arm}-seed1")
        assert rows and all(set(row["evals"]) == {"warmup", "main"} for row in rows), arm
        assert entry["final_target_loss"]["seeds"] == [rows[-1]["evals"]["main"]]
    # The target is what the trainer reports as the mixed stage's val loss: the same evaluations, weighted 3 : 1.
    last = read_metrics(out / "curriculum-seed1")[-1]
    assert last["stage"] == "main" and last["evals"]["main"] == pytest.approx(last["val_loss"], rel=1e-12)
    versus = report["arms"]["versus"]
    assert versus["curriculum"] == "mix13-wsd" and "speedup_vs_curriculum" in versus["reach_curriculum_final"]
    lines = comparison["log"].strip().splitlines()
    assert lines[-2].startswith("versus_speedup_vs_curriculum=") and "versus mix13-wsd" in lines[-2]
    assert lines[-1].startswith("speedup_vs_flat=")
