"""Small statistics used by the report: seed summaries, paired tests, Pareto frontiers.

Conventions (stated in the report too): standard deviations are sample standard deviations
(ddof=1, NaN for a single seed); 95% intervals use the t distribution with n-1 degrees of freedom
and are given only for 3+ seeds, where they mean something.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class SeedSummary:
    """Mean, spread and 95% interval of one quantity over seeds."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float]) -> SeedSummary:
    """Summarize finite values: mean, std (ddof=1) and a t interval when n >= 3."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(arr)
    if n == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n >= 2 else math.nan
    if n >= 3:
        half = float(sps.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        return SeedSummary(n, mean, std, mean - half, mean + half)
    return SeedSummary(n, mean, std, math.nan, math.nan)


@dataclass(frozen=True)
class PairedResult:
    """A difference a - b paired by seed (points), with a paired t-test when possible."""

    n_pairs: int
    mean_diff: float
    std_diff: float
    t_stat: float
    p_value: float

    @property
    def testable(self) -> bool:
        """A paired t-test needs two pairs and some spread in the differences."""
        return self.n_pairs >= 2 and math.isfinite(self.p_value)

    def verdict(self, alpha: float = 0.05) -> str:
        """A plain-language reading of the test, for tables."""
        if self.n_pairs == 0:
            return "no common seeds"
        if self.n_pairs == 1:
            return "1 seed: no test possible"
        if not self.testable:
            return "identical differences: no test"
        if self.p_value < alpha:
            return f"p={self.p_value:.3g}, significant"
        return f"p={self.p_value:.3g}, within noise"


def paired(a: Sequence[float], b: Sequence[float]) -> PairedResult:
    """Paired comparison of equally long sequences a and b (already aligned by seed)."""
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    n = len(diffs)
    if n == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(diffs.mean())
    if n == 1:
        return PairedResult(1, mean, math.nan, math.nan, math.nan)
    std = float(diffs.std(ddof=1))
    if std == 0.0:
        return PairedResult(n, mean, 0.0, math.nan, math.nan)
    # ttest_rel(a, b) is the one-sample t-test of the differences against 0.
    res = sps.ttest_1samp(diffs, 0.0)
    return PairedResult(n, mean, std, float(res.statistic), float(res.pvalue))


def paired_by_seed(a: Mapping[Any, float], b: Mapping[Any, float]) -> PairedResult:
    """`paired` on the seeds two {seed: score} maps share, taken in the order of their names."""
    common = sorted(set(a) & set(b), key=str)
    return paired([a[s] for s in common], [b[s] for s in common])


def pareto_mask(cost: Sequence[float], quality: Sequence[float]) -> list[bool]:
    """True where no other point is at least as cheap and as good, and strictly better in one.

    Lower cost and higher quality are better; points with a NaN in either are never optimal.
    """
    c = np.asarray(cost, dtype=float)
    q = np.asarray(quality, dtype=float)
    ok = np.isfinite(c) & np.isfinite(q)
    out = []
    for i in range(len(c)):
        if not ok[i]:
            out.append(False)
            continue
        dominated = ok & (c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))
        out.append(not bool(dominated.any()))
    return out


def rank_desc(values: Sequence[float]) -> list[float]:
    """Rank 1 = highest value; ties share the average rank; NaN stays NaN."""
    arr = np.asarray(values, dtype=float)
    out = np.full(len(arr), math.nan)
    ok = np.isfinite(arr)
    if ok.any():
        out[ok] = sps.rankdata(-arr[ok], method="average")
    return out.tolist()
