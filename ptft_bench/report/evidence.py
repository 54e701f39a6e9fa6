"""Evidence: the selected runs' per-example test predictions -> statistics per task and overall.

For each (task, model), the variants at their selected learning rate, less those whose runs all
learned nothing, are scored on one shared set of bootstrap resamples of the task's test examples
(`significance.TaskResamples`: `N_BOOT` draws, the task's primary metric recomputed on each,
seeds drawn too when there are 2+). That one cache answers every question the report asks of
the task: the gap of each variant to the best and to full fine-tuning with Holm-corrected
p-values, tie groups, McNemar, score intervals, the seed / test-sample variance split, and the
ties with whatever variant a budget recommends. Across tasks, the mean over tasks of per-task
resampled gaps (independent test sets, so independent draws) is the bootstrap distribution of
the mean gap.

A variant without usable predictions (records written before schema 2, a deleted file, test
labels that differ from the other runs') has no evidence; the reason is kept and the report
falls back to means and paired t-tests over seeds (`TaskEvidence.seed_tests`, computed for
every eligible variant whether or not it has predictions).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ptft_bench.records.store import load_predictions
from ptft_bench.report.aggregate import REFERENCE_STRATEGY, taught
from ptft_bench.report.stats.descriptive import PairedResult, paired_by_seed
from ptft_bench.report.stats.gaps import Gap, gap_from_draws
from ptft_bench.report.stats.ranks import RankComparison, compare_across_tasks
from ptft_bench.report.stats.significance import (
    METRICS,
    TaskComparison,
    TaskResamples,
    VariantRow,
)

N_BOOT = 2000
ALPHA = 0.05
NO_PREDICTIONS = "no per-example predictions: rerun to compare"
LABELS_DIFFER = "test labels differ from the other runs' (other data settings?): not compared"


@dataclass
class TaskEvidence:
    """Statistics of one (task, model): who is compared, on which resamples, and what is missing.

    ``eligible``: variants with a score whose selected runs did not all fail to learn (best,
    tie groups and recommendations consider only these). ``missing``: eligible variants without
    evidence, with the reason. ``reference``: the full fine-tuning variant when it is eligible.
    ``seed_tests``: each eligible variant's test scores against the reference's, paired by seed
    (a paired t-test; the comparison of record where a side has no predictions), empty without
    a reference.
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

    def has(self, variant: str) -> bool:
        """True when the variant's gaps can be bootstrapped."""
        return self.samples is not None and variant in self.samples.runs

    def row(self, variant: str) -> VariantRow | None:
        """The comparison row of an eligible variant with evidence (None otherwise)."""
        return self.comparison.row(variant) if self.comparison and self.has(variant) else None

    def ties_with(self, target: str) -> dict[str, bool]:
        """{variant: cannot be told apart from ``target``}, Holm-corrected over the variants
        with evidence; empty when the target has none."""
        if not self.has(target):
            return {}
        gaps = self.samples.gaps_to(target, [v for v in self.eligible if self.has(v)])
        return {v: v == target or g.p_adjusted >= ALPHA for v, g in gaps.items()}

    @property
    def one_seed(self) -> bool:
        """True when some compared variant has a single seed (intervals then miss seed noise)."""
        return self.samples is not None and any(len(r) == 1 for r in self.samples.runs.values())


def _predictions(row: pd.Series) -> tuple[np.ndarray, np.ndarray] | str:
    """(preds (S, n), labels (n,)) of a leaderboard row's selected runs, or why there are none."""
    preds, labels = [], None
    for _seed, record, source in row["selected_runs"]:
        loaded = load_predictions(Path(source), record)
        test = (loaded or {}).get("test")
        if test is None:
            return NO_PREDICTIONS
        if labels is not None and not np.array_equal(labels, test["label"]):
            return LABELS_DIFFER
        labels = np.asarray(test["label"])
        preds.append(np.asarray(test["pred"]))
    if labels is None:
        return NO_PREDICTIONS
    return np.stack(preds), labels


def task_seed(task: str) -> int:
    """Bootstrap seed of a task: stable, and different between tasks so that their draws are
    independent (a model comparison on one task shares the task's resamples)."""
    return zlib.crc32(task.encode())


