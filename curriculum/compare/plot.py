"""The comparison's plot: target loss vs FLOPs and vs tokens, every arm's mean over seeds with a band from its
lowest to its highest seed, the curriculum arm's stage boundaries marked. Agg canvas, as curriculum/plots.py."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from curriculum.compare.arms import ArmPlan
from data.atomic import atomic_write_bytes

COMPARE_PLOT_FILE = "compare.png"
COLORS = {"curriculum": "tab:blue", "flat": "tab:orange", "mixed": "tab:green", "lengths": "tab:red",
          "versus": "tab:purple", "reversed": "tab:brown"}


def render_compare_plot(
    plans: Sequence[ArmPlan], curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], target: str, title: str,
) -> bytes:
    """PNG bytes; `curves[arm][k]` as report.curve() gives them (seeds of one arm share their evaluation points)."""
    figure = Figure(figsize=(12, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for column, (axis, label) in enumerate((("flops", "training FLOPs"), ("tokens", "training tokens"))):
        _draw(figure.add_subplot(1, 2, column + 1), plans, curves, target, axis, label)
    return _png(figure, title)


def render_schedules_plot(
    by_schedule: Mapping[str, tuple[Sequence[ArmPlan], Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]]],
    target: str, title: str,
) -> bytes:
    """One panel per LR schedule: every arm's target loss against FLOPs under it (same y axis)."""
    n = len(by_schedule)
    figure = Figure(figsize=(5.2 * n, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    first = None
    for column, (schedule, (plans, curves)) in enumerate(by_schedule.items()):
        axes = figure.add_subplot(1, n, column + 1, sharey=first)
        first = first or axes
        _draw(axes, plans, curves, target, "flops", "training FLOPs")
        axes.set_title(f"lr_schedule {schedule}")
    return _png(figure, title)


def _draw(axes: Any, plans: Sequence[ArmPlan], curves: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]],
          target: str, axis: str, label: str) -> None:
    for plan in plans:
        runs = curves[plan.arm]
        n = min(len(points) for points in runs)  # equal unless a run is unfinished
        xs = [runs[0][i][axis] for i in range(n)]
        losses = [[points[i]["target"] for points in runs] for i in range(n)]
        color = COLORS.get(plan.arm)
        name = f"{plan.arm} {plan.label}" if plan.label else plan.arm
        axes.plot(xs, [sum(v) / len(v) for v in losses], label=f"{name} ({len(runs)} seeds)", color=color,
                  marker=".", markersize=4)
        axes.fill_between(xs, [min(v) for v in losses], [max(v) for v in losses], color=color, alpha=0.2,
                          linewidth=0)
    curriculum = next((p for p in plans if p.arm == "curriculum"), None)
    if curriculum is not None:
        done = 0.0
        for stage in curriculum.stages[:-1]:
            done += stage.flops if axis == "flops" else stage.tokens
            axes.axvline(done, color="0.4", linestyle="--", linewidth=1)
            axes.annotate(f"curriculum: end of {stage.stage.name}", xy=(done, 1.0),
                          xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                          fontsize=8, color="0.3")
    axes.set_xlabel(label)
    axes.set_ylabel(f"val loss on {target!r} (target)")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)


def _png(figure: Figure, title: str) -> bytes:
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_compare_plot(png: bytes, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, png)
    return path
