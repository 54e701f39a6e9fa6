"""Evidence: the selected runs' per-example predictions -> statistics per task and overall.

For each (task, model), the variants at their selected learning rate, less those whose runs all
learned nothing (judged on validation, `load.judged_check`), are scored on one shared set of
bootstrap resamples of the task's test examples (`significance.TaskResamples`: `N_BOOT` draws,
the task's primary metric recomputed on each). That one cache answers every question the report
asks of the task: the gap of each variant to the best and to full fine-tuning with Holm-corrected
p-values and the matching Bonferroni intervals, tie groups, McNemar, score intervals and the
seed / test-sample variance split. Seed noise enters as the seeds allow (`significance`: a
bootstrap over examples for one seed, a t for 2-4 seeds, a two-level bootstrap for 5+). On the
validation predictions, every variant is compared with the linear probe the same way.

Across tasks, every table compares over one common task set (`rule_tasks`, `comparison_tasks`):
the mean over those tasks of per-task gaps (independent test sets) has the spread of a mean
(`gaps.mean_gap`), and a variant without a usable result on one of them has no mean at all.

Generation tasks are compared the same way on their primary metric (BLEU): a run's per-example
"predictions" are its per-input sufficient statistics of that metric (`load.run_predictions`),
and each resample's value is the corpus metric recomputed on it (`stats.kernels`).

A variant without usable predictions (records written before schema 2, a deleted file, test
labels that differ from the other runs') has no evidence; the reason is kept and the report
falls back to means and paired t-tests over seeds (`TaskEvidence.seed_tests`, computed for
every eligible variant whether or not it has predictions).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ptft_bench.report.aggregate import REFERENCE_STRATEGY, reference_variant
from ptft_bench.report.load import NO_PREDICTIONS, run_predictions
from ptft_bench.report.stats.descriptive import PairedResult, paired_by_seed
from ptft_bench.report.stats.gaps import Gap, family_gaps, mean_gap
from ptft_bench.report.stats.ranks import RankComparison, compare_across_tasks
from ptft_bench.report.stats.significance import (
    METRICS,
    TaskComparison,
    TaskResamples,
    VariantRow,
)

N_BOOT = 2000
ALPHA = 0.05
LINEAR_PROBE = "linear_probe"
LABELS_DIFFER = "test labels differ from the other runs' (other data settings?): not compared"


@dataclass
class TaskEvidence:
    """Statistics of one (task, model): who is compared, on which resamples, and what is missing.

    ``eligible``: variants with a score whose selected runs did not all fail to learn (best,
    tie groups and recommendations consider only these). ``missing``: eligible variants without
    evidence, with the reason. ``reference``: the full fine-tuning variant when it is eligible.
    ``seed_tests``: each eligible variant's test scores against the reference's, paired by seed
    (a paired t-test; the comparison of record where a side has no predictions), empty without
    a reference. ``probe``: the linear probe variant; ``vs_probe``: every variant with
    validation predictions against it on validation (primary metric; one family, Holm and
    Bonferroni as on test), empty without a probe or validation predictions.
    """

    task: str
    model: str
    metric: str | None
    reference: str | None
    eligible: list[str]
    missing: dict[str, str] = field(default_factory=dict)
    samples: TaskResamples | None = None
    comparison: TaskComparison | None = None
    seed_tests: dict[str, PairedResult] = field(default_factory=dict)
    probe: str | None = None
    vs_probe: dict[str, Gap] = field(default_factory=dict)

    def has(self, variant: str) -> bool:
        """True when the variant's gaps can be bootstrapped."""
        return self.samples is not None and variant in self.samples.runs

    def row(self, variant: str) -> VariantRow | None:
        """The comparison row of an eligible variant with evidence (None otherwise)."""
        return self.comparison.row(variant) if self.comparison and self.has(variant) else None

    @property
    def one_seed(self) -> bool:
        """True when some compared variant has a single seed (intervals then miss seed noise)."""
        return self.samples is not None and any(len(r) == 1 for r in self.samples.runs.values())

    @property
    def methods(self) -> set[str]:
        """How the task's gaps were estimated (`gaps.BY_*`), over its comparison rows."""
        rows = self.comparison.rows if self.comparison else []
        gaps = [g for r in rows if r.has_evidence for g in (r.to_best, r.to_reference)]
        return {g.method for g in gaps if g.method}


def _predictions(
    row: pd.Series, split: str = "test", metric: str | None = None
) -> tuple[np.ndarray, np.ndarray] | str:
    """(preds (S, n), labels (n,)) of a leaderboard row's selected runs on ``split``, or why
    there are none; for a generation ``metric``, preds are the runs' (S, n, k) statistics of it
    (`load.run_predictions`)."""
    preds, labels = [], None
    for _seed, record, source in row["selected_runs"]:
        got = run_predictions(record, source, split, metric)
        if isinstance(got, str):
            return got
        if labels is not None and not np.array_equal(labels, got[1]):
            return LABELS_DIFFER
        preds.append(got[0])
        labels = got[1]
    if labels is None:
        return NO_PREDICTIONS
    if len({p.shape for p in preds}) > 1:
        return LABELS_DIFFER
    return np.stack(preds), labels


