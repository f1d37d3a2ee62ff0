"""The comparison's paired statistics (curriculum/compare/stats.py) on fixed numbers: t quantiles, intervals,
verdicts, wins and loss ratios at shares of the compute, and the ranking of (arm, schedule) pairs."""

from __future__ import annotations

import math
import statistics

import pytest

from curriculum.compare.report import ranking, speedup_line
from curriculum.compare.stats import (
    FASTER,
    NO_DIFFERENCE,
    ONE_SEED,
    SLOWER,
    loss_at,
    paired,
    speedup_verdict,
    t_interval,
    t_quantile,
)


def test_t_quantiles_are_students_two_sided_95_percent_and_never_too_small_beyond_30():
    assert t_quantile(1) == 12.706
    assert t_quantile(2) == 4.303
    assert t_quantile(4) == 2.776
    assert t_quantile(10) == 2.228
    assert t_quantile(30) == 2.042
    # Above 30: the row at or below df (t falls with df, so the interval errs wide): true t(31) = 2.040.
    assert t_quantile(31) == t_quantile(39) == 2.042
    assert t_quantile(40) == 2.021 and t_quantile(60) == 2.000 and t_quantile(500) == 1.980
    with pytest.raises(ValueError, match="df=0"):
        t_quantile(0)


def test_the_interval_is_mean_plus_minus_t_sd_over_root_n():
    values = [1.10, 1.20, 1.30]
    interval = t_interval(values)
    half = 4.303 * statistics.stdev(values) / math.sqrt(3)  # sd 0.1
    assert interval["mean"] == pytest.approx(1.2)
    assert interval["half_width"] == pytest.approx(half)
    assert (interval["low"], interval["high"]) == pytest.approx((1.2 - half, 1.2 + half))
    assert interval["n"] == 3
    one = t_interval([1.5])
    assert one["mean"] == 1.5 and one["half_width"] is None and one["low"] is None


def test_a_speedup_whose_interval_contains_1_is_no_difference_never_a_win():
    # Every seed faster, but the interval over 3 seeds reaches below 1: no difference.
    assert t_interval([1.02, 1.30, 1.05])["low"] < 1
    assert speedup_verdict(t_interval([1.02, 1.30, 1.05])) == NO_DIFFERENCE
    assert speedup_verdict(t_interval([1.20, 1.21, 1.19])) == FASTER
    assert speedup_verdict(t_interval([0.80, 0.82, 0.81])) == SLOWER
    assert speedup_verdict(t_interval([1.0, 1.0])) == NO_DIFFERENCE  # flat against itself
    assert speedup_verdict(t_interval([1.4])) == ONE_SEED


def curve(points: list[tuple[float, float]]) -> list[dict]:
    return [{"flops": x, "tokens": x, "target": loss} for x, loss in points]


def test_loss_at_interpolates_on_the_compute_axis_and_is_none_outside_the_curve():
    points = curve([(10, 5.0), (20, 4.0), (40, 3.0)])
    assert loss_at(points, 15, "flops") == pytest.approx(4.5)
    assert loss_at(points, 30, "flops") == pytest.approx(3.5)
    assert loss_at(points, 40, "flops") == 3.0
    assert loss_at(points, 10, "flops") == 5.0
    assert loss_at(points, 5, "flops") is None
    assert loss_at(points, 41, "flops") is None


