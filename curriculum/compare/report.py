"""The comparison's numbers, from the arms' metrics.jsonl rows (their `evals`): final target loss, compute to
reach the flat arm's final target loss, the ratio and speed-up against flat, and every stage's val loss at the end.

Seeds are paired: seed k of every arm starts from the same weights, so the compute an arm needs to reach flat's
final target loss is compared with flat's own seed k (the level is that seed's final loss; the report also gives
the mean over seeds). Compute to reach a level is interpolated linearly between the two evaluations around the
first one at or below it; an arm that never gets there is "not reached".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from curriculum.compare.arms import VERSUS, ArmPlan, Match
from curriculum.compare.flops import FORMULA
from curriculum.compare.stats import FRACTIONS, ONE_SEED, compute_to_reach, paired

NOT_REACHED = "not reached"


def curve(plan: ArmPlan, rows: Sequence[Mapping[str, Any]], target: str, judge: str = "raw") -> list[dict[str, Any]]:
    """One point per evaluation of one run, in training order: tokens and FLOPs trained so far, the loss on every
    eval set (`losses`) and on the target; `judge` "ema" reads the EMA weights' losses (`evals_ema`)."""
    key = "evals_ema" if judge == "ema" else "evals"
    before_tokens, before_flops = [0], [0.0]
    for stage in plan.stages:
        before_tokens.append(before_tokens[-1] + stage.tokens)
        before_flops.append(before_flops[-1] + stage.flops)
    latest: dict[tuple[int, int], Mapping[str, Any]] = {}
    for row in rows:
        if key in row:
            latest[(int(row["stage_index"]), int(row["stage_iter"]))] = row  # a resumed session's repeat wins
    points = []
    for (index, it), row in sorted(latest.items()):
        stage = plan.stages[index]
        tokens = before_tokens[index] + it * stage.tokens_per_iter
        points.append({
            "stage": row["stage"], "stage_index": index, "stage_iter": it, "stage_end": bool(row.get("stage_end")),
            "tokens": tokens, "flops": before_flops[index] + it * stage.tokens_per_iter * stage.flops_per_token,
            "losses": dict(row[key]), "target": float(row[key][target]),
        })
    return points


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def build_report(
    plans: Sequence[ArmPlan], curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], target: str, match: Match,
    seeds: Sequence[int],
) -> dict[str, Any]:
    """`curves[arm][k]` is seed k's curve (curve()); returns the report as JSON-able data. With a versus arm, it
    also gets `reach_curriculum_final`: the same measures against the curriculum arm instead of flat."""
    axis = "tokens" if match == "tokens" else "flops"
    finals = {arm: [points[-1]["target"] for points in runs] for arm, runs in curves.items()}
    flat_levels = finals.get("flat")
    arms: dict[str, Any] = {}
    for plan in plans:
        runs = curves[plan.arm]
        entry: dict[str, Any] = {
            "tokens": plan.tokens, "flops": plan.flops, "iterations": sum(s.iters for s in plan.stages),
            "stages": [{"name": s.stage.name, "data": s.data, "block_size": s.stage.block_size, "iterations": s.iters,
                        "tokens": s.tokens, "flops": s.flops} for s in plan.stages],
            "final_target_loss": {"seeds": finals[plan.arm], **mean_std(finals[plan.arm])},
            "final_losses": {name: mean_std([points[-1]["losses"][name] for points in runs])
                             for name in runs[0][-1]["losses"]},
        }
        if plan.label:
            entry["curriculum"] = plan.label
        if flat_levels is not None:
            entry["reach_flat_final"] = _reach(runs, curves["flat"], "flat", axis, seeds)
            ratios = [r["ratio_to_flat"] for r in entry["reach_flat_final"]["per_seed"]]
            entry["paired_vs_flat"] = paired(runs, curves["flat"], ratios, axis)
        if plan.arm == VERSUS:
            entry["reach_curriculum_final"] = _reach(runs, curves["curriculum"], "curriculum", axis, seeds)
        arms[plan.arm] = entry
    last = plans[0].stages[-1]  # the curriculum arm's: the target
    mixture = ({c.name: w for c, w in zip(last.stage.components(), last.stage.weights, strict=True)}
               if last.stage.sources else None)
    return {"target": target, "target_mixture": mixture, "match": match, "axis": axis, "flops_formula": FORMULA,
            "seeds": list(seeds), "flat_final_target_loss": mean_std(flat_levels) if flat_levels else None,
            "arms": arms}


