"""Computed recommendations: the variant to use under each budget, the variants tied with it,
the Pareto-optimal sets, and the answer's rows (`choices`: the variants not dominated on score
and every budgeted cost at once, each with the budgets it is picked under and its ties).

Budgets are relative so that they carry over between machines and task sizes: trainable
parameters as % of the model; train time and peak memory as a multiple of full fine-tuning's on
the same task (of the most expensive variant when there is no full fine-tuning), averaged over
tasks. The rule compares over one task set per model (`evidence.rule_tasks`: every task on which
some variant beats the constant prediction on validation), and only variants with a usable
result on every one of those tasks compete: a mean over fewer tasks is not comparable, and a
run that learned nothing (or collapsed) is not a choice. Ties are decided on the same mean the
pick maximises: the mean gap to the pick over those tasks, Holm-corrected over the variants
that fit the budget, with the matching Bonferroni interval (`evidence.Evidence.mean_gaps_to`).

A budget is one `BudgetAxis` entry: any numeric leaderboard column can be one (every cost field
of the run record is, automatically, and so is the serving latency `inference_latency_ms`), and
an axis that no record measures is left out of the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from ptft_bench.report.aggregate import REFERENCE_STRATEGY, across_tasks
from ptft_bench.report.evidence import (
    ALPHA,
    Evidence,
    comparison_tasks,
    complete_variants,
    rule_tasks,
)
from ptft_bench.report.render import fmt
from ptft_bench.report.stats.descriptive import pareto_mask
from ptft_bench.report.stats.gaps import Gap


@dataclass(frozen=True)
class BudgetAxis:
    """One kind of budget: a cost column of the leaderboard, and limits on its mean over tasks.

    ``relative``: the limit is a multiple of full fine-tuning's value on the same task; else the
    source's own unit (a percentage for the parameter share). ``show`` formats the source's
    value. In `cost_table`, ``column`` is the budgeted quantity and ``value`` the source's mean.
    """

    kind: str
    source: str
    what: str
    limits: tuple[float, ...]
    relative: bool
    show: Callable[[float], str]
    unit: str = "%"  # how an absolute limit is written: "≤1% ...", "≤1.1× ..."
    short: str = ""  # the axis in a word, for the short labels: "params", "time", ...

    @property
    def column(self) -> str:
        return f"{self.kind}_cost"

    @property
    def value(self) -> str:
        return f"{self.kind}_value"

    def label(self, limit: float) -> str:
        if self.relative:
            return f"≤{limit:g}× full fine-tuning's {self.what}"
        return f"≤{limit:g}{self.unit} {self.what}"

    def short_label(self, *limits: float) -> str:
        """ "≤1% params", "≤0.5× time", "≤1.1×, ≤1.5× latency": the label in the answer."""
        mark = "%" if not self.relative and self.unit == "%" else "×"
        return f"{', '.join(f'≤{x:g}{mark}' for x in limits)} {self.short or self.kind}"


# A budget is one line here. Memory is the run's own (its increment over the process baseline,
# in a fresh worker); inference is the serving latency at batch 1 over the base model's (of a
# generation run: its time to first token).
BUDGET_AXES = (
    BudgetAxis(
        "parameters",
        "trainable_pct",
        "trainable parameters",
        (0.1, 1.0, 10.0),
        False,
        fmt.pct,
        short="params",
    ),
    BudgetAxis(
        "time", "train_seconds", "train time", (0.25, 0.5, 0.75), True, fmt.seconds, short="time"
    ),
    BudgetAxis(
        "memory",
        "memory_bytes",
        "training memory",
        (0.5, 0.75, 0.9),
        True,
        fmt.nbytes,
        short="memory",
    ),
    BudgetAxis(
        "inference",
        "inference_overhead",
        "serving latency",
        (1.1, 1.5),
        False,
        lambda x: f"{x:.2f}× base" if fmt.finite(x) else fmt.DASH,
        "× the base model's",
        short="latency",
    ),
)
# The answer lists at most this many variants per model (`choices`).
MAX_CHOICES = 12
NO_LIMIT = "no limit"
RULE = (
    "Over the tasks on which some variant beats the constant-prediction baseline on validation "
    "(named in each table's caption), among the variants that fit the budget (mean cost over "
    "those tasks) and learned on every one of them, use the one with the best mean test score; "
    "**tied** lists the other variants that fit and whose mean gap to it over the same tasks is "
    "not significant (Holm-corrected over the variants that fit, 5% level), each with its 95% "
    "simultaneous interval (Bonferroni over the same comparisons). A run learned when its "
    "validation Matthews (classification) or Pearson (regression) correlation, which a constant "
    "prediction cannot lift above 0, has a 95% bootstrap interval above 0; a run that predicts "
    "one constant has *collapsed* (a configuration failure, not a verdict on the strategy)."
)


def cost_table(lb: pd.DataFrame) -> pd.DataFrame:
    """`across_tasks` plus, per budget axis averaged over tasks, the budgeted quantity (a ratio
    to full fine-tuning where relative) in `axis.column` and the source's value in `axis.value`."""
    lb = lb[lb["test_mean"].notna()].copy()
    for axis in BUDGET_AXES:
        lb[axis.column] = lb[axis.value] = math.nan
        if axis.source not in lb:
            continue
        lb[axis.value] = lb[axis.source].astype(float)
        if not axis.relative:
            lb[axis.column] = lb[axis.source].astype(float)
            continue
        for _, idx in lb.groupby(["task", "model"]).groups.items():
            g = lb.loc[idx]
            ref = g.loc[g["strategy"] == REFERENCE_STRATEGY, axis.source]
            base = ref.max() if ref.notna().any() else g[axis.source].max()
            ok = base and math.isfinite(base)
            lb.loc[idx, axis.column] = g[axis.source] / base if ok else math.nan
    columns = [c for a in BUDGET_AXES for c in (a.column, a.value)]
    means = lb.groupby(["model", "variant"])[columns].mean().reset_index()
    return across_tasks(lb).merge(means, on=["model", "variant"], how="left")


