"""Computed recommendations: the variant to use under each budget, the variants tied with it,
and the Pareto-optimal sets.

Budgets are relative so that they carry over between machines and task sizes: trainable
parameters as % of the model; train time and peak memory as a multiple of full fine-tuning's on
the same task (of the most expensive variant when there is no full fine-tuning), averaged over
tasks. Only variants with a result on every task, that learned something on every task, compete:
a mean over fewer tasks is not comparable, and a run that learned nothing is not a choice.

A budget is one `BudgetAxis` entry: any numeric leaderboard column can be one (every cost field
of the run record is, automatically, and so is the serving latency `inference_latency_ms`), and
an axis that no record measures is left out of the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ptft_bench.report.aggregate import REFERENCE_STRATEGY, across_tasks, taught
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.render import fmt
from ptft_bench.report.stats.descriptive import pareto_mask


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
    "Under each budget, among the variants that fit it (mean cost over tasks) and learned on every "
    "task, use the one with the best mean test score over tasks; **tied** lists the other variants "
    "that fit and cannot be told apart from it on any task (paired bootstrap, Holm-corrected, 5% "
    "level). A task on which more than half of the variants learned nothing (no test score above "
    "the constant-prediction baseline) is left out of the rule and named below."
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


def candidates(costs: pd.DataFrame, model: str) -> pd.DataFrame:
    """The variants of ``model`` that may be recommended."""
    return costs[(costs["model"] == model) & costs["all_tasks"] & costs["learned_all"]]


@dataclass(frozen=True)
class Recommendation:
    """The variant to use under one budget (None when nothing fits) and those tied with it.

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

    def text(self) -> str:
        """One line, e.g. "≤1% trainable parameters: lora(r=8), 85.1 points; tied: bitfit"."""
        if self.variant is None:
            return f"{self.budget}: no variant fits this budget"
        out = f"{self.budget}: {self.variant}, {self.score:.1f} points"
        if self.tied:
            out += f"; tied: {', '.join(self.tied)}"
        return out + ("" if self.ties_known else " (ties unknown: predictions missing)")


def _pick(model: str, kind: str, budget: str, fits: pd.DataFrame, ev: Evidence):
    if fits.empty:
        return Recommendation(model, kind, budget, None, math.nan)
    ranked = fits.sort_values(["mean_score", "mean_rank"], ascending=[False, True])
    best = str(ranked["variant"].iloc[0])
    others = [str(v) for v in ranked["variant"].iloc[1:]]
    ties = ev.ties_on_every_task(model, best, others)
    tied = tuple(v for v in others if ties.get(v) is True)
    known = all(t is not None for t in ties.values())
    return Recommendation(
        model, kind, budget, best, float(ranked["mean_score"].iloc[0]), tied, known
    )


def recommendations(lb: pd.DataFrame, ev: Evidence) -> list[Recommendation]:
    """Per model: the pick without a limit, then under each limit of each `BUDGET_AXES`, over
    the tasks the budget taught (`aggregate.taught`)."""
    lb = taught(lb)
    ev = ev.restricted_to(lb)
    costs = cost_table(lb)
    out: list[Recommendation] = []
    for model in sorted(costs["model"].unique()):
        g = candidates(costs, model)
        out.append(_pick(model, "", NO_LIMIT, g, ev))
        for axis in active_axes(costs[costs["model"] == model]):
            for limit in axis.limits:
                fits = g[g[axis.column] <= limit + 1e-12]
                out.append(_pick(model, axis.kind, axis.label(limit), fits, ev))
    return out


def pareto_sets(lb: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """{(model, axis kind): Pareto-optimal variants}, across tasks, for each budget axis.

    A variant is optimal when no other variant is at least as cheap and scores at least as high,
    and is strictly better in one of the two. Listed cheapest first. Over the tasks the budget
    taught, as the recommendations are.
    """
    costs = cost_table(taught(lb))
    out: dict[tuple[str, str], list[str]] = {}
    for model in sorted(costs["model"].unique()):
        g = candidates(costs, model)
        for axis in active_axes(costs[costs["model"] == model]):
            mask = pareto_mask(g[axis.column].tolist(), g["mean_score"].tolist())
            front = g[pd.Series(mask, index=g.index, dtype=bool)].sort_values(axis.column)
            out[(str(model), axis.kind)] = front["variant"].tolist()
    return out
