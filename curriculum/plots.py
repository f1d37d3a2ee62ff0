"""The loss curve of a whole curriculum: train and val loss per evaluation, stage boundaries marked, and the
learning rate on a second axis (its transitions at stage boundaries: rewarm, anneal, a wsd decay).

Plain matplotlib on the Agg canvas (no display, no pyplot state shared between threads), from the rows the
trainer appends to `<run_dir>/metrics.jsonl` (keys used here: stage, iter_num, train_loss, val_loss, and lr
where rows have it).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from data.atomic import atomic_write_bytes

LOSS_CURVE_FILE = "loss_curve.png"
REQUIRED_KEYS = ("stage", "iter_num", "train_loss", "val_loss")


def stage_spans(rows: list[Mapping[str, Any]]) -> list[tuple[str, int, int]]:
    """(stage, first iter_num, last iter_num) per stage, in training order."""
    spans: list[tuple[str, int, int]] = []
    for row in rows:
        stage, it = str(row["stage"]), int(row["iter_num"])
        if spans and spans[-1][0] == stage:
            spans[-1] = (stage, spans[-1][1], it)
        else:
            spans.append((stage, it, it))
    return spans


def _checked(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(rows)
    if not rows:
        raise ValueError(
            "no evaluation rows to plot: the loss curve needs at least one evaluation "
            "(the trainer writes one every train.eval_interval iterations and at each stage end)"
        )
    for number, row in enumerate(rows, 1):
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise ValueError(
                f"evaluation row {number} lacks {', '.join(missing)} (has {', '.join(sorted(row))}); "
                f"each row needs {', '.join(REQUIRED_KEYS)}, as metrics.jsonl rows have"
            )
    # A resumed session may evaluate an iteration again: the last row for an iteration wins.
    latest: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        latest[int(row["iter_num"])] = row
    return sorted(latest.values(), key=lambda row: int(row["iter_num"]))


def _loss(value: Any) -> float:
    return math.nan if value is None else float(value)  # NaN leaves a gap (no train loss before step 1)


def render_loss_curve(
    rows: Iterable[Mapping[str, Any]], *, title: str = "Loss across the curriculum", fmt: str = "png", dpi: int = 100
) -> bytes:
    """The plot as `fmt` bytes (png or svg)."""
    rows = _checked(rows)
    iters = [int(row["iter_num"]) for row in rows]
    figure = Figure(figsize=(9, 4.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(iters, [_loss(row["train_loss"]) for row in rows], label="train loss", color="tab:blue", marker=".")
    axes.plot(iters, [_loss(row["val_loss"]) for row in rows], label="val loss", color="tab:orange", marker=".")
    spans = stage_spans(rows)
    for index, (stage, first, last) in enumerate(spans):
        start = first
        if index > 0:
            # A stage ends with an evaluation at its last iteration: that iteration is the boundary.
            start = spans[index - 1][2]
            axes.axvline(start, color="0.4", linestyle="--", linewidth=1)
        axes.annotate(
            stage, xy=((start + last) / 2, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 4),
            textcoords="offset points", ha="center", va="bottom", fontsize=9,
        )
    axes.set_xlabel("iteration (whole curriculum)")
    axes.set_ylabel("loss")
    axes.set_title(title, pad=18)
    axes.grid(True, alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    lr_rows = [row for row in rows if row.get("lr") is not None]
    if lr_rows:
        # The LR of the step before each evaluation; a second scale, since it is orders of magnitude below a loss.
        lr_axes = axes.twinx()
        (line,) = lr_axes.plot([int(row["iter_num"]) for row in lr_rows], [float(row["lr"]) for row in lr_rows],
                               label="learning rate", color="tab:green", linestyle=":", marker=".", markersize=3)
        lr_axes.set_ylabel("learning rate")
        lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        lr_axes.set_ylim(bottom=0)
        handles.append(line)
        labels.append("learning rate")
    axes.legend(handles, labels, loc="upper right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt)
    return buffer.getvalue()


def save_loss_curve(
    rows: Iterable[Mapping[str, Any]], path: str | Path, *, title: str = "Loss across the curriculum"
) -> Path:
    """Write the PNG plot to `path` atomically (a reader never sees half a file); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, render_loss_curve(rows, title=title, fmt="png"))
    return path
