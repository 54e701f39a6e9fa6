"""Is a gap between two variants real? Bootstrap intervals and tests on per-example predictions.

Everything here works on predictions aligned with one task's test labels, in metric units
(fractions, as `ptft_bench.tasks.metrics` returns them). Resampling is vectorised: a bootstrap draw of
test examples is a row of per-example counts, and every metric is a function of weighted sums
over those rows (confusion counts, moments, ranks within the draw), so no Python loop runs over
resamples. Everything is deterministic for a given ``seed``. Generation metrics resample
inputs the same way; a run's predictions are then its per-input sufficient statistics, (S, n, k)
for S runs, and each resample's value is the corpus metric recomputed (`kernels`).

Conventions:

- Intervals come from the spread of the statistic (`gaps.Spread`): the pair of order statistics
  of the resampled statistic dual to the bootstrap p-value, or a t interval; 95% for one
  comparison, Bonferroni-simultaneous (1 - 0.05 / m) within a family of m comparisons, the
  family whose Holm-corrected p-values decide ties (`gaps` explains why the two always agree).
- Bootstrap p-values are two-sided, over the B resampled differences d*:
  ``p = min(1, 2 * (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1))``. Resamples exactly at 0 count
  on both sides (conservative for discrete metrics); p < 0.05 exactly when 0 is outside the
  95% interval.
- With fewer than ~20 test examples on which the two sides differ the bootstrap p-value is too
  small (5 extra errors and nothing else: bootstrap p ~ 2 e^-5 = 0.013, exact McNemar 0.063);
  McNemar's exact test is the one to quote for accuracy there.
- Seeds: rows of a (S, n) array are runs with different seeds; when both sides have the same
  number of rows, row i on each side is taken to be the same seed (same data order and head
  initialisation), as `stats.paired` pairs by seed. How seed noise enters depends on the seeds
  (`gaps.SEED_T_MAX`): one seed per side, a bootstrap over test examples (`gaps.BY_EXAMPLES`:
  seed noise is not covered); a side with 2-4 seeds, no resampling of seeds (3 seeds paired by
  index have only 10 distinct resamples): the per-seed gaps d_s on the whole test set give
  a = var(d_s) / S, the bootstrap over test examples (the same draws for every seed) gives
  b = the variance of the mean gap, and the interval is mean ± t_df * sqrt(a + b) with
  Welch-Satterthwaite df = (a + b)² / (a² / (S - 1)), the p-value from the same t
  (`gaps.BY_SEED_T`; unpaired sides contribute one seed term each); 5+ seeds on every side
  with seeds, a two-level bootstrap drawing test examples and seeds, in pairs by row when
  paired (`gaps.BY_TWO_LEVELS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ptft_bench.report.stats.gaps import (
    BY_EXAMPLES,
    BY_SEED_T,
    BY_TWO_LEVELS,
    SEED_T_MAX,
    TEST_SAMPLE,
    TEST_SAMPLE_AND_SEEDS,
    Gap,
    Spread,
    VarianceSplit,
    bootstrap_p,
    family_gaps,
    gap_from_draws,
    gap_from_spread,
    holm,
    mcnemar_exact,
    resampled_diffs,
    seed_t_spread,
    tie_group,
    variance_from,
)
from ptft_bench.report.stats.kernels import (
    GENERATION_METRICS,
    METRICS,
    as_runs,
    counts,
    is_one_run,
    metric_on_counts,
)
from ptft_bench.report.stats.ranks import (
    Friedman,
    MeanRanks,
    RankComparison,
    cd_groups,
    compare_across_tasks,
    critical_difference,
    friedman,
    mean_rank_interval,
    nemenyi_q,
    task_ranks,
)
from ptft_bench.tasks.metrics import CLASSIFICATION_METRICS

# Gaps, Holm and McNemar live in `gaps`, the across-tasks statistics in `ranks`, the metric
# kernels in `kernels`; everything stays importable from here.
__all__ = [
    "BY_EXAMPLES",
    "BY_SEED_T",
    "BY_TWO_LEVELS",
    "METRICS",
    "SEED_T_MAX",
    "Friedman",
    "Gap",
    "MeanRanks",
    "RankComparison",
    "Spread",
    "TEST_SAMPLE",
    "TEST_SAMPLE_AND_SEEDS",
    "TaskComparison",
    "TaskResamples",
    "VarianceSplit",
    "VariantRow",
    "bootstrap_indices",
    "bootstrap_p",
    "cd_groups",
    "compare_across_tasks",
    "compare_task",
    "critical_difference",
    "friedman",
    "gap",
    "gap_from_draws",
    "gap_from_spread",
    "holm",
    "mcnemar_exact",
    "mean_rank_interval",
    "metric_resampled",
    "nemenyi_q",
    "paired_bootstrap",
    "task_ranks",
    "tie_group",
    "variance_split",
]


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


def metric_resampled(
    metric: str, preds: np.ndarray, labels: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """The metric recomputed on each resample ``idx`` (B, n) of the test examples.

    ``preds`` is (n,) for one run, giving (B,), or (S, n) for S runs on the same resamples,
    giving (S, B). Values equal `ptft_bench.tasks.metrics` on ``preds[idx[b]], labels[idx[b]]``
    (``f1`` is the F1 of class 1 even with more classes, where sklearn would refuse). For a
    generation metric ``preds`` are per-input statistics, (n, k) for one run or (S, n, k)
    (`kernels.as_runs`), and the value is the corpus metric of the resample.
    """
    preds, labels, idx = np.asarray(preds), np.asarray(labels), np.asarray(idx)
    rows = max(1, BLOCK_CELLS // len(labels))
    blocks = (idx[i : i + rows] for i in range(0, len(idx), rows))
    out = _on_blocks(metric, as_runs(metric, preds), labels, blocks)
    return out[0] if is_one_run(metric, preds) else out


def _on_blocks(metric: str, preds: np.ndarray, labels: np.ndarray, blocks) -> np.ndarray:
    """The metric of each row of ``preds`` (S, n) on each resample of the index blocks: (S, B)."""
    parts = [metric_on_counts(metric, preds, labels, counts(b, len(labels))) for b in blocks]
    return np.concatenate(parts, axis=1)


def _resampled(metric: str, preds: np.ndarray, labels: np.ndarray, n_boot: int, seed: int):
    """`metric_resampled` on ``bootstrap_indices(n, n_boot, seed)``, drawn block by block."""
    return _on_blocks(metric, preds, labels, _index_blocks(len(labels), n_boot, seed))


def _observed(metric: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Metric of each row of ``preds`` (S, n) on the full test set: (S,)."""
    return metric_on_counts(metric, preds, labels, np.ones((1, len(labels))))[:, 0]