def task_evidence(g: pd.DataFrame, n_boot: int = N_BOOT) -> TaskEvidence:
    """Load the predictions of one (task, model) leaderboard and compare its variants."""
    task, model = str(g["task"].iloc[0]), str(g["model"].iloc[0])
    metric = next((str(m) for m in g["primary_metric"] if isinstance(m, str)), None)
    ok = g[g["test_mean"].notna() & ~g["did_not_learn"].astype(bool)]
    eligible = [str(v) for v in ok["variant"]]
    full = ok[ok["strategy"] == REFERENCE_STRATEGY]
    reference = str(full.sort_values("test_mean")["variant"].iloc[-1]) if len(full) else None
    ev = TaskEvidence(task, model, metric, reference, eligible)
    if reference is not None:
        ref_scores = full.loc[full["variant"] == reference, "seed_scores"].iloc[0]
        ev.seed_tests = {
            str(r["variant"]): paired_by_seed(r["seed_scores"], ref_scores)
            for _, r in ok.iterrows()
        }
    if metric not in METRICS:
        ev.missing = {v: f"no resampling for metric {metric!r}" for v in eligible}
        return ev
    preds, labels, seeds = {}, None, {}
    for _, r in ok.iterrows():
        got = _predictions(r)
        if isinstance(got, str) or (labels is not None and not np.array_equal(labels, got[1])):
            ev.missing[str(r["variant"])] = got if isinstance(got, str) else LABELS_DIFFER
            continue
        preds[str(r["variant"])], labels = got
        seeds[str(r["variant"])] = [s for s, _, _ in r["selected_runs"]]
    if not preds:
        return ev
    # Rows are paired by seed only when every variant ran the very same seeds.
    paired = len({tuple(map(str, s)) for s in seeds.values()}) == 1
    ev.samples = TaskResamples.draw(metric, preds, labels, n_boot, task_seed(task), paired)
    ev.comparison = ev.samples.compare(list(preds), reference or REFERENCE_STRATEGY, ALPHA)
    return ev


@dataclass
class Evidence:
    """Every (task, model)'s `TaskEvidence`, and the statistics that combine tasks."""

    tasks: dict[tuple[str, str], TaskEvidence]
    ranks: dict[str, RankComparison] = field(default_factory=dict)

    def task(self, task: str, model: str) -> TaskEvidence | None:
        return self.tasks.get((str(task), str(model)))

    def restricted_to(self, lb: pd.DataFrame) -> Evidence:
        """The same evidence on the (task, model) pairs of ``lb`` only (e.g. `aggregate.taught`)."""
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

    def mean_gap(self, model: str, a: str, b: str) -> tuple[Gap | None, int]:
        """Gap a - b averaged over the tasks where both are eligible, with its bootstrap
        interval, and the number of those tasks; None when one of them lacks evidence."""
        common = [ev for ev in self.of_model(model) if a in ev.eligible and b in ev.eligible]
        if not common or not all(ev.has(a) and ev.has(b) for ev in common):
            return None, len(common)
        draws = np.mean([ev.samples.diffs(a, b) for ev in common], axis=0)
        observed = float(np.mean([ev.samples.score(a) - ev.samples.score(b) for ev in common]))
        na = min(len(ev.samples.runs[a]) for ev in common)
        nb = min(len(ev.samples.runs[b]) for ev in common)
        paired = all(ev.samples.pair_seeds for ev in common) and na == nb > 1
        return gap_from_draws(draws, observed, na, nb, paired), len(common)

    def ties_on_every_task(
        self, model: str, target: str, variants: Sequence[str]
    ) -> dict[str, bool | None]:
        """{variant: tied with ``target`` on every task both ran}; None when unknown (a task
        without evidence for one of them and no task that separates them)."""
        out: dict[str, bool | None] = {}
        per_task = [(ev, ev.ties_with(target)) for ev in self.of_model(model)]
        for v in variants:
            verdicts = [
                t.get(v) for ev, t in per_task if v in ev.eligible and target in ev.eligible
            ]
            if any(x is False for x in verdicts):
                out[v] = False
            elif verdicts and all(x is True for x in verdicts):
                out[v] = True
            else:
                out[v] = None
        return out


# Demšar's procedure needs several tasks to have any power, and a CD diagram of two variants
# says nothing a paired comparison does not.
MIN_TASKS_FOR_RANKS = 3
MIN_VARIANTS_FOR_RANKS = 3


def rank_comparison(lb: pd.DataFrame, n_boot: int = N_BOOT) -> RankComparison | None:
    """Mean ranks, Friedman and Nemenyi CD over the tasks of one model's leaderboard, for the
    variants with a score on every task that learned on every task (None below 3 tasks or 3
    such variants)."""
    ok = lb[lb["test_mean"].notna() & ~lb["did_not_learn"].astype(bool)]
    scores = ok.pivot_table(index="variant", columns="task", values="test_mean", aggfunc="mean")
    scores = scores.reindex(columns=sorted(lb["task"].unique())).dropna()
    if scores.shape[1] < MIN_TASKS_FOR_RANKS or scores.shape[0] < MIN_VARIANTS_FOR_RANKS:
        return None
    return compare_across_tasks(scores.to_numpy(), [str(v) for v in scores.index], n_boot)


def gather(lb: pd.DataFrame, n_boot: int = N_BOOT) -> Evidence:
    """`TaskEvidence` for every (task, model) of the leaderboard, and each model's ranks."""
    if lb.empty:
        return Evidence({})
    tasks = {
        (str(t), str(m)): task_evidence(g, n_boot)
        for (t, m), g in lb.groupby(["task", "model"], sort=True)
    }
    # Ranks compare over the tasks the budget taught, as the answer does (`aggregate.taught`).
    ranks = {str(m): rank_comparison(g, n_boot) for m, g in taught(lb).groupby("model", sort=True)}
    return Evidence(tasks, {m: r for m, r in ranks.items() if r is not None})
