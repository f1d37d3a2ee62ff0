"""Does the curriculum pay? The study behind "Measured here" (docs/compare.md): each bench/studies/<name>.yaml is one
comparison (flows/compare.py) of its curriculum's arms under several LR schedules over several seeds, run here as
a user would run it, then summarised.

    python bench/curriculum_study.py                          # every study in bench/studies, one after the other
    python bench/curriculum_study.py stories-books            # one study
    python bench/curriculum_study.py stories-books --dry-run  # the command it would run, nothing trained
    python bench/curriculum_study.py stories-books --partial  # what a study stopped part-way has finished
    python bench/curriculum_study.py stories-books --table    # a finished study as docs/compare.md's compact table

A study file has two sections: `study` (the compare options: arms, schedules, seeds, evals, match) and `run` (a
run config, as `flows/compare.py --config` takes it; `${SHARED}` stands for the shared data folder, --shared).
Each study trains into out/study/<name>/compare/ (its own comparison folder, report.json, compare.png) from shards
prepared once into out/study/data/. A study stopped part-way (Ctrl-C, a kill, the machine going away) continues
where it stopped when run again: finished runs come from their end checkpoints. The log of each comparison is
out/study/<name>/compare.log; the summary (the compare report's markdown and the time it took) summary.md.

Run it in the background at a low priority when the machine does other work: `nice -n 10 python bench/...`.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from curriculum.compare.arms import ArmPlan, run_folder, with_schedule  # noqa: E402
from curriculum.compare.report import build_report, curve, report_markdown  # noqa: E402
from curriculum.training.run_dir import read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "bench" / "studies"
STUDY_KEYS = {"arms", "schedules", "seeds", "evals", "match", "judge"}


def load_study(path: Path, shared: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the study's compare options, its run config) from a study file, ${SHARED} replaced by `shared`."""
    text = string.Template(path.read_text(encoding="utf-8")).substitute(SHARED=str(shared))
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or set(data) != {"study", "run"}:
        raise SystemExit(f"{path}: a study file has exactly two sections, `study` and `run`; it has "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    unknown = set(data["study"]) - STUDY_KEYS
    if unknown:
        raise SystemExit(f"{path}: unknown study option(s) {sorted(unknown)}; allowed: {sorted(STUDY_KEYS)}")
    return data["study"], data["run"]


def compare_command(study: dict[str, Any], config: Path, out_dir: Path, data_dir: Path) -> list[str]:
    command = [sys.executable, str(ROOT / "flows" / "compare.py"), "--config", str(config),
               "--out-dir", str(out_dir), "--data-dir", str(data_dir)]
    for key in ("arms", "schedules", "seeds", "evals", "match", "judge"):
        if key in study:
            command += [f"--{key}", str(study[key])]
    return command


def run_study(name: str, shared: Path, out: Path, dry_run: bool) -> int:
    study, run = load_study(STUDIES / f"{name}.yaml", shared)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    tmp = config.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(run, sort_keys=False), encoding="utf-8")
    tmp.replace(config)
    command = compare_command(study, config, folder / "compare", out / "data")
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken")),
           "CURRICULUM_HUB_MIRROR": os.environ.get("CURRICULUM_HUB_MIRROR", str(shared / "hub")),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1",
           "DO_NOT_TRACK": os.environ.get("DO_NOT_TRACK", "1")}
    print(f"study {name}: " + " ".join(command), flush=True)
    if dry_run:
        return 0
    start = time.monotonic()
    with open(folder / "compare.log", "a", encoding="utf-8") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1)
        assert process.stdout is not None
        last: list[str] = []
        for line in process.stdout:
            log.write(line)
            if line.startswith(("speedup_vs_flat", "versus_speedup", "arm ", "error:")):
                print(f"  {line.rstrip()}", flush=True)
            last = (last + [line])[-40:]
        code = process.wait()
    minutes = (time.monotonic() - start) / 60
    if code:
        print(f"study {name}: compare exited with {code} after {minutes:.1f} min; the end of its log "
              f"({folder / 'compare.log'}):\n" + "".join(last), flush=True)
        return code
    report = json.loads((folder / "compare" / "report.json").read_text(encoding="utf-8"))
    summary = [f"# study {name}", "", f"Command: `{' '.join(command)}`", "",
               f"Time of this invocation: {minutes:.1f} min (runs finished by an earlier one are not counted)", "",
               report_markdown(report, f"study {name}")]
    summary.append(f"Plot: {folder / 'compare' / 'compare.png'}; seeds {report.get('seeds')}")
    (folder / "summary.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
    print(f"study {name}: done in {minutes:.1f} min; summary {folder / 'summary.md'}", flush=True)
    return 0


def partial_report(name: str, out: Path) -> int:
    """What a study stopped part-way has measured: per schedule, the arms whose every seed has finished (flat
    among them), reported as the comparison will report them once it is whole."""
    compare_dir = out / name / "compare"
    plan_file = compare_dir / "plan.json"
    if not plan_file.is_file():
        print(f"study {name}: nothing trained yet ({plan_file} does not exist)")
        return 1
    plan = json.loads(plan_file.read_text(encoding="utf-8"))
    arms = [ArmPlan.model_validate(arm) for arm in plan["arms"]]
    ks = range(1, len(plan["seeds"]) + 1)
    target = arms[0].stages[-1].stage.name
    for schedule in plan["schedules"] or [None]:
        done = [with_schedule(a, schedule) if schedule else a for a in arms
                if all((run_folder(compare_dir, a.arm, k, schedule) / "final").is_dir() for k in ks)]
        print(f"\n## {schedule or 'the curriculum schedule'}: finished arms {[a.arm for a in done]}")
        if "flat" not in [a.arm for a in done] or done[0].arm != "curriculum":
            print("(the curriculum and flat arms are not both finished: no paired figures yet)")
            continue
        curves = {a.arm: [curve(a, read_metrics(run_folder(compare_dir, a.arm, k, schedule)), target,
                                plan.get("judge", "raw")) for k in ks] for a in done}
        report = build_report(done, curves, target, plan["match"], plan["seeds"])
        print(report_markdown(report, f"study {name}, lr_schedule {schedule} (partial: the finished arms)"))
    return 0


def compact_table(name: str, out: Path) -> int:
    """A finished study's report.json as one markdown table (docs/compare.md's): per schedule and arm, the final
    target loss per seed and mean ± sd, the paired speed-up with its 95% t interval, verdict, reached and wins, and the
    loss ratio to flat at 25/50/75/100% of compute."""
    path = out / name / "compare" / "report.json"
    if not path.is_file():
        print(f"study {name}: no report yet ({path}); see --partial")
        return 1
    report = json.loads(path.read_text(encoding="utf-8"))
    by_schedule = report.get("schedules") or {report.get("schedule") or "-": report}

    def interval(entry: dict[str, Any]) -> str:
        if entry.get("mean") is None:
            return "-"
        if entry.get("low") is None:
            return f"{entry['mean']:.3f}"
        return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    print("| lr_schedule | arm | final target loss (per seed) | mean ± sd | speed-up vs flat [95% t] | verdict | "
          "reached | wins | loss / flat's at 25%, 50%, 75%, 100% [95% t] |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- |")
    for schedule, entry in by_schedule.items():
        for arm, data in entry["arms"].items():
            final = data["final_target_loss"]
            seeds = ", ".join(f"{v:.3f}" for v in final["seeds"])
            pair = data.get("paired_vs_flat")
            if arm == "flat" or pair is None:
                print(f"| {schedule} | {arm} | {seeds} | {final['mean']:.3f} ± {final['std']:.3f} | 1 | - | - | - | "
                      "1 |")
                continue
            at = "; ".join(interval(pair["loss_ratio_at"][k]) for k in ("25%", "50%", "75%", "100%"))
            print(f"| {schedule} | {arm} | {seeds} | {final['mean']:.3f} ± {final['std']:.3f} | "
                  f"{interval(pair['speedup'])} | {pair['verdict']} | {pair.get('reached', '-')}/{pair['seeds']} | "
                  f"{pair['wins']}/{pair['seeds']} | {at} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/curriculum_study.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="*", help=f"study names (default: every file in {STUDIES.relative_to(ROOT)})")
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")),
                        help="the shared data folder (corpora/, hub/, tiktoken/); default $CURRICULUM_SHARED or "
                        "../shared")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "study", help="where studies train (out/study)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    parser.add_argument("--partial", action="store_true",
                        help="train nothing: report what a study stopped part-way has finished (per schedule, the "
                        "arms whose every seed is done)")
    parser.add_argument("--table", action="store_true",
                        help="train nothing: print a finished study's report as docs/compare.md's compact table")
    args = parser.parse_args(argv)
    names = args.studies or sorted(p.stem for p in STUDIES.glob("*.yaml"))
    missing = [n for n in names if not (STUDIES / f"{n}.yaml").is_file()]
    if missing:
        parser.error(f"no study {missing}; choose from {sorted(p.stem for p in STUDIES.glob('*.yaml'))}")
    if args.partial:
        return max(partial_report(name, args.out.resolve()) for name in names)
    if args.table:
        return max(compact_table(name, args.out.resolve()) for name in names)
    for name in names:
        code = run_study(name, args.shared.resolve(), args.out.resolve(), args.dry_run)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
