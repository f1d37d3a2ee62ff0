"""`python flows/compare.py`: every arm trains on the right shards at the right block sizes for the curriculum's
compute, the report's numbers follow from the arms' metrics, a killed comparison finishes only what was missing,
and `compare/simple` served on a real Prefect server publishes its report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest

from curriculum.compare.flops import flops_per_token
from curriculum.training.checkpoints import read_checkpoint
from curriculum.training.run_dir import read_jsonl, read_metrics
from data.shards import read_header
from model.config import ModelConfig
from tests.support.configs import COMPARE_TAIL
from tests.support.curves import reach
from tests.support.pause import kill_group
from tests.support.prefect_server import ROOT, api_client, trigger, wait_for_run

pytestmark = pytest.mark.slow  # a Prefect server and training subprocesses

ARMS = ("curriculum", "flat", "mixed", "lengths", "reversed")
# Two stages, a tiny model, a few iterations: the curriculum's compute is 4*32*8 + 4*64*8 = 3,072 tokens.
CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 32
    n_epochs: 1
    n_items: 200
  - name: books
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
""" + COMPARE_TAIL
MODEL = ModelConfig(preset="tiny", n_embd=32)
VOCAB = 50257
RUN_TIMEOUT_S = 600


def write_config(folder: Path, shared: Path) -> Path:
    path = folder / "tiny2.yaml"
    path.write_text(CONFIG.format(book=shared / "corpora" / "books" / "paine_common-sense_pg147.txt",
                                  data_dir=folder / "data"))
    return path


def start_compare(server, config: Path, out_dir: Path, log: Path, workers: int, hub: Path) -> subprocess.Popen:
    env = server.env(CURRICULUM_COMPARE_WORKERS=str(workers), PYTHONUNBUFFERED="1",
                     CURRICULUM_HUB_MIRROR=str(hub))
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(config), "--seeds", "2",
             "--out-dir", str(out_dir)],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture(scope="module")
def comparison(prefect_server, shared, hub_mirror, tmp_path_factory):
    """A comparison killed once its first arm's first seed has finished, then run again to the end."""
    folder = tmp_path_factory.mktemp("compare")
    config, out_dir, log = write_config(folder, shared), folder / "out", folder / "compare.log"
    # One worker: arms in order, one at a time, so the kill lands while later arms are unfinished.
    first = start_compare(prefect_server, config, out_dir, log, workers=1, hub=hub_mirror)
    final = out_dir / "curriculum-seed1" / "final" / "model.safetensors"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not final.is_file():
        assert first.poll() is None, f"the comparison ended before it was killed:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no arm finished within {RUN_TIMEOUT_S}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.05)
    kill_group(first)
    killed = {arm: read_jsonl(out_dir / arm / "runtime.jsonl") for arm in ("curriculum-seed1",)}
    finished_before = {p.parent.parent.name for p in out_dir.glob("*-seed*/final/model.safetensors")}
    second = start_compare(prefect_server, config, out_dir, log, workers=2, hub=hub_mirror)
    second.wait(timeout=RUN_TIMEOUT_S)
    output = log.read_text()
    assert second.returncode == 0, output[-4000:]
    return {"out": out_dir, "log": output, "killed_runtime": killed, "finished_before": finished_before}


def plan_of(out_dir: Path) -> dict:
    return json.loads((out_dir / "plan.json").read_text())


def test_every_arm_trains_its_own_data_at_its_block_sizes(comparison, shared):
    out, data = comparison["out"], comparison["out"].parent / "data"
    warmup, books = data / "train_warmup_pretrain.bin", data / "train_books_pretrain.bin"
    mixed = read_header(out / "train_mixed.bin")
    assert [s["stage"] for s in mixed["sources"]] == ["warmup", "books"]
    assert mixed["n_tokens"] == read_header(warmup)["n_tokens"] + read_header(books)["n_tokens"]
    assert [s["sha256"] for s in mixed["sources"]] == [read_header(warmup)["sha256"], read_header(books)["sha256"]]
    expected = {  # arm -> [(train shard, block size)] per stage
        "curriculum": [(warmup, 32), (books, 64)],
        "flat": [(books, 64)],
        "mixed": [(out / "train_mixed.bin", 64)],
        "lengths": [(books, 32), (books, 64)],
        "reversed": [(books, 64), (warmup, 32)],
    }
    for arm, stages in expected.items():
        for k in (1, 2):
            run = out / f"{arm}-seed{k}"
            ends = sorted((run / "checkpoints").glob("*/end"))
            assert len(ends) == len(stages), (arm, ends)
            for end, (shard, block) in zip(ends, stages, strict=True):
                state = read_checkpoint(end).state
                assert Path(state["shards"]["train"]["path"]) == shard, (arm, end)
                assert state["plan"]["block_size"] == block
                assert state["fingerprint"]["model"]["block_size"] == 64  # same model, same initial weights
                assert state["fingerprint"]["train"]["seed"] == 1337 + k - 1
            rows = read_metrics(run)
            # Every evaluation measured every stage's val set, the target among them.
            assert rows and all(set(row["evals"]) == {"warmup", "books"} for row in rows)
            assert len(rows) >= 10