def _reach(runs: Sequence[Sequence[Mapping[str, Any]]], reference: Sequence[Sequence[Mapping[str, Any]]], name: str,
           axis: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The compute each seed of an arm needs to reach the final target loss of the `reference` arm's same seed,
    its ratio to the reference's own, and the speed-up (mean ± std over seeds; "not reached" if a seed never
    gets there)."""
    reach = []
    for k, points in enumerate(runs):
        level = reference[k][-1]["target"]
        tokens = compute_to_reach(points, level, "tokens")
        flops = compute_to_reach(points, level, "flops")
        theirs = compute_to_reach(reference[k], level, axis)
        mine = tokens if axis == "tokens" else flops
        reach.append({"seed": seeds[k], "level": level, "tokens": tokens, "flops": flops,
                      f"ratio_to_{name}": None if mine is None or not theirs else mine / theirs})
    ratios = [r[f"ratio_to_{name}"] for r in reach]
    reached = [r for r in ratios if r is not None]
    return {
        "per_seed": reach, "reached": f"{len(reached)}/{len(ratios)}",
        f"ratio_to_{name}": mean_std(reached) if len(reached) == len(ratios) else NOT_REACHED,
        f"speedup_vs_{name}": (mean_std([1 / r for r in reached]) if len(reached) == len(ratios) and all(reached)
                               else NOT_REACHED),
    }


def speedup_line(report: Mapping[str, Any], arm: str = "curriculum", schedule: str | None = None) -> str:
    """The CLI's speed-up line: the arm's speed-up against flat under the same schedule (flat's compute / the
    arm's, to flat's final target loss), mean ± the half-width of its 95% t interval over seeds, then the seeds,
    the wins and the verdict; `schedule` names the schedule in the key (`speedup_vs_flat[wsd]=...`)."""
    key = f"speedup_vs_flat[{schedule}]" if schedule else "speedup_vs_flat"
    entry = report["arms"].get(arm, {}).get("paired_vs_flat")
    if entry is None:
        return f"{key}=not measured (no flat arm)"
    wins = f"{entry['wins']}/{entry['seeds']} wins"
    if entry["verdict"] == NOT_REACHED:
        return f"{key}={NOT_REACHED} ({wins} on the final target loss)"
    speedup = entry["speedup"]
    if entry["verdict"] == ONE_SEED:
        return f"{key}={speedup['mean']:.3f} ({ONE_SEED}, {wins})"
    return (f"{key}={speedup['mean']:.3f}±{speedup['half_width']:.3f} (95% t interval, {speedup['n']} seeds, "
            f"{wins}: {entry['verdict']})")


def versus_line(report: Mapping[str, Any]) -> str:
    """The CLI's line before the last with a versus arm: its speed-up against the curriculum (the curriculum's
    compute / the versus's, to the curriculum's final target loss) and both final target losses."""
    entry = report["arms"][VERSUS]
    speedup = entry["reach_curriculum_final"]["speedup_vs_curriculum"]
    shown = NOT_REACHED if speedup == NOT_REACHED else f"{speedup['mean']:.3f}±{speedup['std']:.3f}"
    mine, theirs = entry["final_target_loss"], report["arms"]["curriculum"]["final_target_loss"]
    return (f"versus_speedup_vs_curriculum={shown} (versus {entry.get('curriculum', VERSUS)}: final target loss "
            f"{mine['mean']:.4f}±{mine['std']:.4f}, curriculum {theirs['mean']:.4f}±{theirs['std']:.4f})")


def _arm_name(arm: str, entry: Mapping[str, Any]) -> str:
    return f"{arm} (`{entry['curriculum']}`)" if entry.get("curriculum") else arm


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.{digits}f}"


def _amount(value: float | None) -> str:
    """Tokens in full, FLOPs in three digits; None is "not reached"."""
    if value is None:
        return NOT_REACHED
    return f"{value:,.0f}" if value < 1e9 else f"{value:.3g}"


def _pm(stats: Any, digits: int = 3) -> str:
    if not isinstance(stats, Mapping):
        return _fmt(stats)
    return f"{_fmt(stats['mean'], digits)} ± {_fmt(stats['std'], digits)}"


def _interval(stats: Mapping[str, Any], digits: int = 3) -> str:
    """`mean [low, high]` of a t_interval; the mean alone for one seed; "-" for none."""
    if stats.get("mean") is None:
        return "-"
    if stats.get("low") is None:
        return _fmt(stats["mean"], digits)
    return f"{_fmt(stats['mean'], digits)} [{_fmt(stats['low'], digits)}, {_fmt(stats['high'], digits)}]"


def ranking(reports: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (arm, schedule) pair of a comparison, best mean final target loss first."""
    pairs = [{"arm": arm, "schedule": schedule, "final_target_loss": entry["final_target_loss"]["mean"],
              "std": entry["final_target_loss"]["std"]}
             for schedule, report in reports.items() for arm, entry in report["arms"].items()]
    return sorted(pairs, key=lambda pair: pair["final_target_loss"])


def schedules_markdown(report: Mapping[str, Any], title: str, plot_markdown: str = "") -> str:
    """A comparison over several LR schedules: the ranking of every (arm, schedule) pair, then each schedule's
    report (report_markdown), flat under that schedule its baseline."""
    lines = [f"# {title}", "", "Every (arm, schedule) pair on the mean final target loss (± std over seeds):", "",
             "| rank | arm | schedule | final target loss |", "| ---: | --- | --- | ---: |"]
    for rank, pair in enumerate(report["ranking"], 1):
        lines.append(f"| {rank} | {pair['arm']} | {pair['schedule']} | {_fmt(pair['final_target_loss'])} ± "
                     f"{_fmt(pair['std'])} |")
    for schedule, sub in report["schedules"].items():
        body = report_markdown(sub, f"lr_schedule {schedule}").replace("# lr_schedule", "## lr_schedule", 1)
        lines += ["", body.rstrip()]
    if plot_markdown:
        lines += ["", plot_markdown]
    return "\n".join(lines) + "\n"


