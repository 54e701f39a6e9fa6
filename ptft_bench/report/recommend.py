"""Computed recommendations: the variant to use under each budget, the variants tied with it,
and the Pareto-optimal sets.

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
from dataclasses import dataclass, field

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


# A budget is one line here. Memory is the run's own (its increment over the process baseline,
# in a fresh worker); inference is the serving latency at batch 1 over the base model's.
BUDGET_AXES = (
    BudgetAxis(
        "parameters", "trainable_pct", "trainable parameters", (0.1, 1.0, 10.0), False, fmt.pct
    ),
    BudgetAxis("time", "train_seconds", "train time", (0.25, 0.5, 0.75), True, fmt.seconds),
    BudgetAxis("memory", "memory_bytes", "training memory", (0.5, 0.75, 0.9), True, fmt.nbytes),
    BudgetAxis(
        "inference",
        "inference_overhead",
        "serving latency",
        (1.1, 1.5),
        False,
        lambda x: f"{x:.2f}× base" if fmt.finite(x) else fmt.DASH,
        "× the base model's",
    ),
)
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
        out.append(_pick(model, "", NO_LIMIT, g, ev, tasks))
        for axis in active_axes(costs):
            for limit in axis.limits:
                fits = g[g[axis.column] <= limit + 1e-12]
                out.append(_pick(model, axis.kind, axis.label(limit), fits, ev, tasks))
    return out


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