def task_seed(task: str) -> int:
    """Bootstrap seed of a task: stable, and different between tasks so that their draws are
    independent (a model comparison on one task shares the task's resamples)."""
    return zlib.crc32(task.encode())


def _resamples(rows: pd.DataFrame, metric: str, split: str, n_boot: int, seed: int):
    """(`TaskResamples` or None, {variant: why it has no predictions}) of ``rows`` on ``split``."""
    preds, labels, seeds, missing = {}, None, {}, {}
    for _, r in rows.iterrows():
        got = _predictions(r, split, metric)
        if isinstance(got, str) or (labels is not None and not np.array_equal(labels, got[1])):
            missing[str(r["variant"])] = got if isinstance(got, str) else LABELS_DIFFER
            continue
        preds[str(r["variant"])], labels = got
        seeds[str(r["variant"])] = [s for s, _, _ in r["selected_runs"]]
    if not preds:
        return None, missing
    # Rows are paired by seed only when every variant ran the very same seeds.
    paired = len({tuple(map(str, s)) for s in seeds.values()}) == 1
    return TaskResamples.draw(metric, preds, labels, n_boot, seed, paired), missing


def _probe_evidence(ev: TaskEvidence, g: pd.DataFrame, n_boot: int) -> None:
    """Every variant with validation predictions against the linear probe, on validation."""
    scored = g[g["test_mean"].notna()]
    probes = scored[scored["strategy"] == LINEAR_PROBE].sort_values("test_mean")
    if probes.empty or ev.metric not in METRICS:
        return
    ev.probe = str(probes["variant"].iloc[-1])
    samples, _ = _resamples(scored, ev.metric, "validation", n_boot, task_seed(ev.task + "/val"))
    if samples is not None and ev.probe in samples.runs and len(samples.runs) > 1:
        gaps = samples.gaps_to(ev.probe, alpha=ALPHA)
        ev.vs_probe = {v: gap for v, gap in gaps.items() if v != ev.probe}


def task_evidence(g: pd.DataFrame, n_boot: int = N_BOOT) -> TaskEvidence:
    """Load the predictions of one (task, model) leaderboard and compare its variants."""
    task, model = str(g["task"].iloc[0]), str(g["model"].iloc[0])
    metric = next((str(m) for m in g["primary_metric"] if isinstance(m, str)), None)
    ok = g[eligible_mask(g)]
    full = ok[ok["strategy"] == REFERENCE_STRATEGY]
    reference = str(full.sort_values("test_mean")["variant"].iloc[-1]) if len(full) else None
    ev = TaskEvidence(task, model, metric, reference, [str(v) for v in ok["variant"]])
    if reference is not None:
        ref_scores = full.loc[full["variant"] == reference, "seed_scores"].iloc[0]
        ev.seed_tests = {
            str(r["variant"]): paired_by_seed(r["seed_scores"], ref_scores)
            for _, r in ok.iterrows()
        }
    if metric not in METRICS:
        ev.missing = {v: f"no resampling for metric {metric!r}" for v in ev.eligible}
        return ev
    _probe_evidence(ev, g, n_boot)
    ev.samples, ev.missing = _resamples(ok, metric, "test", n_boot, task_seed(task))
    if ev.samples is not None:
        variants = list(ev.samples.runs)
        ev.comparison = ev.samples.compare(variants, reference or REFERENCE_STRATEGY, ALPHA)
    return ev


# --- which tasks a cross-task table compares on ---------------------------------------------


def eligible_mask(lb: pd.DataFrame) -> pd.Series:
    """Rows with a score whose selected runs did not all fail to learn: the compared ones."""
    return lb["test_mean"].notna() & ~lb["did_not_learn"].astype(bool)


def rule_tasks(lb: pd.DataFrame, model: str) -> list[str]:
    """The tasks of ``model`` the answer compares on: those on which some variant beats the
    constant-prediction baseline on validation (some selected run passed its learning check).
    A task on which none does cannot tell strategies apart and is left out, named."""
    mine = lb[lb["model"] == model]
    return sorted(str(t) for t in mine.loc[eligible_mask(mine), "task"].unique())


def left_out_tasks(lb: pd.DataFrame, model: str) -> list[str]:
    """The tasks of ``model`` with a score that `rule_tasks` leaves out."""
    mine = lb[(lb["model"] == model) & lb["test_mean"].notna()]
    return sorted(set(map(str, mine["task"])) - set(rule_tasks(lb, model)))


def comparison_tasks(lb: pd.DataFrame, model: str) -> list[str]:
    """The tasks the across-tasks table and the rank tests compare on: `rule_tasks` on which
    full fine-tuning (when the model has it) has a usable result, so that every gap to it is
    over the same tasks."""
    tasks = rule_tasks(lb, model)
    ref = reference_variant(lb, model)
    if ref is None:
        return tasks
    ok = lb[(lb["model"] == model) & (lb["variant"] == ref) & eligible_mask(lb)]
    return [t for t in tasks if t in set(map(str, ok["task"]))]