def active_axes(costs: pd.DataFrame) -> list[BudgetAxis]:
    """The budget axes measured in ``costs`` (older records lack some, e.g. inference cost)."""
    return [a for a in BUDGET_AXES if a.column in costs and costs[a.column].notna().any()]


def candidates(costs: pd.DataFrame, lb: pd.DataFrame, model: str, tasks) -> pd.DataFrame:
    """The variants of ``model`` that may be recommended: a usable result on every task."""
    mine = costs[costs["model"] == model]
    return mine[mine["variant"].isin(complete_variants(lb, model, tasks))]


@dataclass(frozen=True)
class Recommendation:
    """The variant to use under one budget (None when nothing fits) and those tied with it.

    ``tasks``: the tasks compared on. ``gaps``: each other variant that fits, its mean gap to
    the choice over those tasks (one family: Holm p, Bonferroni interval; None when unknown).
    ``ties_known`` is False when some task lacks per-example predictions for the choice or a
    candidate, so that a tie could not be established either way.
    """

    model: str
    kind: str
    budget: str
    variant: str | None
    score: float
    tied: tuple[str, ...] = ()
    ties_known: bool = True
    tasks: tuple[str, ...] = ()
    gaps: dict[str, Gap | None] = field(default_factory=dict, compare=False)
    short: str = ""  # the budget in a few words: "no limit", "≤1% params" (`short_label`)
    limit: float | None = None  # the limit on the axis ``kind``; None without a limit

    def text(self) -> str:
        """One line, e.g. "≤1% trainable parameters: lora(r=8), 85.1 points; tied: bitfit"."""
        if self.variant is None:
            return f"{self.budget}: no variant fits this budget"
        out = f"{self.budget}: {self.variant}, {self.score:.1f} points"
        if self.tied:
            out += f"; tied: {', '.join(self.tied)}"
        return out + ("" if self.ties_known else " (ties unknown: predictions missing)")


