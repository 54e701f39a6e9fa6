"""Gaps between two variants: the `Gap` type, bootstrap p-values, Holm, McNemar, tie groups.

The pieces of `significance` that need no resampling of their own: they turn resampled
differences into intervals and p-values, correct p-values for multiplicity and split a
variant's spread into seed and test-sample parts. Conventions are stated in `significance`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

TEST_SAMPLE = "test sample"
TEST_SAMPLE_AND_SEEDS = "test sample and seeds"


@dataclass(frozen=True)
class Gap:
    """metric(a) - metric(b) with a 95% bootstrap interval and a two-sided bootstrap p-value.

    ``covers`` names the noise the interval accounts for: "test sample" (one seed per side) or
    "test sample and seeds". ``p_adjusted`` is Holm-corrected over a family (set by
    `compare_task`; NaN otherwise). Every number is NaN where a side has no predictions.
    """

    observed: float
    low: float
    high: float
    p_value: float
    n_seeds_a: int
    n_seeds_b: int
    paired_seeds: bool
    covers: str
    p_adjusted: float = math.nan

    @classmethod
    def missing(cls) -> Gap:
        """A gap that cannot be computed (a side without predictions)."""
        return cls(math.nan, math.nan, math.nan, math.nan, 0, 0, False, "")

    def significant(self, alpha: float = 0.05) -> bool:
        """Holm-adjusted p below alpha when adjusted, else the raw p; False without evidence."""
        p = self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted
        return bool(p < alpha)


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value that the resampled differences ``diffs`` are centred on 0."""
    tail = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    return min(1.0, 2 * (1 + tail) / (len(diffs) + 1))


def resampled_diffs(
    res_a: np.ndarray, res_b: np.ndarray, seed: int, pair_seeds: bool
) -> tuple[np.ndarray, bool]:
    """(B,) resampled differences of seed means from per-seed metrics on shared example
    resamples ``res_*`` (S, B), and whether seeds were drawn in pairs."""
    (sa, n_boot), sb = res_a.shape, res_b.shape[0]
    rng = np.random.default_rng([seed, 1])
    paired = pair_seeds and sa == sb and sa > 1
    draw_a = rng.integers(0, sa, size=(n_boot, sa))
    draw_b = draw_a if paired else rng.integers(0, sb, size=(n_boot, sb))
    cols = np.arange(n_boot)[:, None]
    return res_a[draw_a, cols].mean(axis=1) - res_b[draw_b, cols].mean(axis=1), paired


def gap_from_draws(
    diffs: np.ndarray, observed: float, n_seeds_a: int, n_seeds_b: int, paired: bool
) -> Gap:
    """A `Gap` from resampled differences ``diffs`` (B,): percentile interval and bootstrap p.

    Also the way to combine tasks: the mean over tasks of their (independent) draws is the
    bootstrap distribution of the mean gap over those tasks.
    """
    low, high = np.percentile(diffs, [2.5, 97.5])
    one = n_seeds_a == n_seeds_b == 1
    covers = TEST_SAMPLE if one else TEST_SAMPLE_AND_SEEDS
    return Gap(
        float(observed),
        float(low),
        float(high),
        bootstrap_p(diffs),
        n_seeds_a,
        n_seeds_b,
        paired,
        covers,
    )


def mcnemar_exact(
    preds_a: np.ndarray, preds_b: np.ndarray, labels: np.ndarray
) -> tuple[int, int, float]:
    """Exact McNemar test on per-example correctness: (b, c, two-sided p).

    b counts examples a gets right and b wrong, c the reverse; p is the exact binomial test of
    b successes in b + c trials at 0.5 (1.0 when b + c == 0).
    """
    right_a = np.asarray(preds_a) == np.asarray(labels)
    right_b = np.asarray(preds_b) == np.asarray(labels)
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    if b + c == 0:
        return b, c, 1.0
    # Symmetric at 0.5, so "as or less likely" is the smaller tail on both sides.
    return b, c, float(min(1.0, 2 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, monotone and capped at 1; NaN passes through
    (and does not count towards the family size)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def tie_group(adjusted_p_vs_best: Mapping[str, float], best: str, alpha: float = 0.05) -> list[str]:
    """Variants that cannot be told apart from ``best`` at Holm-corrected level ``alpha``.

    ``adjusted_p_vs_best`` maps variants to their Holm-adjusted p-value against the best; NaN
    (no evidence) keeps a variant out. The best is always in its own group, listed first.
    """
    return [best] + [v for v, p in adjusted_p_vs_best.items() if v != best and p >= alpha]


@dataclass(frozen=True)
class VarianceSplit:
    """Spread of one variant's score: retraining with another seed vs drawing another test set.

    A single run's score moves by about ``seed_sd`` when retrained with another seed and by
    about ``test_sample_sd`` when scored on another test set of the same size;
    ``seed_share`` = seed_sd² / (seed_sd² + test_sample_sd²) is the part of that total variance
    due to seeds. (The seeds share one test set, so their spread holds no test-sample noise.)
    """

    n_seeds: int
    mean: float
    seed_sd: float
    test_sample_sd: float
    seed_share: float
    test_sample_share: float


def variance_from(obs: np.ndarray, res: np.ndarray) -> VarianceSplit:
    """`VarianceSplit` from per-seed scores ``obs`` (S,) and their resamples ``res`` (S, B)."""
    test_sd = float(res.std(axis=1, ddof=1).mean())
    seed_sd = float(obs.std(ddof=1)) if len(obs) > 1 else math.nan
    total = seed_sd**2 + test_sd**2
    share = seed_sd**2 / total if total > 0 else math.nan
    return VarianceSplit(len(obs), float(obs.mean()), seed_sd, test_sd, share, 1 - share)