def report_markdown(report: Mapping[str, Any], title: str, plot_markdown: str = "") -> str:
    """The report as markdown: the arms table, each stage's val loss at the end, the formula and the plot."""
    axis = report["axis"]
    mixture = report.get("target_mixture")
    of_mixture = (" (a mixture: the mean of its sources' val losses weighted " + ", ".join(
        f"`{name}` {weight:g}" for name, weight in mixture.items()) + ")") if mixture else ""
    lines = [
        f"# {title}",
        "",
        f"Target: the val set of stage `{report['target']}`{of_mixture}. Compute matched by **{report['match']}**; "
        f"FLOPs per token = `{report['flops_formula']}`. Seeds: {', '.join(map(str, report['seeds']))} "
        "(seed k of every arm starts from the same weights). Judged on the "
        + ("moving average of the weights (`train.ema`)" if report.get("judge") == "ema" else "raw weights")
        + ". In this table ± is the standard deviation over seeds.",
        "",
        f"| arm | tokens | FLOPs | final target loss (mean ± sd) | {axis} to flat's final loss (per seed) | "
        "ratio to flat (mean ± sd) | speed-up vs flat (mean ± sd) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for arm, entry in report["arms"].items():
        reach = entry.get("reach_flat_final")
        if reach:
            per_seed = ", ".join(_amount(r[axis]) for r in reach["per_seed"])
            per_seed = f"{per_seed} ({reach['reached']} reached)"
        lines.append(
            f"| {_arm_name(arm, entry)} | {entry['tokens']:,} | {entry['flops']:.3g} | "
            f"{_pm(entry['final_target_loss'])} | "
            f"{per_seed if reach else '-'} | {_pm(reach['ratio_to_flat']) if reach else '-'} | "
            f"{_pm(reach['speedup_vs_flat']) if reach else '-'} |"
        )
    pairs = {arm: entry["paired_vs_flat"] for arm, entry in report["arms"].items()
             if "paired_vs_flat" in entry and arm != "flat"}
    if pairs:
        lines += ["", "Paired against flat, seed by seed (95% Student t intervals over seeds; a speed-up whose "
                  "interval contains 1 is *no difference*): the speed-up (flat's compute to the arm's level over "
                  "the arm's: to flat's final target loss where the arm reaches it, else to the arm's own final "
                  "loss, below 1), the seeds that reach flat's final loss, the seeds whose final target loss is "
                  "below flat's, and the target loss / flat's at the same compute at each share of the run (below "
                  "1: ahead of flat there).", "",
                  "| arm | speed-up vs flat | verdict | reached | wins | " + " | ".join(
                      f"loss / flat's at {round(f * 100)}%" for f in FRACTIONS) + " |",
                  "| --- | ---: | --- | ---: | ---: |" + " ---: |" * len(FRACTIONS)]
        for arm, pair in pairs.items():
            at = [_interval(pair["loss_ratio_at"][f"{round(f * 100)}%"]) for f in FRACTIONS]
            reached = f"{pair['reached']}/{pair['seeds']}" if "reached" in pair else "-"
            lines.append(f"| {_arm_name(arm, report['arms'][arm])} | {_interval(pair['speedup'])} | {pair['verdict']} "
                         f"| {reached} | {pair['wins']}/{pair['seeds']} | " + " | ".join(at) + " |")
    versus = report["arms"].get(VERSUS)
    if versus is not None:
        reach = versus["reach_curriculum_final"]
        per_seed = ", ".join(_amount(r[axis]) for r in reach["per_seed"])
        lines += ["", f"{_arm_name(VERSUS, versus)} against the curriculum: {axis} to the curriculum's final target "
                  f"loss (per seed) {per_seed} ({reach['reached']} reached); ratio to the curriculum "
                  f"{_pm(reach['ratio_to_curriculum'])}; speed-up vs the curriculum "
                  f"{_pm(reach['speedup_vs_curriculum'])}."]
    names = list(next(iter(report["arms"].values()))["final_losses"])
    lines += ["", "Val loss at the end on every stage's val set (mean ± std over seeds): what each arm keeps or "
              "forgets.", "", "| arm | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for arm, entry in report["arms"].items():
        lines.append(f"| {_arm_name(arm, entry)} | " + " | ".join(_pm(entry["final_losses"][n]) for n in names)
                     + " |")
    lines += ["", "Stages of each arm:", "", "| arm | stages (data, block size, iterations) |", "| --- | --- |"]
    for arm, entry in report["arms"].items():
        stages = "; ".join(f"{s['name']} ({s['data']}, {s['block_size']}, {s['iterations']:,})"
                           for s in entry["stages"])
        lines.append(f"| {_arm_name(arm, entry)} | {stages} |")
    if plot_markdown:
        lines += ["", plot_markdown]
    return "\n".join(lines) + "\n"
