"""Gaps between two variants: the `Gap` type and its sampling distribution (`Spread`), bootstrap
p-values, intervals at any level, Holm, McNemar, tie groups, the seed / test-sample split.

The pieces of `significance` that need no resampling of their own: they turn resampled
differences (or per-seed gaps and variances) into intervals and p-values, correct p-values for
multiplicity and split a variant's spread into seed and test-sample parts. Conventions are
stated in `significance`.

Intervals and p-values are duals. For a family of m comparisons at level alpha,
`Spread.interval(observed, alpha, m)` is the Bonferroni-simultaneous interval: from bootstrap
draws it is the pair of order statistics [d_(k), d_(B-1-k)] with k the largest count for which
m * p(k) < alpha, where p(k) = min(1, 2 (1 + k) / (B + 1)) is the bootstrap p-value of a tail
of k draws, so the interval excludes 0 exactly when m * p < alpha; from a t it is
observed ± t_{1 - alpha / (2m), df} * se, which excludes 0 exactly when m * p < alpha too. Holm's
adjusted p-value is at most m * p, so a comparison Holm does not reject (p_holm >= alpha) always
has a Bonferroni interval that contains 0: a tie mark never sits beside an interval that
excludes 0. (Holm rejects more: a "different" verdict may sit beside an interval touching 0.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as sps

TEST_SAMPLE = "test sample"
TEST_SAMPLE_AND_SEEDS = "test sample and seeds"

# How seed noise enters a gap (`significance` picks by the seeds of the two sides).
BY_EXAMPLES = "bootstrap over test examples"  # one seed per side
BY_SEED_T = "t over seeds + example bootstrap"  # a side with 2 to SEED_T_MAX seeds
BY_TWO_LEVELS = "two-level bootstrap"  # every side with seeds has more than SEED_T_MAX
MIXED = "mixed"  # a mean over tasks whose gaps were estimated in different ways
# With fewer seeds than this, resampling the seeds sees too few distinct combinations (3 seeds
# paired by index: 10) to stand for seed noise; their variance enters a t instead.
SEED_T_MAX = 4


def tail_p(tail: int, n_draws: int) -> float:
    """Two-sided bootstrap p-value of a tail of ``tail`` draws out of ``n_draws``."""
    return min(1.0, 2 * (1 + tail) / (n_draws + 1))


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value that the resampled differences ``diffs`` are centred on 0."""
    tail = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    return tail_p(tail, len(diffs))