def complete_variants(lb: pd.DataFrame, model: str, tasks: Sequence[str]) -> list[str]:
    """The variants of ``model`` with a usable (eligible) result on every one of ``tasks``."""
    mine = lb[(lb["model"] == model) & eligible_mask(lb) & lb["task"].isin(list(tasks))]
    counts = mine.groupby("variant")["task"].nunique()
    return sorted(str(v) for v, n in counts.items() if n == len(tasks) and len(tasks))


def scores_over(lb: pd.DataFrame, model: str, tasks: Sequence[str]) -> pd.DataFrame:
    """(variant x task) mean test scores (points) of the `complete_variants` over ``tasks``."""
    mine = lb[(lb["model"] == model) & lb["task"].isin(list(tasks))]
    mine = mine[mine["variant"].isin(complete_variants(lb, model, tasks))]
    if mine.empty:
        return pd.DataFrame(columns=list(tasks))
    table = mine.pivot_table(index="variant", columns="task", values="test_mean", aggfunc="mean")
    return table.reindex(columns=list(tasks))


@dataclass
class Evidence:
    """Every (task, model)'s `TaskEvidence`, and the statistics that combine tasks."""

    tasks: dict[tuple[str, str], TaskEvidence]
    ranks: dict[str, RankComparison] = field(default_factory=dict)

    def task(self, task: str, model: str) -> TaskEvidence | None:
        return self.tasks.get((str(task), str(model)))

    def restricted_to(self, lb: pd.DataFrame) -> Evidence:
        """The same evidence on the (task, model) pairs of ``lb`` only."""
        keys = set(zip(lb["task"].astype(str), lb["model"].astype(str))) if len(lb) else set()
        return Evidence({k: v for k, v in self.tasks.items() if k in keys}, self.ranks)

    def of_model(self, model: str) -> list[TaskEvidence]:
        return [ev for (_, m), ev in sorted(self.tasks.items()) if m == str(model)]

    @property
    def one_seed(self) -> bool:
        return any(ev.one_seed for ev in self.tasks.values())

    @property
    def any_missing(self) -> bool:
        return any(ev.missing for ev in self.tasks.values())

    def mean_gap(self, model: str, a: str, b: str, tasks: Sequence[str]) -> Gap | None:
        """Gap a - b averaged over ``tasks`` (every one of them), with the spread of that mean;
        None when a side is not compared on one of them or lacks evidence there."""
        evs = [self.task(t, model) for t in tasks]
        if not evs or any(ev is None or not (ev.has(a) and ev.has(b)) for ev in evs):
            return None
        if any(a not in ev.eligible or b not in ev.eligible for ev in evs):
            return None
        return mean_gap([ev.samples.gap(a, b) for ev in evs])

    def mean_gaps_to(
        self, model: str, target: str, variants: Sequence[str], tasks: Sequence[str]
    ) -> dict[str, Gap | None]:
        """Mean gaps over ``tasks`` of ``variants`` to ``target`` as one family (Holm p-values
        and Bonferroni intervals over those that have one); None where a gap is unknown."""
        gaps = {v: self.mean_gap(model, v, target, tasks) for v in variants if v != target}
        known = family_gaps({v: g for v, g in gaps.items() if g is not None}, ALPHA)
        return {v: known.get(v) for v in gaps}


# Demšar's procedure needs several tasks to have any power, and a CD diagram of two variants
# says nothing a paired comparison does not.
MIN_TASKS_FOR_RANKS = 3
MIN_VARIANTS_FOR_RANKS = 3


def rank_comparison(
    lb: pd.DataFrame, model: str, tasks: Sequence[str], n_boot: int = N_BOOT
) -> RankComparison | None:
    """Mean ranks, Friedman and Nemenyi CD over ``tasks`` for the variants of ``model`` with a
    usable result on every one of them (None below 3 tasks or 3 such variants)."""
    scores = scores_over(lb, model, tasks)
    if scores.shape[1] < MIN_TASKS_FOR_RANKS or scores.shape[0] < MIN_VARIANTS_FOR_RANKS:
        return None
    return compare_across_tasks(scores.to_numpy(), [str(v) for v in scores.index], n_boot)


def gather(lb: pd.DataFrame, n_boot: int = N_BOOT) -> Evidence:
    """`TaskEvidence` for every (task, model) of the leaderboard, and each model's ranks over
    its `comparison_tasks` (the tasks of the across-tasks table)."""
    if lb.empty:
        return Evidence({})
    tasks = {
        (str(t), str(m)): task_evidence(g, n_boot)
        for (t, m), g in lb.groupby(["task", "model"], sort=True)
    }
    ranks = {
        str(m): rank_comparison(lb, str(m), comparison_tasks(lb, str(m)), n_boot)
        for m in sorted(lb["model"].unique())
    }
    return Evidence(tasks, {m: r for m, r in ranks.items() if r is not None})
