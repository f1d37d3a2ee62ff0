"""Loss curves [(compute, loss), ...] read back the simple way, to recompute a compare report's figures in a test
independently of curriculum/compare/stats.py."""

from __future__ import annotations


def reach(curve: list[tuple[float, float]], level: float) -> float | None:
    """The compute at which the curve first gets to `level` or below (linear between evaluations), or None."""
    for i, (x, loss) in enumerate(curve):
        if loss <= level:
            if i == 0:
                return x
            x0, l0 = curve[i - 1]
            return x0 + (l0 - level) / (l0 - loss) * (x - x0)
    return None


def at(curve: list[tuple[float, float]], x: float) -> float | None:
    """The curve's loss at compute `x` (linear between evaluations), or None outside it."""
    for (x0, l0), (x1, l1) in zip(curve, curve[1:], strict=False):
        if x0 <= x <= x1:
            return l0 + (x - x0) / (x1 - x0) * (l1 - l0)
    return None
