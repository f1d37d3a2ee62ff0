"""The `compare` flow: does the curriculum pay? Its arms (curriculum/compare/arms.py) trained at matched compute
over several seeds, side by side, then one report: final target loss, compute to reach flat's final loss, a plot.

    python flows/compare.py --type simple --seeds 3 --arms curriculum,flat,mixed,lengths --match flops
    python flows/compare.py --config mix-a.yaml --versus mix-b.yaml --arms curriculum,flat   # two curricula
    python flows/compare.py --type simple --schedules per-stage,wsd,constant   # every arm under every schedule

Served as the deployments `compare/simple` and `compare/default` (deployments/serve.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # As in flows/curriculum.py: run as a script, flows/ must not shadow the `curriculum` package.
    _flows_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _flows_dir]
    sys.path.insert(0, str(_flows_dir.parent))
    from flows.environment import set_script_environment

    set_script_environment()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any, Literal  # noqa: E402

from prefect import flow  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from curriculum.allowed_paths import check_path, confine_paths  # noqa: E402
from curriculum.compare.arms import (  # noqa: E402
    ARMS,
    EVAL_POINTS,
    MIXED_SHARD,
    VERSUS,
    check_comparable,
    check_match,
    check_versus,
    needs_mixed_shard,
    parse_arms,
    parse_schedules,
    plan_arms,
    run_folder,
    schedule_names,
    seed_of,
    with_schedule,
)
from curriculum.compare.mixed import mixed_record  # noqa: E402
from curriculum.compare.plot import (  # noqa: E402
    COMPARE_PLOT_FILE,
    render_compare_plot,
    render_schedules_plot,
    save_compare_plot,
)
from curriculum.compare.report import (  # noqa: E402
    build_report,
    curve,
    ranking,
    report_markdown,
    schedules_markdown,
    speedup_line,
    versus_line,
)
from curriculum.config import ConfigError, RunConfig, load_run_config, parse_override  # noqa: E402
from curriculum.presets import PRESETS  # noqa: E402
from curriculum.training.run_dir import read_metrics  # noqa: E402
from curriculum.training.stop import stop_on_exit  # noqa: E402
from curriculum.training.trackers import comparison_tracking  # noqa: E402
from curriculum.training.trainer import resolve_model_config  # noqa: E402
from data.atomic import atomic_write_text  # noqa: E402
from data.errors import UserError  # noqa: E402
from flows.cli import run_flow  # noqa: E402
from flows.curriculum import prepare_stages  # noqa: E402
from flows.run_folders import hold_folder, served_run_roots, waits_for_folders  # noqa: E402
from flows.temporary_server import use_temporary_server  # noqa: E402
from tasks.compare import train_arm  # noqa: E402
from tasks.ui_artifacts import artifact_key, image_markdown, publish_markdown  # noqa: E402

REPORT_FILE = "report.json"
PLAN_FILE = "plan.json"


def compare_run_name() -> str:
    parameters = flow_run.parameters
    name = Path(parameters["config_path"]).stem if parameters.get("config_path") else parameters.get("type", "simple")
    return f"{name}-compare-{time.strftime('%Y%m%d-%H%M%S')}"


# Arms x seeds run side by side in this many threads (the trainer releases the GIL in torch's kernels); another
# task runner (Dask, Ray) spreads them over machines. Two suit a 2-core CPU; on GPUs, one per device.
WORKERS = int(os.environ.get("CURRICULUM_COMPARE_WORKERS", "2"))
TASK_RUNNER: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=WORKERS)


@flow(name="compare", flow_run_name=compare_run_name, validate_parameters=True, log_prints=True,
      task_runner=TASK_RUNNER)  # type: ignore[arg-type]  # Prefect's stubs expect another future class
def compare(
    type: Literal["simple", "default"] = "simple",
    config_path: str | None = None,
    overrides: dict[str, Any] = {},  # noqa: B006 (read only; a dict default gives the UI a JSON editor)
    seeds: int = 3,
    arms: str = ",".join(ARMS),
    match: Literal["tokens", "flops"] = "flops",
    out_dir: str | None = None,
    evals: int = EVAL_POINTS,
    versus_config_path: str | None = None,
    schedules: str | None = None,
    judge: Literal["raw", "ema"] = "raw",
    wait: bool | None = None,
) -> dict[str, Any]:
    """Train the curriculum and its control arms at matched compute over several seeds, and report which pays.

    Args:
        type: A preset curriculum: "simple" or "default".
        config_path: A YAML run config to use instead of the preset (path on the machine that runs the flow).
        overrides: Settings to change, as dotted keys, e.g. {"model.preset": "tiny", "train.eval_iters": 5}.
        seeds: Seeds per arm (train.seed, train.seed + 1, ...); seed k of every arm starts from the same weights.
        arms: Comma-separated arms: curriculum (always), flat, mixed, lengths.
        match: Match every arm's compute to the curriculum's in training "tokens" or "flops".
        out_dir: The comparison folder (default out/compare/<name>); each arm and seed trains in <arm>-seed<k>/.
        evals: Evaluations per run (on every stage's val set), spread evenly over its iterations, plus stage ends.
        versus_config_path: A second YAML curriculum trained as the arm "versus" (other mixtures, LR transitions):
            same model and seeds, its own stages and train settings, matched in compute, judged on the first's
            target. The overrides apply to it too.
        schedules: Comma-separated LR schedules (per-stage, global, wsd, constant): every arm and seed trains under
            each, flat under a schedule the baseline of every arm under it; run folders <schedule>/<arm>-seed<k>.
            None: the curriculum's own train.lr_schedule alone (run folders <arm>-seed<k>).
        judge: Judge the arms on the raw weights ("raw") or on their moving average ("ema", needs train.ema).
        wait: When another run is writing the comparison or data folder, wait for it (queued on a concurrency
            limit named after the folder) instead of failing at once. Default: served runs wait, CLI runs fail.
    """
    if seeds < 1:
        raise ConfigError(f"seeds={seeds}: give at least 1 (3 or more for a mean ± std worth reading)")
    if evals < 2:
        raise ConfigError(f"evals={evals}: give at least 2 evaluations per run (default {EVAL_POINTS})")
    arm_names, match = parse_arms(arms), check_match(match)
    roots = served_run_roots()
    if roots is not None:
        if config_path is not None:
            check_path("config_path", config_path, roots)
        if versus_config_path is not None:
            check_path("versus_config_path", versus_config_path, roots)  # before the file is read
        if out_dir is not None:
            check_path("out_dir", out_dir, roots)
    config = load_run_config(type=type, config_path=config_path, overrides=overrides)
    versus = load_versus(config, versus_config_path, overrides) if versus_config_path else None
    if roots is not None:
        confine_paths(config, roots)
        if versus is not None:
            confine_paths(versus, roots)
    resolve_model_config(config.curriculum, config.model)
    check_comparable(config)  # before anything is prepared
    schedule_list = parse_schedules(schedules, config, versus)
    check_judge(judge, config)
    compare_dir = Path(out_dir or Path("out/compare") / config.name).resolve()
    # Leaving on an exception (Ctrl-C, SIGTERM, a failed arm): every arm in training checkpoints at its next step
    # and stops before the folder is released; a rerun resumes them.
    wait = waits_for_folders(wait)
    # With mlflow in train.loggers, one MLflow run of the comparison, each arm's run a child of it: opened on a
    # thread of its own while the data is prepared, closed when the comparison ends however it ends.
    settings = {"arms": arm_names, "match": match, "seeds": seeds, "schedules": schedule_list, "judge": judge}
    with hold_folder(compare_dir, "compare", wait=wait), stop_on_exit(), \
            comparison_tracking(config, compare_dir, settings) as tracking:
        # Holds the data folder while it prepares; from the cache when prepared before: nothing is prepared twice.
        shards = prepare_stages(config, wait=wait)
        # Into the same data folder: a source both curricula read is prepared once.
        versus_shards = prepare_stages(versus, wait=wait) if versus is not None else None
        mixed = (mixed_record(shards, compare_dir / MIXED_SHARD, config.curriculum.max_block_size)
                 if needs_mixed_shard(config, arm_names) else None)
        plans = plan_arms(config, shards, arm_names, match, mixed, evals, versus=versus, versus_shards=versus_shards)
        ks = list(range(1, seeds + 1))
        # Compute is matched once: a schedule changes how an arm's steps are weighted, not how many it takes.
        names: list[str | None] = list(schedule_list) if schedule_list else [None]
        by_schedule = {name: [with_schedule(plan, name) if name else plan for plan in plans] for name in names}
        atomic_write_text(compare_dir / PLAN_FILE, json.dumps(
            {"match": match, "seeds": [seed_of(config.train, k) for k in ks], "schedules": schedule_list,
             "judge": judge, "arms": [p.model_dump(mode="json") for p in plans]}, indent=2) + "\n")
        for plan in plans:
            print(f"arm {plan.arm}{f' ({plan.label})' if plan.label else ''}: " + "; ".join(
                f"{s.stage.name} ({s.data}, block {s.stage.block_size}, {s.iters:,} iterations)" for s in plan.stages)
                + f" = {plan.tokens:,} tokens, {plan.flops:.3g} FLOPs")
        parent = tracking.run_id() if tracking is not None else None
        # Every schedule, arm and seed at once: the task runner's workers train them side by side, each measured
        # on the curriculum arm's val sets.
        futures = [train_arm.submit(plan, k, seed_of(config.train, k), arms_of[0],
                                    run_folder(compare_dir, plan.arm, k, name), parent)
                   for name, arms_of in by_schedule.items() for plan in arms_of for k in ks]
        for future in futures:
            future.wait()
        for future in futures:
            future.result()  # the first failure, if any, ends the flow (the others have finished)
        target = config.stages[-1].name
        seeds_used = [seed_of(config.train, k) for k in ks]
        shown = [*arm_names, *([f"{VERSUS} {versus.name}"] if versus is not None else [])]
        title = f"compare {config.name}: {', '.join(shown)} at matched {match}, {seeds} seed(s)"
        curves_of: dict[str | None, dict[str, list[list[dict[str, Any]]]]] = {}
        reports: dict[str | None, dict[str, Any]] = {}
        for name, arms_of in by_schedule.items():
            curves_of[name] = {plan.arm: [curve(plan, read_metrics(run_folder(compare_dir, plan.arm, k, name)),
                                                target, judge) for k in ks] for plan in arms_of}
            reports[name] = {**build_report(arms_of, curves_of[name], target, match, seeds_used), "judge": judge}
        if schedule_list is None:
            report = {**reports[None], "judge": judge}
            png = render_compare_plot(plans, curves_of[None], target, title)
        else:
            title += f", schedules {', '.join(schedule_list)}"
            # The first schedule's numbers at the top level, as a comparison of one schedule has them.
            named = {name: reports[name] for name in schedule_list}
            report = {**named[schedule_list[0]], "judge": judge, "schedule": schedule_list[0],
                      "schedules": named, "ranking": ranking(named)}
            png = render_schedules_plot({name: (by_schedule[name], curves_of[name]) for name in schedule_list},
                                        target, title)
        save_compare_plot(png, compare_dir / COMPARE_PLOT_FILE)
        atomic_write_text(compare_dir / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    markdown = schedules_markdown(report, title) if "schedules" in report else report_markdown(report, title)
    publish_markdown(artifact_key(config.name, "compare"), markdown + "\n" + image_markdown(png, title),
                     description=f"compare {config.name}: the arms at matched {match}")
    print(markdown)
    print(f"report: {compare_dir / REPORT_FILE}, plot: {compare_dir / COMPARE_PLOT_FILE}")
    return report


def check_judge(judge: str, config: RunConfig) -> None:
    if judge not in ("raw", "ema"):
        raise ConfigError(f"--judge {judge!r}: choose raw (the trained weights) or ema (their moving average)")
    if judge == "ema" and config.train.ema is None:
        raise ConfigError("--judge ema: the runs keep no moving average of their weights (train.ema is not set); "
                          "set its decay, e.g. --set train.ema=0.99, or judge the raw weights (--judge raw)")


def load_versus(config: RunConfig, path: str, overrides: dict[str, Any]) -> RunConfig:
    """The --versus curriculum with the same overrides, checked against `config` (check_versus)."""
    if not Path(path).is_file():
        raise ConfigError(f"--versus {path}: no such file; give the YAML run config of the second curriculum "
                          "(written like a --config file)")
    try:
        versus = load_run_config(config_path=path, overrides=overrides)
    except ConfigError as error:
        also = f" (the overrides {sorted(overrides)} apply to it too)" if overrides else ""
        raise ConfigError(f"--versus {path}{also}: {error}") from None
    return check_versus(config, versus, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python flows/compare.py",
        description="Does the curriculum pay? Train it and control arms (flat, mixed, lengths, reversed) at matched "
        "compute over several seeds, under one or several LR schedules; report the target loss, compute to reach "
        "flat's final loss, paired statistics over seeds, and a plot.",
        epilog="The last line, speedup_vs_flat=X±Y (95% t interval, N seeds, W/N wins: VERDICT), is the curriculum "
        "arm's speed-up against flat (flat's compute over its own, to flat's final target loss): X the mean over "
        "seeds, Y the half-width of its 95% Student t interval (not a standard deviation); VERDICT is faster or "
        "slower only when the interval excludes 1, else no difference. With --schedules one such line per schedule "
        "(speedup_vs_flat[S]=...) comes before it, and the last line is the first schedule's.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--type", help=f"preset curriculum: {', '.join(PRESETS)} (default: simple)")
    source.add_argument("--config", metavar="FILE.yaml", help="a YAML run config instead of a preset")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default {','.join(ARMS)})")
    parser.add_argument("--match", default="flops", help="match compute in tokens or flops (default flops)")
    parser.add_argument("--versus", metavar="FILE.yaml",
                        help="a second curriculum trained as the arm 'versus' (other mixtures or LR transitions): "
                        "same model and seeds, its own stages and train settings, matched in compute, judged on "
                        "the first's target; --set applies to it too")
    parser.add_argument("--schedules", metavar="S1,S2",
                        help="train every arm and seed under each of these LR schedules "
                        f"({', '.join(schedule_names())}), flat under each the baseline of the arms under it; "
                        "run folders <schedule>/<arm>-seed<k>; default: the curriculum's own train.lr_schedule alone")
    parser.add_argument("--judge", default="raw", choices=("raw", "ema"),
                        help="judge the arms on their raw weights (default) or on their moving average (ema: needs "
                        "--set train.ema=0.99 or another decay)")
    parser.add_argument("--evals", type=int, default=EVAL_POINTS,
                        help=f"evaluations per run, spread evenly, plus one at each stage end (default {EVAL_POINTS})")
    parser.add_argument("--data-dir", metavar="DIR", help="where shards and data caches go (default: out/data/<name>)")
    parser.add_argument("--out-dir", metavar="DIR", help="the comparison folder (default: out/compare/<name>)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one setting of the curriculum, repeatable: --set model.preset=tiny",
    )
    parser.add_argument("--wait", action="store_true",
                        help="when another run is writing the comparison or data folder, wait for it to finish "
                        "instead of stopping at once (served runs wait by default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = dict(parse_override(text) for text in args.overrides)
        if args.data_dir:
            overrides["data.data_dir"] = args.data_dir
        config = load_run_config(type=args.type, config_path=args.config, overrides=overrides)  # mistakes first
        check_comparable(config)
        versus = load_versus(config, args.versus, overrides) if args.versus else None
        parse_schedules(args.schedules, config, versus)
        check_judge(args.judge, config)
        parse_arms(args.arms)
        check_match(args.match)
        if args.seeds < 1:
            raise ConfigError(f"--seeds {args.seeds}: give at least 1")
        if args.evals < 2:
            raise ConfigError(f"--evals {args.evals}: give at least 2")
    except ConfigError as error:
        print(f"error: {error}")
        return 2
    try:
        use_temporary_server()
    except UserError as error:  # ServerStartError
        print(f"error: {error}", file=sys.stderr)
        return 1
    exit_code, report = run_flow(
        compare, type=args.type or "simple", config_path=args.config, overrides=overrides, seeds=args.seeds,
        arms=args.arms, match=args.match, out_dir=args.out_dir, evals=args.evals, versus_config_path=args.versus,
        schedules=args.schedules, judge=args.judge, wait=True if args.wait else None,
    )
    if exit_code:
        return exit_code
    if VERSUS in report["arms"]:
        print(versus_line(report), flush=True)
    for name, sub in report.get("schedules", {}).items():
        print(speedup_line(sub, schedule=name), flush=True)
    print(speedup_line(report), flush=True)  # the last line: the first schedule's
    return 0


if __name__ == "__main__":
    sys.exit(main())
