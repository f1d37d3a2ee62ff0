"""`python flows/compare.py --schedules`: every arm (the reversed one among them) trains under every LR schedule
asked for, in `<schedule>/<arm>-seed<k>/`, with the learning-rate curve of that schedule; the report's paired
statistics against flat under the same schedule follow from the run folders' metrics.jsonl; a comparison run
again after one run folder was lost trains that one alone. Mistakes in --schedules or --judge exit 2 at once."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from curriculum.training.checkpoints import read_checkpoint
from curriculum.training.run_dir import read_metrics
from data.shards import read_header
from flows.compare import main
from tests.support.configs import COMPARE_TAIL
from tests.support.curves import at, reach
from tests.support.prefect_server import ROOT

# Two stages of 8 iterations each (train.max_iters), a tiny model; --evals 16 evaluates after every iteration,
# so metrics.jsonl carries the learning rate of every step.
CONFIG = """\
stages:
  - {{name: warmup, dataset_key: roneneldan/TinyStories, block_size: 32, n_epochs: 1, n_items: 200}}
  - {{name: books, dataset_key: local-files, files: [{book}], block_size: 64, n_epochs: 1}}
""" + COMPARE_TAIL
SCHEDULES = ("per-stage", "constant", "wsd")
ARMS = ("curriculum", "flat", "reversed")
SEEDS = (1, 2)
LOST = ("wsd", "reversed", 2)  # the run folder deleted before the second run
LEARNING_RATE, MIN_LR, WARMUP = 6e-4, 6e-5, 2  # TrainConfig's defaults; COMPARE_TAIL's warmup_iters
T_975 = {1: 12.706}  # Student's t, two-sided 95%, 1 degree of freedom (2 seeds)
RUN_TIMEOUT_S = 900


def run_compare(server, config: Path, out: Path, hub: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(config), "--seeds", str(len(SEEDS)),
         "--arms", ",".join(ARMS), "--schedules", ",".join(SCHEDULES), "--evals", "16", "--out-dir", str(out)],
        cwd=ROOT, env=server.env(CURRICULUM_COMPARE_WORKERS="2", CURRICULUM_HUB_MIRROR=str(hub), PYTHONUNBUFFERED="1"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )


def folder(out: Path, schedule: str, arm: str, k: int) -> Path:
    return out / schedule / f"{arm}-seed{k}"


@pytest.fixture(scope="module")
def comparison(prefect_server, shared, hub_mirror, tmp_path_factory):
    """A comparison of 3 arms x 3 schedules x 2 seeds, run again after one of its run folders was deleted."""
    base = tmp_path_factory.mktemp("compare-schedules")
    config = base / "tiny2.yaml"
    config.write_text(CONFIG.format(book=shared / "corpora" / "books" / "paine_common-sense_pg147.txt",
                                    data_dir=base / "data"))
    out = base / "out"
    first = run_compare(prefect_server, config, out, hub_mirror)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    before = {path.relative_to(out): path.read_bytes() for path in out.glob("*/*-seed*/metrics.jsonl")}
    assert len(before) == len(SCHEDULES) * len(ARMS) * len(SEEDS), sorted(map(str, before))
    shutil.rmtree(folder(out, *LOST))
    second = run_compare(prefect_server, config, out, hub_mirror)
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    # stdout: the command's own lines; the flow's prints (the markdown) go through Prefect's logger too.
    return {"out": out, "data": base / "data", "before": before, "log": second.stdout,
            "output": second.stdout + second.stderr}


@pytest.mark.slow
def test_a_rerun_after_a_lost_run_folder_trains_only_that_one(comparison):
    out, before = comparison["out"], comparison["before"]
    lost = folder(out, *LOST).relative_to(out) / "metrics.jsonl"
    for path, data in before.items():
        if path != lost:
            assert (out / path).read_bytes() == data, f"{path} trained again"
    assert (out / lost).is_file() and (out / lost.parent / "final" / "model.safetensors").is_file()
    assert not list(out.glob("*-seed*"))  # with --schedules every run folder is under its schedule's


@pytest.mark.slow
def test_the_reversed_arm_reads_the_stages_last_first_at_their_block_sizes(comparison):
    out, data = comparison["out"], comparison["data"]
    warmup, books = data / "train_warmup_pretrain.bin", data / "train_books_pretrain.bin"
    expected = {"curriculum": [("warmup", warmup, 32), ("books", books, 64)],
                "reversed": [("books", books, 64), ("warmup", warmup, 32)]}
    for schedule in SCHEDULES:
        for arm, stages in expected.items():
            run = folder(out, schedule, arm, 1)
            states = [read_checkpoint(end).state for end in sorted((run / "checkpoints").glob("*/end"))]
            assert [(s["stage"], Path(s["shards"]["train"]["path"]), s["plan"]["block_size"]) for s in states] \
                == stages, (schedule, arm)
            for state, (_, shard, _) in zip(states, stages, strict=True):
                # The shard file it read is the stage's: the checkpoint recorded the content its header names.
                assert read_header(shard)["sha256"] == state["shards"]["train"]["sha256"], (schedule, arm)
            rows = read_metrics(run)
            assert [r["stage"] for r in rows] == [s for s, _, _ in stages for _ in range(8)], (schedule, arm)
            assert all(set(r["evals"]) == {"warmup", "books"} for r in rows)  # judged on the same target


def cosine(it: int, total: int) -> float:
    if it < WARMUP:
        return LEARNING_RATE * (it + 1) / (WARMUP + 1)
    ratio = (it - WARMUP) / (total - WARMUP)
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * ratio)) * (LEARNING_RATE - MIN_LR)


@pytest.mark.slow
def test_every_run_trains_the_lr_schedule_it_was_asked_for(comparison):
    out = comparison["out"]
    for arm in ARMS:
        for k in SEEDS:
            for schedule in SCHEDULES:
                run = folder(out, schedule, arm, k)
                assert read_checkpoint(sorted((run / "checkpoints").glob("*/end"))[-1]).state[
                    "fingerprint"]["train"]["lr_schedule"] == schedule
                rows = read_metrics(run)
                lrs = [r["lr"] for r in rows]  # a row after step d carries that step's lr
                if schedule == "per-stage":  # warmup and cosine restart at every stage
                    totals = {}
                    for r in rows:
                        totals[r["stage_index"]] = max(totals.get(r["stage_index"], 0), r["stage_iter"])
                    assert lrs == pytest.approx([cosine(r["stage_iter"] - 1, totals[r["stage_index"]])
                                                 for r in rows]), (arm, k)
                    if arm != "flat":
                        restart = next(r for r in rows if r["stage_index"] == 1)
                        assert restart["stage_iter"] == 1 and restart["lr"] == pytest.approx(LEARNING_RATE / 3)
                elif schedule == "constant":  # learning_rate from the end of the run's warmup
                    assert lrs[0] < LEARNING_RATE
                    assert all(r["lr"] == LEARNING_RATE for r in rows if r["iter_num"] > WARMUP), (arm, k)
                else:  # wsd: stable at learning_rate, then linear to min_lr at the last step
                    assert LEARNING_RATE in lrs and lrs[-1] == pytest.approx(MIN_LR), (arm, k)
                    peak = lrs.index(LEARNING_RATE)
                    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:], strict=False)), (arm, k)


def points(out: Path, plan: dict, schedule: str, arm: str, k: int) -> list[tuple[float, float]]:
    """(FLOPs so far, target loss) per evaluation, from plan.json and metrics.jsonl."""
    stages = plan[arm]["stages"]
    flops = [s["tokens_per_iter"] * s["flops_per_token"] for s in stages]
    before = [sum(s["iters"] * f for s, f in zip(stages[:i], flops, strict=False)) for i in range(len(stages))]
    return [(before[r["stage_index"]] + r["stage_iter"] * flops[r["stage_index"]], r["evals"]["books"])
            for r in read_metrics(folder(out, schedule, arm, k))]


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval)."""
    return statistics.fmean(values), T_975[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))