# --- gaps between two variants --------------------------------------------------------------


def method_for(n_seeds_a: int, n_seeds_b: int) -> str:
    """How seed noise enters a gap between sides of these seed counts (see the conventions)."""
    if n_seeds_a == n_seeds_b == 1:
        return BY_EXAMPLES
    if any(2 <= s <= SEED_T_MAX for s in (n_seeds_a, n_seeds_b)):
        return BY_SEED_T
    return BY_TWO_LEVELS


def resampled_spread(res_a, res_b, obs_a, obs_b, seed: int, pair_seeds: bool):
    """(`Spread` of mean(a) - mean(b), method, paired) from per-seed metrics on shared example
    resamples ``res_*`` (S, B) and on the whole test set ``obs_*`` (S,)."""
    method = method_for(len(res_a), len(res_b))
    if method == BY_SEED_T:
        paired = pair_seeds and len(res_a) == len(res_b)
        sample = res_a.mean(axis=0) - res_b.mean(axis=0)
        per_seed = [obs_a - obs_b] if paired else [obs_a, obs_b]
        return seed_t_spread(per_seed, sample), method, paired
    diffs, paired = resampled_diffs(res_a, res_b, seed, pair_seeds)
    return Spread(draws=diffs), method, paired


def _gap_from_resamples(res_a, res_b, obs_a, obs_b, seed: int, pair_seeds: bool) -> Gap:
    """Gap from per-seed metrics on shared example resamples, ``res_*`` (S, B), ``obs_*`` (S,)."""
    spread, method, paired = resampled_spread(res_a, res_b, obs_a, obs_b, seed, pair_seeds)
    observed = float(obs_a.mean() - obs_b.mean())
    return gap_from_spread(spread, observed, len(res_a), len(res_b), paired, method)