def order_index(n_draws: int, alpha: float = 0.05, family: int = 1) -> int:
    """The largest tail k with ``family * tail_p(k, n_draws) < alpha`` (-1 when there is none):
    the interval of `draws_interval` runs from the k-th to the (B-1-k)-th sorted draw."""
    k = min(int(alpha * (n_draws + 1) / (2 * family)), (n_draws - 1) // 2)
    while k >= 0 and not family * tail_p(k, n_draws) < alpha:  # the p-value's own arithmetic
        k -= 1
    return k


def draws_interval(diffs: np.ndarray, alpha: float = 0.05, family: int = 1) -> tuple[float, float]:
    """The interval of ``diffs`` dual to `bootstrap_p`: excludes 0 iff family * p < alpha;
    unbounded when too few draws reach that level."""
    n = len(diffs)
    k = order_index(n, alpha, family)
    if k < 0:
        return -math.inf, math.inf
    low, high = np.partition(diffs, [k, n - 1 - k])[[k, n - 1 - k]]
    return float(low), float(high)


@dataclass(frozen=True)
class Spread:
    """How an estimate would vary: bootstrap ``draws`` (B,), or variance ``components``
    [(variance, degrees of freedom)] of a t (inf for the test-sample part, whose bootstrap
    variance is known to any precision), combined by Welch-Satterthwaite."""

    draws: np.ndarray | None = None
    components: tuple[tuple[float, float], ...] = ()

    @property
    def variance(self) -> float:
        if self.draws is not None:
            return float(self.draws.var(ddof=1)) if len(self.draws) > 1 else 0.0
        return float(sum(v for v, _ in self.components))

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom of the t (inf for bootstrap draws)."""
        if self.draws is not None:
            return math.inf
        den = sum(v * v / d for v, d in self.components if math.isfinite(d) and d > 0)
        return self.variance**2 / den if den > 0 else math.inf

    def p_value(self, observed: float) -> float:
        if self.draws is not None:
            return bootstrap_p(self.draws)
        se = math.sqrt(self.variance)
        if se == 0:
            return 1.0 if observed == 0 else 0.0
        return float(min(1.0, 2 * _sf(abs(observed) / se, self.df)))

    def interval(
        self, observed: float, alpha: float = 0.05, family: int = 1
    ) -> tuple[float, float]:
        """The (1 - alpha / family) interval; see the module docstring for its duality."""
        if self.draws is not None:
            return draws_interval(self.draws, alpha, family)
        se = math.sqrt(self.variance)
        half = float(_ppf(1 - alpha / (2 * family), self.df)) * se if se > 0 else 0.0
        low, high = observed - half, observed + half
        if family * self.p_value(observed) >= alpha:  # ppf and sf disagree in the last bit
            low, high = min(low, 0.0), max(high, 0.0)
        return low, high


def seed_t_spread(per_seed: Sequence[np.ndarray], sample: np.ndarray) -> Spread:
    """A t for 2-4 seeds, without resampling them: per side (or per pair of seeds), the variance
    of its per-seed values / S with S - 1 degrees of freedom, plus the bootstrap variance of the
    estimate over test examples, ``sample`` (B,) (the same resamples for every seed)."""
    comps = [(float(np.var(s, ddof=1)) / len(s), len(s) - 1.0) for s in per_seed if len(s) > 1]
    b = float(sample.var(ddof=1)) if len(sample) > 1 else 0.0
    return Spread(components=(*comps, (b, math.inf)))


def mean_spread(spreads: Sequence[Spread]) -> Spread:
    """The spread of the mean of independent estimates (tasks: independent test sets): the mean
    of their draws when all are bootstrap draws, else variance components / len² each."""
    if all(s.draws is not None for s in spreads) and len({len(s.draws) for s in spreads}) == 1:
        return Spread(draws=np.mean([s.draws for s in spreads], axis=0))
    n2 = float(len(spreads)) ** 2
    comps: list[tuple[float, float]] = []
    for s in spreads:
        parts = s.components if s.draws is None else ((s.variance, math.inf),)
        comps += [(v / n2, d) for v, d in parts]
    return Spread(components=tuple(comps))


@dataclass(frozen=True)
class Gap:
    """metric(a) - metric(b): a 95% interval and a two-sided p-value, and, once it belongs to a
    family of comparisons (`in_family`), the Holm-adjusted p and the Bonferroni interval.

    ``covers`` names the noise the interval accounts for: "test sample" (one seed per side) or
    "test sample and seeds"; ``method`` how (`BY_EXAMPLES`, `BY_SEED_T`, `BY_TWO_LEVELS`).
    ``family`` is the number of comparisons of the family, ``p_adjusted`` the Holm-corrected
    p-value over it (NaN outside one), and [``sim_low``, ``sim_high``] the interval at level
    1 - 0.05 / family, the one to print beside a tie decision (the 95% one for a family of 1).
    Every number is NaN where a side has no predictions.
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
    method: str = ""
    family: int = 1
    sim_low: float = math.nan
    sim_high: float = math.nan
    spread: Spread | None = field(default=None, compare=False, repr=False)

    @classmethod
    def missing(cls) -> Gap:
        """A gap that cannot be computed (a side without predictions)."""
        return cls(math.nan, math.nan, math.nan, math.nan, 0, 0, False, "")

    def significant(self, alpha: float = 0.05) -> bool:
        """Holm-adjusted p below alpha when adjusted, else the raw p; False without evidence."""
        p = self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted
        return bool(p < alpha)

    def in_family(self, family: int, p_adjusted: float, alpha: float = 0.05) -> Gap:
        """This gap as one of ``family`` comparisons: Holm p and the Bonferroni interval."""
        low, high = (math.nan, math.nan)
        if self.spread is not None:
            low, high = self.spread.interval(self.observed, alpha, max(family, 1))
        return replace(self, family=family, p_adjusted=p_adjusted, sim_low=low, sim_high=high)


def gap_from_spread(
    spread: Spread, observed: float, n_seeds_a: int, n_seeds_b: int, paired: bool, method: str
) -> Gap:
    """A `Gap` from the spread of the difference: its 95% interval and p-value."""
    low, high = spread.interval(observed)
    covers = TEST_SAMPLE if n_seeds_a == n_seeds_b == 1 else TEST_SAMPLE_AND_SEEDS
    p = spread.p_value(observed)
    return Gap(
        float(observed),
        low,
        high,
        p,
        n_seeds_a,
        n_seeds_b,
        paired,
        covers,
        method=method,
        sim_low=low,
        sim_high=high,
        spread=spread,
    )


def gap_from_draws(
    diffs: np.ndarray, observed: float, n_seeds_a: int, n_seeds_b: int, paired: bool
) -> Gap:
    """A `Gap` from resampled differences ``diffs`` (B,): `draws_interval` and bootstrap p."""
    one = n_seeds_a == n_seeds_b == 1
    method = BY_EXAMPLES if one else BY_TWO_LEVELS
    return gap_from_spread(Spread(draws=diffs), observed, n_seeds_a, n_seeds_b, paired, method)


def mean_gap(gaps: Sequence[Gap]) -> Gap:
    """The mean of gaps on independent test sets (tasks), with the spread of the mean."""
    methods = {g.method for g in gaps}
    return gap_from_spread(
        mean_spread([g.spread for g in gaps]),
        float(np.mean([g.observed for g in gaps])),
        min(g.n_seeds_a for g in gaps),
        min(g.n_seeds_b for g in gaps),
        all(g.paired_seeds for g in gaps),
        methods.pop() if len(methods) == 1 else MIXED,
    )


def resampled_diffs(
    res_a: np.ndarray, res_b: np.ndarray, seed: int, pair_seeds: bool
) -> tuple[np.ndarray, bool]:
    """(B,) resampled differences of seed means from per-seed metrics on shared example
    resamples ``res_*`` (S, B), seeds drawn with replacement, and whether in pairs."""
    (sa, n_boot), sb = res_a.shape, res_b.shape[0]
    rng = np.random.default_rng([seed, 1])
    paired = pair_seeds and sa == sb and sa > 1
    draw_a = rng.integers(0, sa, size=(n_boot, sa))
    draw_b = draw_a if paired else rng.integers(0, sb, size=(n_boot, sb))
    cols = np.arange(n_boot)[:, None]
    return res_a[draw_a, cols].mean(axis=1) - res_b[draw_b, cols].mean(axis=1), paired


def family_gaps(gaps: Mapping[str, Gap], alpha: float = 0.05) -> dict[str, Gap]:
    """The gaps as one family: each with its Holm-adjusted p and Bonferroni interval over the
    comparisons that have evidence (NaN p-values stay out of the family)."""
    names = list(gaps)
    adjusted = holm([gaps[v].p_value for v in names])
    m = int(np.isfinite(adjusted).sum())
    return {v: gaps[v].in_family(m, float(p), alpha) for v, p in zip(names, adjusted)}


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


# scipy's unfrozen calls: freezing sps.t(df) builds a docstring each time (10 s in a 17-variant
# report on 2 shared cores), the plain call does the same arithmetic
def _sf(x: float, df: float) -> float:
    return float(sps.norm.sf(x) if math.isinf(df) else sps.t.sf(x, df))


def _ppf(q: float, df: float) -> float:
    return float(sps.norm.ppf(q) if math.isinf(df) else sps.t.ppf(q, df))