@pytest.mark.slow
def test_the_paired_statistics_follow_from_the_run_folders(comparison):
    out = comparison["out"]
    report = json.loads((out / "report.json").read_text())
    plan = {arm["arm"]: arm for arm in json.loads((out / "plan.json").read_text())["arms"]}
    assert list(report["schedules"]) == list(SCHEDULES) and report["judge"] == "raw"
    assert report["arms"] == report["schedules"][SCHEDULES[0]]["arms"]  # the first schedule's at the top level
    finals = {}
    for schedule in SCHEDULES:
        flat = {k: points(out, plan, schedule, "flat", k) for k in SEEDS}
        for arm in ARMS:
            entry = report["schedules"][schedule]["arms"][arm]
            mine = {k: points(out, plan, schedule, arm, k) for k in SEEDS}
            finals[(arm, schedule)] = statistics.fmean(mine[k][-1][1] for k in SEEDS)
            assert entry["final_target_loss"]["seeds"] == pytest.approx([mine[k][-1][1] for k in SEEDS])
            pair = entry["paired_vs_flat"]
            # Two-sided: flat's compute to flat's final loss over the arm's where the arm gets there; else flat's
            # compute to the arm's final loss over the arm's whole compute.
            speedups = [reach(flat[k], flat[k][-1][1]) / reach(mine[k], flat[k][-1][1])
                        if reach(mine[k], flat[k][-1][1]) is not None
                        else reach(flat[k], mine[k][-1][1]) / mine[k][-1][0] for k in SEEDS]
            assert pair["speedup_per_seed"] == pytest.approx(speedups)
            assert pair["reached"] == sum(reach(mine[k], flat[k][-1][1]) is not None for k in SEEDS)
            assert pair["wins"] == sum(mine[k][-1][1] < flat[k][-1][1] for k in SEEDS)
            mean, half = interval(speedups)
            assert (pair["speedup"]["mean"], pair["speedup"]["half_width"]) == pytest.approx((mean, half))
            assert pair["verdict"] == ("faster" if mean - half > 1 else "slower" if mean + half < 1
                                       else "no difference")
            for share in (25, 50, 75, 100):
                values = []
                for k in SEEDS:
                    x = share / 100 * min(mine[k][-1][0], flat[k][-1][0])
                    values.append(at(mine[k], x) / at(flat[k], x))
                got = pair["loss_ratio_at"][f"{share}%"]
                assert got["per_seed"] == pytest.approx(values), (schedule, arm, share)
                assert (got["mean"], got["half_width"]) == pytest.approx(interval(values))
        assert report["schedules"][schedule]["arms"]["flat"]["paired_vs_flat"]["verdict"] == "no difference"
    assert [(p["arm"], p["schedule"]) for p in report["ranking"]] == sorted(finals, key=finals.__getitem__)
    assert [p["final_target_loss"] for p in report["ranking"]] == pytest.approx(sorted(finals.values()))

    def line(key: str, pair: dict) -> str:
        wins = f"{pair['wins']}/{len(SEEDS)} wins"
        return (f"{key}={pair['speedup']['mean']:.3f}±{pair['speedup']['half_width']:.3f} (95% t interval, "
                f"{len(SEEDS)} seeds, {wins}: {pair['verdict']})")

    lines = comparison["log"].strip().splitlines()
    curriculum = {s: report["schedules"][s]["arms"]["curriculum"]["paired_vs_flat"] for s in SCHEDULES}
    assert lines[-4:] == [*(line(f"speedup_vs_flat[{s}]", curriculum[s]) for s in SCHEDULES),
                          line("speedup_vs_flat", curriculum[SCHEDULES[0]])]