def gap(
    metric: str,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    pair_seeds: bool = True,
) -> Gap:
    """The gap metric(a) - metric(b), its interval and p-value; seed noise as the seeds allow.

    ``preds_a`` / ``preds_b`` are (n,) or (S, n). Each resample draws test examples with
    replacement (the same draw for both sides and every seed: they share one test set). One
    seed per side: the bootstrap of the difference. 2-4 seeds on a side: a t combining the
    per-seed gaps' variance with the example bootstrap's. 5+: seeds are drawn with replacement
    too, in pairs by row when both sides have the same number of rows and ``pair_seeds``. The
    observed gap is the mean-over-seeds difference on the full test set.
    """
    labels = np.asarray(labels)
    a, b = as_runs(metric, preds_a), as_runs(metric, preds_b)
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
    if not (is_one_run(metric, preds_a) and is_one_run(metric, preds_b)):
        raise ValueError("paired_bootstrap takes one run per side (1-D); use gap() for seeds")
    return gap(metric, preds_a, preds_b, labels, n_boot, seed)


# --- one task: every variant against the best and a reference -------------------------------


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


def _checked_runs(metric: str, preds: Mapping[str, np.ndarray | None], labels: np.ndarray):
    """{variant: (S, n) predictions ((S, n, k) statistics for a generation metric)} for the
    variants with predictions, shapes checked."""
    runs = {v: as_runs(metric, p) for v, p in preds.items() if p is not None}
    runs = {v: p for v, p in runs.items() if p.size}
    ndim = 3 if metric in GENERATION_METRICS else 2
    for v, p in runs.items():
        if p.ndim != ndim or p.shape[1] != len(labels):
            raise ValueError(f"{v}: predictions of shape {p.shape} for {len(labels)} labels")
    return runs


