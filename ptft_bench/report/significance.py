"""Is a gap between two variants real? Bootstrap intervals and tests on per-example predictions.

Everything here works on predictions aligned with one task's test labels, in metric units
(fractions, as `ptft_bench.metrics` returns them). Resampling is vectorised: a bootstrap draw of
test examples is a row of per-example counts, and every metric is a function of weighted sums
over those rows (confusion counts, moments, ranks within the draw), so no Python loop runs over
resamples. Everything is deterministic for a given ``seed``.

Conventions:

- Intervals are 95% percentile intervals of the resampled statistic.
- Bootstrap p-values are two-sided, over the B resampled differences d*:
  ``p = min(1, 2 * (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1))``. Resamples exactly at 0 count
  on both sides (conservative for discrete metrics); p < 0.05 goes with 0 outside the interval.
- With fewer than ~20 test examples on which the two sides differ the bootstrap p-value is too
  small (5 extra errors and nothing else: bootstrap p ~ 2 e^-5 = 0.013, exact McNemar 0.063);
  McNemar's exact test is the one to quote for accuracy there.
- Several seeds: rows of a (S, n) array are runs with different seeds; when both sides have the
  same number of rows, row i on each side is taken to be the same seed (same data order and
  head initialisation), and seeds are resampled in pairs, as `stats.paired` pairs by seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as sps

from ptft_bench.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
TEST_SAMPLE = "test sample"
TEST_SAMPLE_AND_SEEDS = "test sample and seeds"


# --- metrics on resamples -------------------------------------------------------------------


# Resamples are processed in blocks of about this many (resample, example) cells, 32 MiB of
# float64, so that a 40,000-example test set (QQP) does not need gigabytes at once.
BLOCK_CELLS = 2**22


def bootstrap_indices(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) indices of test examples drawn with replacement, reproducible from ``seed``."""
    return np.random.default_rng([seed, 0]).integers(0, n, size=(n_boot, n))