def _pick(model: str, kind: str, budget: str, fits: pd.DataFrame, ev: Evidence, tasks):
    if fits.empty:
        return Recommendation(model, kind, budget, None, math.nan, tasks=tuple(tasks))
    ranked = fits.sort_values(["mean_score", "mean_rank"], ascending=[False, True])
    best = str(ranked["variant"].iloc[0])
    others = [str(v) for v in ranked["variant"].iloc[1:]]
    gaps = ev.mean_gaps_to(model, best, others, tasks)
    tied = tuple(v for v in others if gaps[v] is not None and not gaps[v].significant(ALPHA))
    known = all(g is not None for g in gaps.values())
    score = float(ranked["mean_score"].iloc[0])
    return Recommendation(model, kind, budget, best, score, tied, known, tuple(tasks), gaps)


def rule_board(lb: pd.DataFrame, model: str) -> tuple[pd.DataFrame, list[str]]:
    """``model``'s leaderboard on its `evidence.rule_tasks`, and those tasks."""
    tasks = rule_tasks(lb, model)
    return lb[(lb["model"] == model) & lb["task"].isin(tasks)], tasks


def recommendations(lb: pd.DataFrame, ev: Evidence) -> list[Recommendation]:
    """Per model with a task in the rule: the pick without a limit, then under each limit of
    each `BUDGET_AXES`, over the model's `evidence.rule_tasks`."""
    out: list[Recommendation] = []
    for model in sorted(lb["model"].unique()) if len(lb) else []:
        mlb, tasks = rule_board(lb, str(model))
        if not tasks:
            continue
        costs = cost_table(mlb)
        g = candidates(costs, mlb, str(model), tasks)
        out.append(replace(_pick(model, "", NO_LIMIT, g, ev, tasks), short=NO_LIMIT))
        for axis in active_axes(costs):
            for limit in axis.limits:
                fits = g[g[axis.column] <= limit + 1e-12]
                rec = _pick(model, axis.kind, axis.label(limit), fits, ev, tasks)
                out.append(replace(rec, short=axis.short_label(limit), limit=limit))
    return out


def _by_score(costs: pd.DataFrame) -> pd.DataFrame:
    """Best mean score first; equal scores: the better mean rank (as `_pick` ranks them)."""
    return costs.sort_values(["mean_score", "mean_rank"], ascending=[False, True])


def _dominates(a: pd.Series, b: pd.Series, columns: list[str]) -> bool:
    """``a`` scores at least as high as ``b`` and costs no more on every column, strictly better
    on one. A column unknown on one side only is a cost ``a`` cannot be shown to beat."""
    strict = a["mean_score"] > b["mean_score"]
    if a["mean_score"] < b["mean_score"]:
        return False
    for c in columns:
        x, y = a[c], b[c]
        if not fmt.finite(x) and not fmt.finite(y):
            continue
        if not (fmt.finite(x) and fmt.finite(y)) or x > y:
            return False
        strict = strict or x < y
    return bool(strict)


def non_dominated(candidates_: pd.DataFrame, axes: list[BudgetAxis]) -> list[str]:
    """The variants of ``candidates_`` (one model's `candidates` rows of `cost_table`) that no
    other dominates on mean score and every budgeted cost at once (`axis.column` of ``axes``):
    the choices a budget on any mix of those costs could turn on. By mean score, best first."""
    columns = [a.column for a in axes]
    rows = [r for _, r in _by_score(candidates_).iterrows()]
    return [
        str(r["variant"])
        for r in rows
        if not any(_dominates(o, r, columns) for o in rows if o["variant"] != r["variant"])
    ]


@dataclass(frozen=True)
class Choice:
    """One row of the answer: a variant, the budgets it is the pick under (short labels), and
    the variants tied with it under some budget (it was the pick and they were tied, or the
    other way round). ``ties_known`` is False when a budget it is picked under could not tell
    (missing predictions). ``dominated``: picked, yet another variant is as good and cheaper."""

    variant: str
    picked_under: tuple[str, ...] = ()
    tied_with: tuple[str, ...] = ()
    ties_known: bool = True
    dominated: bool = False


