"""Paired statistics over seeds: seed k of every arm starts from the same weights and reads the same eval windows,
so an arm is compared with the flat arm's own seed k, and the interval is over those per-seed differences.

A seed's speed-up is two-sided. An arm that gets to flat's final target loss: flat's compute to reach it over the
arm's (>= 1 when the arm is there first). An arm that never gets there: flat's compute to reach the arm's final
target loss over the arm's whole compute (< 1: flat was there first). So every seed has a value, and the interval
can say "slower" as well as "faster"; `reached` counts the seeds of the first kind.

The interval is Student's t over seeds: mean +- t(0.975, n - 1) * sd / sqrt(n), with the quantiles below (there
is no scipy here). With 3 seeds t = 4.303: an interval is wide, and a speed-up whose interval contains 1 is "no
difference", never a win.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# t(0.975, df) for df = 1..30 (two-sided 95%); above 30 the tables' rows for 40, 60 and 120, each used from its df
# up to the next row (t falls with df, so an interval is never too narrow).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
T_975_ABOVE_30 = ((40, 2.021), (60, 2.000), (120, 1.980))
FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of an arm's compute, where its target loss is compared with flat's
NO_DIFFERENCE, FASTER, SLOWER, NOT_REACHED, ONE_SEED = "no difference", "faster", "slower", "not reached", \
    "1 seed: no interval"


def t_quantile(df: int) -> float:
    if df < 1:
        raise ValueError(f"df={df}: a t interval needs at least 2 values")
    if df <= len(T_975):
        return T_975[df - 1]
    return next((t for row, t in reversed(T_975_ABOVE_30) if df >= row), T_975[-1])


def t_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sd, n and the 95% t interval (low, high, half-width) of `values`; no interval for one value."""
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0, "low": None, "high": None, "half_width": None}
    mean = statistics.fmean(values)
    if n == 1:
        return {"mean": mean, "sd": None, "n": 1, "low": None, "high": None, "half_width": None}
    sd = statistics.stdev(values)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half, "half_width": half}


def speedup_verdict(interval: dict[str, Any]) -> str:
    """'faster' or 'slower' only when the speed-up's 95% interval lies wholly above or below 1."""
    if interval["n"] == 1:
        return ONE_SEED
    if interval["low"] is None:
        return NOT_REACHED
    if interval["low"] > 1:
        return FASTER
    if interval["high"] < 1:
        return SLOWER
    return NO_DIFFERENCE


def loss_at(points: Sequence[Mapping[str, Any]], compute: float, axis: str) -> float | None:
    """The target loss at `compute` (tokens or flops), linearly interpolated between the evaluations around it;
    None outside the curve."""
    previous = None
    for point in points:
        if point[axis] >= compute:
            if previous is None or point[axis] == previous[axis]:
                return float(point["target"]) if point[axis] == compute or previous is not None else None
            share = (compute - previous[axis]) / (point[axis] - previous[axis])
            return float(previous["target"] + share * (point["target"] - previous["target"]))
        previous = point
    return None


def compute_to_reach(points: Sequence[Mapping[str, Any]], level: float, axis: str) -> float | None:
    """Compute (`axis`: tokens or flops) at which the target loss first reaches `level`, interpolated linearly
    between the evaluations around it; None if it never does."""
    previous = None
    for point in points:
        if point["target"] <= level:
            if previous is None or previous["target"] == point["target"]:
                return float(point[axis])
            share = (previous["target"] - level) / (previous["target"] - point["target"])
            return float(previous[axis] + share * (point[axis] - previous[axis]))
        previous = point
    return None


def seed_speedup(points: Sequence[Mapping[str, Any]], flat: Sequence[Mapping[str, Any]], ratio: float | None,
                 axis: str) -> float | None:
    """One seed's two-sided speed-up (see the module's docstring); `ratio` is the arm's compute to reach flat's
    final target loss over flat's own, None when the arm never reaches it."""
    if ratio is not None and ratio > 0:
        return 1 / ratio
    flat_needs = compute_to_reach(flat, points[-1]["target"], axis)  # flat ends lower, so it gets there
    return None if flat_needs is None or not points[-1][axis] else flat_needs / points[-1][axis]


def paired(runs: Sequence[Sequence[Mapping[str, Any]]], flat: Sequence[Sequence[Mapping[str, Any]]],
           ratios: Sequence[float | None], axis: str) -> dict[str, Any]:
    """An arm against flat, seed by seed: `ratios[k]` is seed k's compute to reach flat-seed-k's final target loss
    over flat's own (None: not reached). Returns the two-sided speed-up per seed (seed_speedup) with its interval
    and verdict, how many seeds reached flat's final loss, the wins (final target loss below flat's same seed),
    and at FRACTIONS of the compute the ratio of its target loss to flat's at the same compute, per seed and with
    an interval."""
    per_seed = [seed_speedup(points, theirs, r, axis) for points, theirs, r in zip(runs, flat, ratios, strict=True)]
    known = [s for s in per_seed if s is not None]
    interval = t_interval(known) if len(known) == len(per_seed) else {**t_interval([]), "n": len(per_seed)}
    verdict = speedup_verdict(interval) if len(known) == len(per_seed) else NOT_REACHED
    finals = [(points[-1]["target"], theirs[-1]["target"]) for points, theirs in zip(runs, flat, strict=True)]
    at = {}
    for fraction in FRACTIONS:
        values = []
        for points, theirs in zip(runs, flat, strict=True):
            # Of the smaller of the two totals: matched compute differs by up to half an iteration.
            compute = fraction * min(points[-1][axis], theirs[-1][axis])
            mine, base = loss_at(points, compute, axis), loss_at(theirs, compute, axis)
            values.append(None if mine is None or base is None else mine / base)
        known = [v for v in values if v is not None]
        at[f"{round(fraction * 100)}%"] = {"per_seed": values, **t_interval(known)}
    return {
        "speedup_per_seed": per_seed, "speedup": interval, "verdict": verdict,
        "reached": sum(r is not None and r > 0 for r in ratios),
        "wins": sum(mine < theirs for mine, theirs in finals), "seeds": len(finals),
        "loss_ratio_at": at,
    }