def _mcnemar_iut(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float:
    return max(mcnemar_exact(pa, pb, labels)[2] for pa, pb in zip(a, b))


@dataclass(frozen=True)
class TaskResamples:
    """One task's variants scored on shared bootstrap resamples of its test examples.

    The cache behind every comparison of a task: drawn once (`draw`), it gives the gap between
    any two variants (`gap`, `diffs`), Holm-corrected gaps to any target (`gaps_to`), the
    `compare` table, a variant's score interval and its `variance` split, all from the same
    resamples. ``runs`` (S, n), ``res`` (S, B) and ``obs`` (S,) are keyed by variant.
    """

    metric: str
    labels: np.ndarray
    runs: dict[str, np.ndarray]
    res: dict[str, np.ndarray]
    obs: dict[str, np.ndarray]
    n_boot: int = 2000
    seed: int = 0
    pair_seeds: bool = True

    @classmethod
    def draw(
        cls,
        metric: str,
        preds: Mapping[str, np.ndarray | None],
        labels: np.ndarray,
        n_boot: int = 2000,
        seed: int = 0,
        pair_seeds: bool = True,
    ) -> TaskResamples:
        """Score every variant of ``preds`` ((S, n), (n,) or None) on ``n_boot`` resamples."""
        labels = np.asarray(labels)
        runs = _checked_runs(metric, preds, labels)
        res: dict[str, np.ndarray] = {}
        obs: dict[str, np.ndarray] = {}
        if runs:
            stacked = np.concatenate(list(runs.values()))
            splits = np.cumsum([len(p) for p in runs.values()])[:-1]
            res = dict(
                zip(runs, np.split(_resampled(metric, stacked, labels, n_boot, seed), splits))
            )
            obs = dict(zip(runs, np.split(_observed(metric, stacked, labels), splits)))
        return cls(metric, labels, runs, res, obs, n_boot, seed, pair_seeds)

    def score(self, variant: str) -> float:
        """Mean over seeds of the metric on the whole test set."""
        return float(self.obs[variant].mean())

    def gap(self, a: str, b: str) -> Gap:
        """`gap` of a to b on these resamples (no multiplicity correction)."""
        return _gap_from_resamples(
            self.res[a], self.res[b], self.obs[a], self.obs[b], self.seed, self.pair_seeds
        )

    def gaps_to(
        self, target: str, variants: Sequence[str] | None = None, alpha: float = 0.05
    ) -> dict[str, Gap]:
        """Gaps of ``variants`` (default: all) to ``target`` as one family: Holm-corrected
        p-values and Bonferroni intervals over the variants other than the target; the target
        itself gets gap 0, p 1, outside the family."""
        names = [v for v in (variants or self.runs) if v in self.runs]
        gaps = {v: self.gap(v, target) for v in names}
        out = family_gaps({v: g for v, g in gaps.items() if v != target}, alpha)
        if target in gaps:
            out[target] = replace(gaps[target], p_adjusted=gaps[target].p_value)
        return out

    def score_spread(self, variant: str) -> Spread:
        """The spread of the variant's mean-over-seeds score, seeds treated as in `gap`."""
        res, obs = self.res[variant], self.obs[variant]
        if method_for(len(res), len(res)) == BY_SEED_T:
            return seed_t_spread([obs], res.mean(axis=0))
        draw = np.random.default_rng([self.seed, 1]).integers(0, len(res), (self.n_boot, len(res)))
        return Spread(draws=res[draw, np.arange(self.n_boot)[:, None]].mean(axis=1))

    def score_interval(self, variant: str) -> tuple[float, float]:
        """95% interval of the variant's mean-over-seeds score (from `score_spread`)."""
        return self.score_spread(variant).interval(self.score(variant))

    def variance(self, variant: str) -> VarianceSplit:
        """`variance_split` of one variant, from these resamples."""
        return variance_from(self.obs[variant], self.res[variant])

    def compare(
        self, variants: Sequence[str], reference: str = "full", alpha: float = 0.05
    ) -> TaskComparison:
        """Rows of `compare_task` for ``variants`` (those without resamples: rows of NaN)."""
        runs = [v for v in variants if v in self.runs]
        if not runs:
            rows = [_missing_row(v) for v in variants]
            return TaskComparison(self.metric, None, reference, alpha, self.n_boot, rows)
        best = max(runs, key=self.score)
        to_best = self.gaps_to(best, runs, alpha)
        has_ref = reference in runs
        to_ref = self.gaps_to(reference, runs, alpha) if has_ref else {}
        group = set(tie_group({v: g.p_adjusted for v, g in to_best.items()}, best, alpha))
        rows = [
            self._row(v, to_best, to_ref, group, reference, alpha) if v in runs else _missing_row(v)
            for v in variants
        ]
        return TaskComparison(self.metric, best, reference, alpha, self.n_boot, rows)

    def _row(self, v, to_best, to_ref, group, reference, alpha) -> VariantRow:
        ref_gap = to_ref.get(v, Gap.missing())
        tied_ref = bool(to_ref) and (v == reference or ref_gap.p_adjusted >= alpha)
        mcnemar = math.nan
        if to_ref and v != reference and self.metric in CLASSIFICATION_METRICS:
            mcnemar = _mcnemar_iut(self.runs[v], self.runs[reference], self.labels)
        return VariantRow(
            v,
            True,
            len(self.runs[v]),
            self.score(v),
            to_best[v],
            ref_gap,
            v in group,
            tied_ref,
            mcnemar,
        )


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
    samples = TaskResamples.draw(metric, preds, labels, n_boot, seed, pair_seeds)
    return samples.compare(list(preds), reference, alpha)


def _missing_row(variant: str) -> VariantRow:
    return VariantRow(
        variant, False, 0, math.nan, Gap.missing(), Gap.missing(), False, False, math.nan
    )


def variance_split(
    metric: str, preds: np.ndarray, labels: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> VarianceSplit:
    """Seed SD (of per-seed scores, ddof=1) and test-sample SD (mean over seeds of the bootstrap
    SD of that seed's score) of ``preds`` (S, n); seed terms are NaN for a single seed."""
    return TaskResamples.draw(metric, {"": preds}, labels, n_boot, seed).variance("")