@pytest.mark.slow
def test_the_plot_has_a_panel_per_schedule_and_the_markdown_a_table_per_schedule(comparison):
    image = matplotlib.image.imread(comparison["out"] / "compare.png")
    assert image.shape[1] >= 3 * 400
    log = comparison["output"]
    for schedule in SCHEDULES:
        assert f"## lr_schedule {schedule}" in log
    assert "| rank | arm | schedule | final target loss |" in log and "loss / flat's at 25%" in log


@pytest.mark.parametrize(("args", "message"), [
    (["--judge", "ema"], "--judge ema: the runs keep no moving average of their weights (train.ema is not set); "
                         "set its decay, e.g. --set train.ema=0.99"),
    (["--schedules", "per-stage,cosine"], "unknown schedule(s) ['cosine']; choose from per-stage,global,wsd,constant"),
    (["--schedules", "wsd,per-stage", "--set", "train.lr_schedule=wsd", "--set", "stages.pretrain.lr=rewarm"],
     "stage(s) ['pretrain'] set an lr transition"),
])
def test_mistakes_in_schedules_or_judge_exit_2_before_anything_runs(args, message, capsys, tmp_path):
    assert main(["--type", "simple", "--seeds", "1", "--out-dir", str(tmp_path / "out"), *args]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and message in printed
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_judge_ema_reads_the_moving_averages_evaluations(prefect_server, shared, hub_mirror, tmp_path):
    config = tmp_path / "tiny2.yaml"
    config.write_text(CONFIG.format(book=shared / "corpora" / "books" / "paine_common-sense_pg147.txt",
                                    data_dir=tmp_path / "data"))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(config), "--seeds", "1",
         "--arms", "curriculum,flat", "--judge", "ema", "--set", "train.ema=0.9", "--evals", "4",
         "--out-dir", str(out)],
        cwd=ROOT, env=prefect_server.env(CURRICULUM_COMPARE_WORKERS="2", CURRICULUM_HUB_MIRROR=str(hub_mirror),
                                         PYTHONUNBUFFERED="1"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    report = json.loads((out / "report.json").read_text())
    assert report["judge"] == "ema"
    for arm in ("curriculum", "flat"):
        last = read_metrics(out / f"{arm}-seed1")[-1]
        assert last["evals_ema"]["books"] != last["evals"]["books"]  # the average is other weights
        assert report["arms"][arm]["final_target_loss"]["seeds"] == [last["evals_ema"]["books"]]
    assert result.stdout.strip().splitlines()[-1].startswith("speedup_vs_flat=")