def test_every_arm_trains_the_curriculums_compute_within_one_iteration(comparison):
    plan = plan_of(comparison["out"])
    assert plan["match"] == "flops"

    def compute(arm: str) -> tuple[float, float]:
        """(FLOPs trained, FLOPs of one iteration of its last stage), from the end checkpoints."""
        total, last = 0.0, 0.0
        for end in sorted((comparison["out"] / f"{arm}-seed1" / "checkpoints").glob("*/end")):
            p = read_checkpoint(end).state["plan"]
            per_iter = p["seqs_per_iter"] * p["block_size"] * flops_per_token(MODEL, VOCAB, p["block_size"])
            total += p["total_iters"] * per_iter
            last = per_iter
        return total, last

    reference, _ = compute("curriculum")
    assert reference == pytest.approx((4 * 32 * 8) * flops_per_token(MODEL, VOCAB, 32)
                                      + (4 * 64 * 8) * flops_per_token(MODEL, VOCAB, 64))
    for arm in ARMS[1:]:
        total, per_iter = compute(arm)
        assert abs(total - reference) <= per_iter, (arm, total, reference)


def test_the_report_follows_from_the_arms_metrics(comparison):
    out = comparison["out"]
    report = json.loads((out / "report.json").read_text())
    plan = {arm["arm"]: arm for arm in plan_of(out)["arms"]}

    def points(arm: str, k: int) -> list[tuple[float, float]]:
        """(FLOPs so far, target loss) per evaluation, computed here from the plan and metrics.jsonl."""
        stages = plan[arm]["stages"]
        before = [sum(s["iters"] * s["tokens_per_iter"] * s["flops_per_token"] for s in stages[:i])
                  for i in range(len(stages))]
        return [(before[r["stage_index"]] + r["stage_iter"] * stages[r["stage_index"]]["tokens_per_iter"]
                 * stages[r["stage_index"]]["flops_per_token"], r["evals"]["books"])
                for r in read_metrics(out / f"{arm}-seed{k}")]

    flat_final = [points("flat", k)[-1][1] for k in (1, 2)]
    ratios_of = {}
    for arm in ARMS:
        entry = report["arms"][arm]
        finals = [points(arm, k)[-1][1] for k in (1, 2)]
        assert entry["final_target_loss"]["seeds"] == pytest.approx(finals)
        assert entry["final_target_loss"]["mean"] == pytest.approx(sum(finals) / 2)
        ratios = []
        for k, seed_entry in zip((1, 2), entry["reach_flat_final"]["per_seed"], strict=True):
            mine, flat = reach(points(arm, k), flat_final[k - 1]), reach(points("flat", k), flat_final[k - 1])
            assert seed_entry["flops"] == (pytest.approx(mine) if mine is not None else None)
            ratios.append(None if mine is None else mine / flat)
        ratios_of[arm] = ratios
        if None in ratios:
            assert entry["reach_flat_final"]["ratio_to_flat"] == "not reached"
        else:
            assert entry["reach_flat_final"]["ratio_to_flat"]["mean"] == pytest.approx(sum(ratios) / 2)
    assert report["arms"]["flat"]["reach_flat_final"]["ratio_to_flat"]["mean"] == pytest.approx(1.0)
    pair = report["arms"]["curriculum"]["paired_vs_flat"]
    last_line = comparison["log"].strip().splitlines()[-1]
    wins = sum(points("curriculum", k)[-1][1] < flat_final[k - 1] for k in (1, 2))
    assert pair["wins"] == wins
    # Two-sided per seed: to flat's final loss where the curriculum gets there, else flat's compute to the
    # curriculum's final loss over the curriculum's whole compute; then the half-width of the 95% t interval over
    # 2 seeds (t = 12.706).
    speedups = [1 / r if r is not None
                else reach(points("flat", k), points("curriculum", k)[-1][1]) / points("curriculum", k)[-1][0]
                for k, r in zip((1, 2), ratios_of["curriculum"], strict=True)]
    mean = sum(speedups) / 2
    half = 12.706 * abs(speedups[0] - speedups[1]) / math.sqrt(2) / math.sqrt(2)
    verdict = "faster" if mean - half > 1 else "slower" if mean + half < 1 else "no difference"
    assert pair["verdict"] == verdict
    assert last_line == (f"speedup_vs_flat={mean:.3f}±{half:.3f} (95% t interval, 2 seeds, {wins}/2 wins: "
                         f"{verdict})")


def test_the_plot_is_written_and_decodes(comparison):
    image = matplotlib.image.imread(comparison["out"] / "compare.png")
    assert image.shape[0] > 200 and image.shape[1] > 400


def test_a_killed_comparison_finishes_only_what_was_missing(comparison):
    out = comparison["out"]
    assert "curriculum-seed1" in comparison["finished_before"]
    # The arm finished before the kill trained no more: no new training session in its run folder.
    assert read_jsonl(out / "curriculum-seed1" / "runtime.jsonl") == comparison["killed_runtime"]["curriculum-seed1"]
    for arm in ARMS:
        for k in (1, 2):
            assert (out / f"{arm}-seed{k}" / "final" / "model.safetensors").is_file()


def test_compare_deployment_publishes_its_report(served, shared, tmp_path):
    config = write_config(tmp_path, shared)
    flow_run_id, result = trigger(served.server, "compare/simple", config_path=str(config), seeds=1,
                                  arms="curriculum,flat", out_dir=str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    run = wait_for_run(served.server, flow_run_id, timeout=RUN_TIMEOUT_S, log=served.log_path)
    assert run.state.is_completed(), f"{run.state.message}\n{served.log()[-4000:]}"
    with api_client(served.server) as client:
        artifact = client.read_artifacts()
    reports = [a for a in artifact if a.key == "tiny2-compare" and a.flow_run_id == run.id]
    assert reports, [a.key for a in artifact]
    markdown = reports[0].data
    assert "| curriculum |" in markdown and "| flat |" in markdown and "data:image/png;base64," in markdown
    assert (tmp_path / "out" / "report.json").is_file()
    assert not os.path.exists(tmp_path / "out" / "mixed-seed1")