def _index_blocks(n: int, n_boot: int, seed: int):
    # Drawing row blocks from one generator yields exactly the rows of bootstrap_indices.
    rng, rows = np.random.default_rng([seed, 0]), max(1, BLOCK_CELLS // n)
    for start in range(0, n_boot, rows):
        yield rng.integers(0, n, size=(min(rows, n_boot - start), n))


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each example appears in each resample: (B, n) floats (exact integers)."""
    n_boot = idx.shape[0]
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _classification(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    # Per class k: true count t_k, predicted count p_k and hits tp_k, each a matrix product of
    # the counts with one-hot columns, (S, B, K). The confusion counts need nothing more.
    (s, n), k = preds.shape, max(int(labels.max()), int(preds.max()), 1) + 1
    eye = np.eye(k)
    onehot = eye[preds]  # (S, n, K)
    hits = onehot * (preds == labels)[..., None]

    def weighted(m):
        return (w @ m.transpose(1, 0, 2).reshape(n, s * k)).reshape(-1, s, k).transpose(1, 0, 2)

    t, p, tp = (w @ eye[labels])[None], weighted(onehot), weighted(hits)
    total = w.sum(axis=1)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return tp.sum(axis=2) / total
        if metric == "f1":
            den = t[..., 1] + p[..., 1]
            return np.where(den > 0, 2 * tp[..., 1] / den, 0.0)
        if metric == "f1_macro":
            # sklearn averages over the classes present in the resample's labels or predictions.
            den = t + p
            f1 = np.where(den > 0, 2 * tp / den, 0.0)
            return f1.sum(axis=2) / (den > 0).sum(axis=2)
        # Matthews, multi-class form as sklearn computes it; 0 when a side has a single class.
        cov_tp = tp.sum(axis=2) * total - (t * p).sum(axis=2)
        cov_pp = total**2 - (p * p).sum(axis=2)
        cov_tt = total**2 - (t * t).sum(axis=2)
        den = cov_pp * cov_tt
        return np.where(den > 0, cov_tp / np.sqrt(den), 0.0)


def _ranks(values: np.ndarray, w: np.ndarray):
    """Average ranks within each resample per distinct value, centred on (n+1)/2, (B, m); the
    draws of each distinct value, (B, m); and each example's distinct-value index, (n,)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    g = w[:, order]
    if len(uniq) < len(values):
        g = np.add.reduceat(g, np.searchsorted(inverse[order], np.arange(len(uniq))), axis=1)
    # A value's g copies hold ranks below+1 .. below+g, whose mean is below + (g + 1) / 2;
    # centred: cumsum - g / 2 - n / 2, computed in place (this is the hot loop of Spearman).
    ranks = np.cumsum(g, axis=1)
    ranks -= 0.5 * g
    ranks -= w.sum(axis=1, keepdims=True) / 2
    return ranks, g, inverse


def _correlation(cov, var_x, var_y, constant):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(var_x * var_y)
    return np.where(constant | ~np.isfinite(r), 0.0, np.clip(r, -1.0, 1.0))


def _standardise(values: np.ndarray) -> np.ndarray:
    # Correlation ignores location and scale; centring keeps the one-pass moments accurate.
    centred = values - values.mean(axis=-1, keepdims=True)
    sd = centred.std(axis=-1, keepdims=True)
    return centred / np.where(sd > 0, sd, 1.0)


def _constant(x: np.ndarray, w: np.ndarray, single: np.ndarray) -> np.ndarray:
    """Which resamples drew a single value of ``x``: with distinct values, those that drew one
    example n times (``single``); an exact check, as metrics.py tests ``ptp == 0``."""
    if len(np.unique(x)) == len(x):
        return single
    g = _ranks(x, w)[1]
    return g.max(axis=1) == w.sum(axis=1)


def _pearson(preds, labels, w, y_const, single):
    # One matrix product per moment for all seeds at once: (B, S).
    n = w.sum(axis=1)[:, None]
    x, y = _standardise(preds), _standardise(labels)
    mx, my = (w @ x.T) / n, (w @ y)[:, None] / n
    cov = (w @ (x * y).T) / n - mx * my
    var_x, var_y = (w @ (x * x).T) / n - mx**2, (w @ (y * y))[:, None] / n - my**2
    constant = np.stack([_constant(row, w, single) for row in preds], axis=1) | y_const[:, None]
    return _correlation(cov, var_x, var_y, constant).T


def _regression(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    n = w.sum(axis=1)
    ry, gy, y_inv = _ranks(labels, w)
    y_const = gy.max(axis=1) == n
    out = np.zeros((len(preds), len(w)))
    if metric != "spearman":
        out += _pearson(preds, labels, w, y_const, w.max(axis=1) == n)
    if metric != "pearson":
        # Spearman is Pearson on ranks; centred ranks have mean 0 in every resample.
        wry, var_y = w * ry[:, y_inv], (gy * ry**2).sum(axis=1) / n
        for i, x in enumerate(preds):  # a loop over seeds, not resamples
            rx, gx, x_inv = _ranks(x, w)
            cov = np.einsum("bn,bn->b", wry, rx[:, x_inv]) / n
            constant = (gx.max(axis=1) == n) | y_const
            out[i] += _correlation(cov, (gx * rx**2).sum(axis=1) / n, var_y, constant)
    return out / 2 if metric == "pearson_spearman" else out


def _metric_on_counts(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    """The metric of each row of ``preds`` (S, n) on each count row of ``w`` (B, n): (S, B)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if preds.shape[-1] != labels.shape[0]:
        raise ValueError(f"{preds.shape[-1]} predictions but {labels.shape[0]} labels")
    if metric in CLASSIFICATION_METRICS:
        if preds.min() < 0 or labels.min() < 0:
            raise ValueError(f"{metric} needs class ids 0, 1, ...; got a negative one")
        return _classification(metric, preds.astype(np.int64), labels.astype(np.int64), w)
    return _regression(metric, preds.astype(np.float64), labels.astype(np.float64), w)


def metric_resampled(
    metric: str, preds: np.ndarray, labels: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """The metric recomputed on each resample ``idx`` (B, n) of the test examples.

    ``preds`` is (n,) for one run, giving (B,), or (S, n) for S runs on the same resamples,
    giving (S, B). Values equal `ptft_bench.metrics` on ``preds[idx[b]], labels[idx[b]]``
    (``f1`` is the F1 of class 1 even with more classes, where sklearn would refuse).
    """
    preds, labels, idx = np.asarray(preds), np.asarray(labels), np.asarray(idx)
    rows = max(1, BLOCK_CELLS // len(labels))
    blocks = (idx[i : i + rows] for i in range(0, len(idx), rows))
    out = _on_blocks(metric, np.atleast_2d(preds), labels, blocks)
    return out[0] if preds.ndim == 1 else out


def _on_blocks(metric: str, preds: np.ndarray, labels: np.ndarray, blocks) -> np.ndarray:
    """The metric of each row of ``preds`` (S, n) on each resample of the index blocks: (S, B)."""
    parts = [_metric_on_counts(metric, preds, labels, _counts(b, len(labels))) for b in blocks]
    return np.concatenate(parts, axis=1)


def _resampled(metric: str, preds: np.ndarray, labels: np.ndarray, n_boot: int, seed: int):
    """`metric_resampled` on ``bootstrap_indices(n, n_boot, seed)``, drawn block by block."""
    return _on_blocks(metric, preds, labels, _index_blocks(len(labels), n_boot, seed))


def _observed(metric: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Metric of each row of ``preds`` (S, n) on the full test set: (S,)."""
    return _metric_on_counts(metric, preds, labels, np.ones((1, len(labels))))[:, 0]


# --- gaps between two variants --------------------------------------------------------------


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


def _gap_from_resamples(
    res_a: np.ndarray,
    res_b: np.ndarray,
    obs_a: np.ndarray,
    obs_b: np.ndarray,
    seed: int,
    pair_seeds: bool,
) -> Gap:
    """Gap from per-seed metrics on shared example resamples, ``res_*`` (S, B), ``obs_*`` (S,)."""
    (sa, n_boot), sb = res_a.shape, res_b.shape[0]
    rng = np.random.default_rng([seed, 1])
    paired = pair_seeds and sa == sb and sa > 1
    draw_a = rng.integers(0, sa, size=(n_boot, sa))
    draw_b = draw_a if paired else rng.integers(0, sb, size=(n_boot, sb))
    cols = np.arange(n_boot)[:, None]
    diffs = res_a[draw_a, cols].mean(axis=1) - res_b[draw_b, cols].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    covers = TEST_SAMPLE if sa == sb == 1 else TEST_SAMPLE_AND_SEEDS
    observed = float(obs_a.mean() - obs_b.mean())
    return Gap(observed, float(low), float(high), bootstrap_p(diffs), sa, sb, paired, covers)


def gap(
    metric: str,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    pair_seeds: bool = True,
) -> Gap:
    """Bootstrap the gap metric(a) - metric(b); one or two levels depending on the seeds.

    ``preds_a`` / ``preds_b`` are (n,) or (S, n). Each resample draws test examples with
    replacement (the same draw for both sides and every seed: they share one test set); with
    2+ seeds on a side it also draws that side's seeds with replacement, in pairs by row when
    both sides have the same number of rows and ``pair_seeds``. The statistic is the mean over
    drawn seeds of metric(a) minus that of metric(b); the observed gap is the mean-over-seeds
    difference on the full test set.
    """
    labels = np.asarray(labels)
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    res = _resampled(metric, np.concatenate([a, b]), labels, n_boot, seed)
    obs = _observed(metric, np.concatenate([a, b]), labels)
    k = len(a)
    return _gap_from_resamples(res[:k], res[k:], obs[:k], obs[k:], seed, pair_seeds)


def paired_bootstrap(
    metric: str,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
) -> Gap:
    """`gap` for one run per side (1-D predictions): the interval covers the test sample only."""
    if np.ndim(preds_a) != 1 or np.ndim(preds_b) != 1:
        raise ValueError("paired_bootstrap takes one run per side (1-D); use gap() for seeds")
    return gap(metric, preds_a, preds_b, labels, n_boot, seed)


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


# --- one task: every variant against the best and a reference -------------------------------


def tie_group(adjusted_p_vs_best: Mapping[str, float], best: str, alpha: float = 0.05) -> list[str]:
    """Variants that cannot be told apart from ``best`` at Holm-corrected level ``alpha``.

    ``adjusted_p_vs_best`` maps variants to their Holm-adjusted p-value against the best; NaN
    (no evidence) keeps a variant out. The best is always in its own group, listed first.
    """
    return [best] + [v for v, p in adjusted_p_vs_best.items() if v != best and p >= alpha]


@dataclass(frozen=True)
class VariantRow:
    """One variant of one task: its score and its gaps to the task's best and to the reference.

    ``mcnemar_p`` (classification only; it tests per-example correctness, i.e. accuracy) is the
    largest exact McNemar p against the reference over the rows matched by index (the first
    min(S_a, S_b) seeds): an intersection-union test, "different on every matched seed", valid
    at level alpha without correction. NaN for regression, for the reference itself and without
    evidence.
    """

    variant: str
    has_evidence: bool
    n_seeds: int
    score: float
    to_best: Gap
    to_reference: Gap
    in_best_group: bool
    tied_with_reference: bool
    mcnemar_p: float


@dataclass(frozen=True)
class TaskComparison:
    """Every variant of one task against its best (by mean score) and against ``reference``."""

    metric: str
    best: str | None
    reference: str
    alpha: float
    n_boot: int
    rows: list[VariantRow] = field(default_factory=list)

    def row(self, variant: str) -> VariantRow:
        """The row of one variant (KeyError when absent)."""
        for r in self.rows:
            if r.variant == variant:
                return r
        raise KeyError(variant)

    @property
    def best_group(self) -> list[str]:
        """Variants statistically tied with the best, the best first."""
        rest = [r.variant for r in self.rows if r.in_best_group and r.variant != self.best]
        return [self.best, *rest] if self.best is not None else []


def _gaps_to(target, runs, res, obs, seed, pair_seeds) -> dict[str, Gap]:
    """Gaps of every variant to ``target``, Holm-corrected over the variants other than it."""
    gaps = {
        v: _gap_from_resamples(res[v], res[target], obs[v], obs[target], seed, pair_seeds)
        for v in runs
    }
    others = [v for v in runs if v != target]
    adjusted = holm([gaps[v].p_value for v in others])
    out = {v: replace(gaps[v], p_adjusted=float(p)) for v, p in zip(others, adjusted)}
    # Comparing the target with itself tests nothing: gap 0, p 1, outside the Holm family.
    out[target] = replace(gaps[target], p_adjusted=gaps[target].p_value)
    return out


def _mcnemar_iut(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    return max(mcnemar_exact(pa, pb, labels)[2] for pa, pb in zip(a, b))


def compare_task(
    metric: str,
    preds: Mapping[str, np.ndarray | None],
    labels: np.ndarray,
    reference: str = "full",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    pair_seeds: bool = True,
) -> TaskComparison:
    """Compare every variant of one task with the best variant and with ``reference``.

    ``preds`` maps variants to (S, n) or (n,) predictions aligned with ``labels``, or None for
    a variant without stored predictions (its row has NaNs and ``has_evidence=False``). The best
    is the highest mean-over-seeds score (note: choosing it from the same data favours it a
    little). Each gap is `gap` with the same ``n_boot`` and ``seed`` (all variants share the
    example resamples); p-values are Holm-corrected over the task's variants, separately for
    "vs best" and "vs reference".
    """
    labels = np.asarray(labels)
    runs = {v: np.atleast_2d(np.asarray(p)) for v, p in preds.items() if p is not None}
    runs = {v: p for v, p in runs.items() if p.size}
    for v, p in runs.items():
        if p.ndim != 2 or p.shape[1] != len(labels):
            raise ValueError(f"{v}: predictions of shape {p.shape} for {len(labels)} labels")
    if not runs:
        rows = [_missing_row(v) for v in preds]
        return TaskComparison(metric, None, reference, alpha, n_boot, rows)
    stacked = np.concatenate(list(runs.values()))
    splits = np.cumsum([len(p) for p in runs.values()])[:-1]
    res = dict(zip(runs, np.split(_resampled(metric, stacked, labels, n_boot, seed), splits)))
    obs = dict(zip(runs, np.split(_observed(metric, stacked, labels), splits)))
    best = max(runs, key=lambda v: obs[v].mean())
    to_best = _gaps_to(best, runs, res, obs, seed, pair_seeds)
    has_ref = reference in runs
    to_ref = _gaps_to(reference, runs, res, obs, seed, pair_seeds) if has_ref else {}
    group = set(tie_group({v: g.p_adjusted for v, g in to_best.items()}, best, alpha))
    rows = []
    for v in preds:
        if v not in runs:
            rows.append(_missing_row(v))
            continue
        ref_gap = to_ref.get(v, Gap.missing())
        tied_ref = has_ref and (v == reference or ref_gap.p_adjusted >= alpha)
        mcnemar = math.nan
        if has_ref and v != reference and metric in CLASSIFICATION_METRICS:
            mcnemar = _mcnemar_iut(runs[v], runs[reference], labels)
        score = float(obs[v].mean())
        row = VariantRow(
            v, True, len(runs[v]), score, to_best[v], ref_gap, v in group, tied_ref, mcnemar
        )
        rows.append(row)
    return TaskComparison(metric, best, reference, alpha, n_boot, rows)


def _missing_row(variant: str) -> VariantRow:
    return VariantRow(
        variant, False, 0, math.nan, Gap.missing(), Gap.missing(), False, False, math.nan
    )


# --- where the spread comes from ------------------------------------------------------------


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


def variance_split(
    metric: str, preds: np.ndarray, labels: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> VarianceSplit:
    """Seed SD (of per-seed scores, ddof=1) and test-sample SD (mean over seeds of the bootstrap
    SD of that seed's score) of ``preds`` (S, n); seed terms are NaN for a single seed."""
    preds, labels = np.atleast_2d(np.asarray(preds)), np.asarray(labels)
    obs = _observed(metric, preds, labels)
    res = _resampled(metric, preds, labels, n_boot, seed)
    test_sd = float(res.std(axis=1, ddof=1).mean())
    seed_sd = float(obs.std(ddof=1)) if len(obs) > 1 else math.nan
    total = seed_sd**2 + test_sd**2
    share = seed_sd**2 / total if total > 0 else math.nan
    return VarianceSplit(len(obs), float(obs.mean()), seed_sd, test_sd, share, 1 - share)


# --- across tasks: mean ranks, Friedman, Nemenyi ---------------------------------------------


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (variants, tasks) array, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores have missing values: drop the variants or tasks without a score")
    return scores


def task_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each variant within each task, (variants, tasks): 1 = best, ties averaged."""
    return sps.rankdata(-_check_scores(scores), axis=0)


@dataclass(frozen=True)
class MeanRanks:
    """Mean rank per variant over tasks with a 95% bootstrap interval over tasks."""

    mean_rank: np.ndarray
    low: np.ndarray
    high: np.ndarray


def mean_rank_interval(scores: np.ndarray, n_boot: int = 2000, seed: int = 0) -> MeanRanks:
    """Mean ranks of ``scores`` (variants, tasks; higher is better), tasks resampled with
    replacement for the interval (ranks stay those within each task)."""
    ranks = task_ranks(scores)
    draws = np.random.default_rng([seed, 2]).integers(0, ranks.shape[1], (n_boot, ranks.shape[1]))
    boot = ranks[:, draws].mean(axis=2)
    low, high = np.percentile(boot, [2.5, 97.5], axis=1)
    return MeanRanks(ranks.mean(axis=1), low, high)


@dataclass(frozen=True)
class Friedman:
    """Friedman test that all variants rank alike over tasks (chi², k - 1 degrees of freedom)."""

    statistic: float
    p_value: float
    n_variants: int
    n_tasks: int


def friedman(scores: np.ndarray) -> Friedman:
    """Friedman chi² with the tie correction, as `scipy.stats.friedmanchisquare` computes it.

    All-tied tasks carry no evidence: when every task is fully tied the statistic is 0, p 1.
    """
    ranks = task_ranks(scores)
    k, n = ranks.shape
    tie_sizes = [np.unique(col, return_counts=True)[1] for col in ranks.T]
    ties = sum(float((t**3 - t).sum()) for t in tie_sizes)
    correction = 1 - ties / (k * (k * k - 1) * n)
    if correction <= 0:
        return Friedman(0.0, 1.0, k, n)
    ssbn = float((ranks.sum(axis=1) ** 2).sum())
    stat = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / correction
    return Friedman(stat, float(sps.chi2.sf(stat, k - 1)), k, n)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi q_alpha for k variants: studentized range quantile / sqrt(2) (Demšar 2006)."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi CD = q_alpha * sqrt(k (k + 1) / (6 N)): mean ranks closer than this are tied."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_tasks))


def cd_groups(mean_rank: np.ndarray, cd: float) -> list[tuple[int, ...]]:
    """Maximal runs of variants, consecutive in rank order, whose mean ranks differ by < cd.

    Indices refer to ``mean_rank``; each run lists best rank first. Only runs of 2+ are
    returned (the bars of a CD diagram): a variant in none differs from every other.
    """
    order = np.argsort(mean_rank, kind="stable")
    ranks = np.asarray(mean_rank)[order]
    groups, last_end = [], -1
    for i in range(len(ranks)):
        end = i + int(np.searchsorted(ranks[i:], ranks[i] + cd, side="left")) - 1
        if end > last_end and end > i:
            groups.append(tuple(int(j) for j in order[i : end + 1]))
        last_end = max(last_end, end)
    return groups


@dataclass(frozen=True)
class RankComparison:
    """What a critical-difference diagram needs, for variants compared over tasks."""

    names: list[str]
    mean_rank: np.ndarray
    low: np.ndarray
    high: np.ndarray
    friedman: Friedman
    cd: float
    groups: list[tuple[str, ...]]


def compare_across_tasks(
    scores: np.ndarray,
    names: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> RankComparison:
    """Mean ranks with intervals, Friedman test, Nemenyi CD and the CD groups (use 3+ tasks)."""
    scores = _check_scores(scores)
    if len(names) != scores.shape[0]:
        raise ValueError(f"{len(names)} names for {scores.shape[0]} rows of scores")
    ranks = mean_rank_interval(scores, n_boot, seed)
    cd = critical_difference(scores.shape[0], scores.shape[1], alpha)
    groups = [tuple(names[i] for i in g) for g in cd_groups(ranks.mean_rank, cd)]
    return RankComparison(
        list(names), ranks.mean_rank, ranks.low, ranks.high, friedman(scores), cd, groups
    )
