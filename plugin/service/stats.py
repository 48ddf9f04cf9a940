"""Comparing the holdout with the tickets that got a suggestion, with confidence intervals.

A configurable share of eligible tickets gets no public suggestion (the holdout). Whatever differs
between the two groups afterwards — resolution time, agent replies per ticket, reopen rate — is the
assistant's effect, and these functions say how sure that is:

* a difference of means: Welch's t interval (unequal variances, Welch–Satterthwaite degrees of freedom);
* a difference of medians (resolution times are skewed): percentile bootstrap, seeded, so a report
  prints the same interval twice;
* a difference of proportions (reopen rate): Newcombe's hybrid score interval built from the two Wilson
  intervals (Newcombe 1998, method 10), which behaves at 0 and 1 where the Wald interval does not.

Differences are always ``treated − holdout``. Pure functions; fed from the outcome history later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats as _st


class Difference(BaseModel):
    """``estimate`` = group a − group b, with a two-sided interval at ``confidence``."""

    model_config = ConfigDict(frozen=True)

    metric: str
    method: str
    a: float
    b: float
    n_a: int
    n_b: int
    estimate: float
    low: float
    high: float
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly on one side of zero: a difference at this confidence."""
        return self.low > 0 or self.high < 0


def _check(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")


def _values(name: str, values: Sequence[float], least: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < least:
        raise ValueError(f"{name}: need at least {least} values, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite numbers")
    return arr


def welch(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, metric: str = "mean") -> Difference:
    """Difference of means with Welch's t interval."""
    _check(confidence)
    x, y = _values("group a", a, 2), _values("group b", b, 2)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff = float(x.mean() - y.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        low = high = diff
    else:
        df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
        t = float(_st.t.ppf(0.5 + confidence / 2, df))
        low, high = diff - t * se, diff + t * se
    return Difference(
        metric=metric, method="Welch t", a=float(x.mean()), b=float(y.mean()), n_a=len(x), n_b=len(y),
        estimate=diff, low=low, high=high, confidence=confidence,
    )


def welch_df(a: Sequence[float], b: Sequence[float]) -> float:
    """The Welch–Satterthwaite degrees of freedom (exposed for checking)."""
    x, y = _values("group a", a, 2), _values("group b", b, 2)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    return float((va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1)))


def bootstrap_median(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
    metric: str = "median",
) -> Difference:
    """Difference of medians with a percentile bootstrap interval (each group resampled on its own)."""
    _check(confidence)
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    x, y = _values("group a", a, 1), _values("group b", b, 1)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    # Resample in blocks of at most ~4 M values: bounded memory for big groups (a year of tickets).
    step = max(1, min(1000, 4_000_000 // max(len(x), len(y))))
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        mx = np.median(x[rng.integers(0, len(x), size=(k, len(x)))], axis=1)
        my = np.median(y[rng.integers(0, len(y), size=(k, len(y)))], axis=1)
        diffs[start : start + k] = mx - my
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Difference(
        metric=metric, method=f"percentile bootstrap ({resamples} resamples)", a=float(np.median(x)),
        b=float(np.median(y)), n_a=len(x), n_b=len(y), estimate=float(np.median(x) - np.median(y)),
        low=float(low), high=float(high), confidence=confidence,
    )


def wilson(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    _check(confidence)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return max(0.0, (centre - spread) / denom), min(1.0, (centre + spread) / denom)


def newcombe(
    x_a: int, n_a: int, x_b: int, n_b: int, *, confidence: float = 0.95, metric: str = "proportion"
) -> Difference:
    """Difference of two independent proportions, Newcombe's hybrid score interval (method 10)."""
    l1, u1 = wilson(x_a, n_a, confidence=confidence)
    l2, u2 = wilson(x_b, n_b, confidence=confidence)
    p1, p2 = x_a / n_a, x_b / n_b
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(
        metric=metric, method="Newcombe hybrid score (Wilson)", a=p1, b=p2, n_a=n_a, n_b=n_b,
        estimate=d, low=low, high=high, confidence=confidence,
    )


class GroupOutcomes(BaseModel):
    """What happened to the tickets of one group (one value per ticket)."""

    model_config = ConfigDict(frozen=True)

    resolution_hours: list[float]
    agent_replies: list[float]
    reopened: list[bool]


class HoldoutComparison(BaseModel):
    """Suggested (treated) versus holdout; every difference is treated − holdout."""

    model_config = ConfigDict(frozen=True)

    treated: int
    holdout: int
    resolution_mean_hours: Difference | None
    resolution_median_hours: Difference | None
    agent_replies_per_ticket: Difference | None
    reopen_rate: Difference | None
    #: Why a metric is missing (too few tickets in a group).
    notes: list[str]


def compare_groups(
    treated: GroupOutcomes, holdout: GroupOutcomes, *, confidence: float = 0.95, seed: int = 0,
    resamples: int = 10_000,
) -> HoldoutComparison:
    """All four holdout metrics; a metric a group has too few values for is None, with a note."""
    notes: list[str] = []

    def need(name: str, xs: Sequence[object], ys: Sequence[object], least: int) -> bool:
        if len(xs) >= least and len(ys) >= least:
            return True
        notes.append(f"{name}: needs at least {least} tickets in each group (have {len(xs)} and {len(ys)})")
        return False

    th, hh = treated.resolution_hours, holdout.resolution_hours
    mean = welch(th, hh, confidence=confidence, metric="resolution time, mean (h)") if need(
        "resolution time", th, hh, 2) else None
    median = bootstrap_median(th, hh, confidence=confidence, seed=seed, resamples=resamples,
                              metric="resolution time, median (h)") if mean is not None else None
    replies = None
    if need("agent replies", treated.agent_replies, holdout.agent_replies, 2):
        replies = welch(treated.agent_replies, holdout.agent_replies, confidence=confidence,
                        metric="agent replies per ticket")
    reopen = None
    if need("reopen rate", treated.reopened, holdout.reopened, 1):
        reopen = newcombe(sum(treated.reopened), len(treated.reopened), sum(holdout.reopened),
                          len(holdout.reopened), confidence=confidence, metric="reopen rate")
    return HoldoutComparison(
        treated=len(treated.reopened), holdout=len(holdout.reopened), resolution_mean_hours=mean,
        resolution_median_hours=median, agent_replies_per_ticket=replies, reopen_rate=reopen, notes=notes,
    )