def choices(recs: list[Recommendation], candidates_: pd.DataFrame, axes: list[BudgetAxis]):
    """(rows, left out) for one model: every budget's pick and the `non_dominated` variants, by
    mean score, at most `MAX_CHOICES` (picks first kept); ``left out``: the non-dominated
    variants beyond that."""
    front = non_dominated(candidates_, axes)
    picks = {r.variant for r in recs if r.variant is not None}
    order = [str(v) for v in _by_score(candidates_)["variant"]]
    shown = [v for v in order if v in picks or v in front]
    keep = [v for v in shown if v in picks]
    keep += [v for v in shown if v not in picks][: max(0, MAX_CHOICES - len(keep))]
    rows = []
    for v in (v for v in shown if v in keep):
        mine = [r for r in recs if r.variant == v]
        tied = {w for r in mine for w in r.tied}
        tied |= {str(r.variant) for r in recs if v in r.tied}
        rows.append(
            Choice(
                v,
                picked_labels(mine, recs),
                tuple(w for w in order if w in tied),
                all(r.ties_known for r in mine),
                v not in front,
            )
        )
    return rows, [v for v in shown if v not in keep]


EVERY_BUDGET = "every budget"


def picked_labels(mine: list[Recommendation], recs: list[Recommendation]) -> tuple[str, ...]:
    """The budgets of ``mine`` (one variant's picks among ``recs``), limits grouped per axis:
    ("no limit", "≤1%, ≤10% params"); (`EVERY_BUDGET`,) when it is the pick of every budget
    that some variant fits (2+ of them)."""
    fitted = [r for r in recs if r.variant is not None]
    if len(mine) > 1 and len(mine) == len(fitted):
        return (EVERY_BUDGET,)
    out = [r.short or r.budget for r in mine if r.limit is None]
    for axis in BUDGET_AXES:
        limits = [r.limit for r in mine if r.kind == axis.kind and r.limit is not None]
        out += [axis.short_label(*limits)] if limits else []
    return tuple(out)


def cheapest_tied(
    rec: Recommendation, candidates_: pd.DataFrame, axes: list[BudgetAxis]
) -> str | None:
    """The variant tied with ``rec``'s pick that is cheapest across the budgeted costs: the
    lowest mean rank over ``axes`` among those cheaper than the pick on at least one of them
    (unknown costs rank last; ties: the higher mean score). None when no tied variant is."""
    rows = candidates_.set_index("variant")
    tied = [v for v in rec.tied if v in rows.index]
    if rec.variant is None or not tied or not axes:
        return None
    pick = rows.loc[rec.variant]
    cheaper = [v for v in tied if any(rows.loc[v, a.column] < pick[a.column] for a in axes)]
    if not cheaper:
        return None
    ranks = rows.loc[cheaper, [a.column for a in axes]].rank(na_option="bottom").mean(axis=1)
    score = rows.loc[cheaper, "mean_score"]
    return min(cheaper, key=lambda v: (ranks[v], -score[v], v))


def pareto_sets(lb: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """{(model, axis kind): Pareto-optimal variants}, across tasks, for each budget axis.

    A variant is optimal when no other variant is at least as cheap and scores at least as high,
    and is strictly better in one of the two. Listed cheapest first. Over the tasks of the
    across-tasks table (`evidence.comparison_tasks`), among the variants with a usable result
    on every one of them.
    """
    out: dict[tuple[str, str], list[str]] = {}
    for model in sorted(lb["model"].unique()) if len(lb) else []:
        tasks = comparison_tasks(lb, str(model))
        mlb = lb[(lb["model"] == model) & lb["task"].isin(tasks)]
        if not tasks:
            continue
        costs = cost_table(mlb)
        g = candidates(costs, mlb, str(model), tasks)
        for axis in active_axes(costs):
            mask = pareto_mask(g[axis.column].tolist(), g["mean_score"].tolist())
            front = g[pd.Series(mask, index=g.index, dtype=bool)].sort_values(axis.column)
            out[(str(model), axis.kind)] = front["variant"].tolist()
    return out