def test_paired_against_flat_seed_by_seed():
    flat = [curve([(25, 6.0), (50, 5.0), (75, 4.5), (100, 4.0)]),
            curve([(25, 6.2), (50, 5.2), (75, 4.6), (100, 4.2)])]
    arm = [curve([(25, 5.4), (50, 4.5), (75, 4.2), (100, 3.9)]),  # ahead early, a little ahead at the end
           curve([(25, 5.5), (50, 5.0), (75, 4.6), (100, 4.3)])]  # ahead early, behind at the end
    result = paired(arm, flat, [0.8, None], "flops")
    # Seed 2 never gets to flat's final loss 4.2; flat reaches the arm's final 4.3 at 75 + (4.6-4.3)/(4.6-4.2)*25.
    assert result["speedup_per_seed"] == [pytest.approx(1.25), pytest.approx((75 + 0.75 * 25) / 100)]
    assert result["reached"] == 1 and result["wins"] == 1 and result["seeds"] == 2
    assert result["verdict"] == NO_DIFFERENCE
    at25 = result["loss_ratio_at"]["25%"]
    assert at25["per_seed"] == pytest.approx([5.4 / 6.0, 5.5 / 6.2])
    assert at25["mean"] == pytest.approx((5.4 / 6.0 + 5.5 / 6.2) / 2)
    assert at25["half_width"] == pytest.approx(12.706 * statistics.stdev([5.4 / 6.0, 5.5 / 6.2]) / math.sqrt(2))
    assert result["loss_ratio_at"]["100%"]["per_seed"] == pytest.approx([3.9 / 4.0, 4.3 / 4.2])
    assert result["loss_ratio_at"]["50%"]["per_seed"] == pytest.approx([4.5 / 5.0, 5.0 / 5.2])

    both = paired(arm, flat, [0.8, 0.9], "flops")
    speedups = [1 / 0.8, 1 / 0.9]
    assert both["speedup"]["mean"] == pytest.approx(statistics.fmean(speedups))
    assert both["speedup"]["half_width"] == pytest.approx(12.706 * statistics.stdev(speedups) / math.sqrt(2))
    assert both["verdict"] == NO_DIFFERENCE  # 2 seeds, t = 12.706: the interval holds 1


def test_the_loss_ratio_is_taken_at_a_share_of_the_smaller_total_between_evaluations():
    flat = [curve([(40, 6.0), (80, 4.0)])]
    arm = [curve([(30, 5.0), (60, 4.0), (81, 3.0)])]  # 1 FLOP more: matched within half an iteration
    at = paired(arm, flat, [0.9], "flops")["loss_ratio_at"]
    # 50% of min(81, 80) = 40: the arm between 30 and 60, flat at its first evaluation.
    assert at["50%"]["per_seed"] == pytest.approx([(5.0 - (10 / 30)) / 6.0])
    # 25% = 20 is before either curve's first evaluation: unknown, not guessed.
    assert at["25%"]["per_seed"] == [None] and at["25%"]["mean"] is None


def test_the_speedup_line_gives_the_interval_half_width_seeds_wins_and_verdict():
    flat = [curve([(50, 5.0), (100, 4.0)])] * 3
    arm = [curve([(50, 4.5), (100, 3.8)])] * 3
    pair = paired(arm, flat, [0.9, 0.8, 0.85], "flops")
    report = {"arms": {"curriculum": {"paired_vs_flat": pair}}}
    half = pair["speedup"]["half_width"]
    assert speedup_line(report) == (f"speedup_vs_flat={pair['speedup']['mean']:.3f}±{half:.3f} (95% t interval, "
                                    f"3 seeds, 3/3 wins: {pair['verdict']})")
    assert speedup_line(report, schedule="wsd").startswith("speedup_vs_flat[wsd]=")
    one = {"arms": {"curriculum": {"paired_vs_flat": paired(arm[:1], flat[:1], [0.8], "flops")}}}
    assert speedup_line(one) == "speedup_vs_flat=1.250 (1 seed: no interval, 1/1 wins)"
    behind = [curve([(50, 5.5), (100, 4.5)])] * 3  # flat reaches 4.5 halfway between its evaluations: 0.75x
    slower = paired(behind, flat, [None, None, None], "flops")
    assert slower["speedup_per_seed"] == [pytest.approx(0.75)] * 3 and slower["reached"] == 0
    assert slower["verdict"] == SLOWER
    assert speedup_line({"arms": {"curriculum": {"paired_vs_flat": slower}}}) == (
        "speedup_vs_flat=0.750±0.000 (95% t interval, 3 seeds, 0/3 wins: slower)")
    assert speedup_line({"arms": {"curriculum": {}}}) == "speedup_vs_flat=not measured (no flat arm)"


def test_the_ranking_orders_every_arm_and_schedule_on_mean_final_target_loss():
    def arms(**means: float) -> dict:
        return {"arms": {arm: {"final_target_loss": {"mean": m, "std": 0.01}} for arm, m in means.items()}}

    ranked = ranking({"per-stage": arms(curriculum=4.0, flat=4.2), "wsd": arms(curriculum=3.9, flat=4.1)})
    assert [(p["arm"], p["schedule"]) for p in ranked] == [
        ("curriculum", "wsd"), ("curriculum", "per-stage"), ("flat", "wsd"), ("flat", "per-stage")]
    assert ranked[0]["final_target_loss"] == 3.9
