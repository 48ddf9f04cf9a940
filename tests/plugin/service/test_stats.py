"""Holdout statistics against hand-computed and published values.

Wilson and Newcombe: the worked examples of Newcombe, "Two-sided confidence intervals for the single
proportion" and "Interval estimation for the difference between independent proportions" (Statistics
in Medicine 17, 1998), Table II, method 10, to the 4 decimals printed there.
"""

from __future__ import annotations

import math

import pytest

from plugin.service.stats import (
    GroupOutcomes,
    bootstrap_median,
    compare_groups,
    newcombe,
    welch,
    welch_df,
    wilson,
)


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_1998(x: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(x, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [
        ((56, 70, 48, 80), 0.0524, 0.3339),
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((6, 7, 2, 7), 0.0582, 0.8062),
        ((5, 56, 0, 29), -0.0381, 0.1926),
        ((0, 10, 0, 20), -0.1611, 0.2775),
        ((0, 10, 0, 10), -0.2775, 0.2775),
        ((10, 10, 0, 20), 0.6791, 1.0),
        ((10, 10, 0, 10), 0.6075, 1.0),
    ],
)
def test_newcombe_matches_newcombe_1998(counts: tuple[int, int, int, int], low: float, high: float) -> None:
    d = newcombe(*counts)
    assert d.estimate == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (round(d.low, 4), round(d.high, 4)) == (low, high)


def test_welch_by_hand() -> None:
    # a: mean 3, variance 2.5 (n 5); b: mean 4, variance 4 (n 3).
    # se² = 2.5/5 + 4/3 = 1.8333; df = 1.8333² / (0.5²/4 + 1.3333²/2) = 3.3611 / 0.95139 = 3.5328
    a, b = [1, 2, 3, 4, 5], [2, 4, 6]
    d = welch(a, b)
    assert (d.a, d.b, d.estimate) == (3.0, 4.0, -1.0)
    assert welch_df(a, b) == pytest.approx(3.5328467, abs=1e-6)
    se = math.sqrt(2.5 / 5 + 4 / 3)
    half = (d.high - d.low) / 2
    t = half / se  # t(0.975, df 3.5328): between the table's 3.182 (df 3) and 2.776 (df 4)
    assert 2.776 < t < 3.182
    assert t == pytest.approx(2.9274, abs=1e-4)
    assert d.low == pytest.approx(-4.9637, abs=1e-4) and d.high == pytest.approx(2.9637, abs=1e-4)
    assert not d.excludes_zero


def test_welch_with_no_spread_is_a_point() -> None:
    d = welch([2, 2, 2], [1, 1])
    assert (d.estimate, d.low, d.high) == (1.0, 1.0, 1.0)
    assert d.excludes_zero


def test_bootstrap_median_by_hand_and_seeded() -> None:
    constant = bootstrap_median([5, 5, 5], [2, 2, 2, 2])
    assert (constant.estimate, constant.low, constant.high) == (3.0, 3.0, 3.0)
    a = [1.0, 2, 3, 4, 5]  # median 3
    b = [10.0, 11, 12, 13, 14, 15]  # median 12.5
    d = bootstrap_median(a, b, resamples=2000, seed=7)
    assert (d.a, d.b, d.estimate) == (3.0, 12.5, -9.5)
    # A resampled median of a lies in [1, 5], of b in [10, 15]: every difference in [-14, -5].
    assert -14 <= d.low <= d.estimate <= d.high <= -5
    assert d.excludes_zero
    assert d == bootstrap_median(a, b, resamples=2000, seed=7)  # the same interval twice


def test_bootstrap_median_covers_zero_for_the_same_distribution() -> None:
    xs = [float(i % 17) for i in range(200)]
    d = bootstrap_median(xs, list(reversed(xs)), resamples=1000)
    assert d.estimate == 0.0 and d.low <= 0 <= d.high


@pytest.mark.parametrize(
    "call",
    [
        lambda: wilson(3, 0),
        lambda: wilson(5, 4),
        lambda: welch([1], [1, 2]),
        lambda: welch([1, 2], [1, float("nan")]),
        lambda: welch([1, 2], [1, 2], confidence=1.0),
        lambda: bootstrap_median([], [1.0]),
        lambda: bootstrap_median([1.0], [1.0], resamples=10),
    ],
)
def test_bad_input_is_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


def test_compare_groups() -> None:
    treated = GroupOutcomes(resolution_hours=[1, 2, 3, 4, 5], agent_replies=[0, 0, 1, 1, 0],
                            reopened=[False, False, True, False, False])
    holdout = GroupOutcomes(resolution_hours=[2, 4, 6], agent_replies=[1, 2, 1], reopened=[False, True, True])
    c = compare_groups(treated, holdout)
    assert (c.treated, c.holdout) == (5, 3)
    assert c.resolution_mean_hours is not None and c.resolution_mean_hours.estimate == -1.0
    assert c.resolution_median_hours is not None and c.resolution_median_hours.estimate == -1.0  # 3 - 4
    assert c.agent_replies_per_ticket is not None
    assert c.agent_replies_per_ticket.estimate == pytest.approx(0.4 - 4 / 3)
    assert c.reopen_rate is not None and c.reopen_rate.estimate == pytest.approx(0.2 - 2 / 3)
    assert c.notes == []


def test_compare_groups_says_what_is_missing() -> None:
    tiny = GroupOutcomes(resolution_hours=[1.0], agent_replies=[1.0], reopened=[False])
    c = compare_groups(tiny, tiny)
    assert c.resolution_mean_hours is None and c.agent_replies_per_ticket is None
    assert c.reopen_rate is not None
    assert any("resolution time" in n for n in c.notes)
