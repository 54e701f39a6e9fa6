"""Computed recommendations: the best variant under a budget, and the Pareto-optimal sets.

Budgets are relative so that they carry over between machines and task sizes: trainable
parameters as % of the model; train time and peak memory as a fraction of full fine-tuning's on
the same task (of the most expensive variant when there is no full fine-tuning), averaged over
tasks. Only variants with a result on every task compete, since a mean over fewer tasks is not
comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ptft_bench.report import fmt
from ptft_bench.report.aggregate import REFERENCE_STRATEGY, across_tasks, vs_reference
from ptft_bench.report.stats import PairedResult, pareto_mask

PARAM_BUDGETS_PCT = (0.1, 1.0, 10.0)
TIME_BUDGETS = (0.25, 0.5, 0.75)
MEMORY_BUDGETS = (0.5, 0.75, 0.9)
# (column in the cost table, what the axis means) for each Pareto view.
PARETO_AXES = {
    "trainable_pct": "trainable parameters (% of model)",
    "time_ratio": "train time (x full fine-tuning)",
    "memory_ratio": "peak memory (x full fine-tuning)",
}


@dataclass(frozen=True)
class Recommendation:
    """The best variant under one budget (variant None when nothing fits)."""

    model: str
    kind: str  # "parameters" | "time" | "memory"
    budget: str  # e.g. "≤1% trainable parameters"
    variant: str | None
    score: float
    vs_full: PairedResult | None
    reference: str | None

    def text(self) -> str:
        """One line, e.g. "≤1% trainable parameters: lora(r=8), 85.1 points, −0.4 ± 0.6 vs full"."""
        if self.variant is None:
            return f"{self.budget}: no variant fits this budget"
        out = f"{self.budget}: {self.variant}, {self.score:.1f} points"
        if self.vs_full is not None and self.vs_full.n_pairs:
            p = self.vs_full
            diff = fmt.signed(p.mean_diff, p.std_diff)
            out += f", {diff} points vs {self.reference} ({p.verdict()})"
        elif self.variant == self.reference:
            out += " (the full fine-tuning reference)"
        return out


def cost_table(lb: pd.DataFrame) -> pd.DataFrame:
    """Across-task table with time and memory as ratios to full fine-tuning per task."""
    lb = lb[lb["test_mean"].notna()].copy()
    for col, ratio in (("train_seconds", "time_ratio"), ("peak_memory_bytes", "memory_ratio")):
        lb[ratio] = math.nan
        for _, idx in lb.groupby(["task", "model"]).groups.items():
            g = lb.loc[idx]
            ref = g.loc[g["strategy"] == REFERENCE_STRATEGY, col]
            base = ref.max() if ref.notna().any() else g[col].max()
            lb.loc[idx, ratio] = g[col] / base if base and math.isfinite(base) else math.nan
    ratios = lb.groupby(["model", "variant"])[["time_ratio", "memory_ratio"]].mean().reset_index()
    return across_tasks(lb).merge(ratios, on=["model", "variant"], how="left")


def _fmt_budget(kind: str, limit: float) -> str:
    if kind == "parameters":
        return f"≤{limit:g}% trainable parameters"
    what = "train time" if kind == "time" else "peak memory"
    return f"≤{limit:g}× full fine-tuning's {what}"


def recommendations(lb: pd.DataFrame) -> list[Recommendation]:
    """The best variant (highest mean score over tasks) under each budget, per model."""
    costs = cost_table(lb)
    _, overall = vs_reference(lb)
    out: list[Recommendation] = []
    for model, g in costs[costs["all_tasks"]].groupby("model"):
        ref_rows = overall[overall["model"] == model] if len(overall) else overall
        reference = ref_rows["reference"].iloc[0] if len(ref_rows) else None
        budgets = (
            [("parameters", b, "trainable_pct") for b in PARAM_BUDGETS_PCT]
            + [("time", b, "time_ratio") for b in TIME_BUDGETS]
            + [("memory", b, "memory_ratio") for b in MEMORY_BUDGETS]
        )
        for kind, limit, col in budgets:
            fits = g[g[col] <= limit + 1e-12]
            if fits.empty:
                out.append(
                    Recommendation(
                        model, kind, _fmt_budget(kind, limit), None, math.nan, None, reference
                    )
                )
                continue
            best = fits.sort_values(["mean_score", "mean_rank"], ascending=[False, True]).iloc[0]
            match = ref_rows[ref_rows["variant"] == best["variant"]] if len(ref_rows) else ref_rows
            vs = match["paired"].iloc[0] if len(match) else None
            out.append(
                Recommendation(
                    model,
                    kind,
                    _fmt_budget(kind, limit),
                    str(best["variant"]),
                    float(best["mean_score"]),
                    vs,
                    reference,
                )
            )
    return out


def pareto_sets(lb: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """{(model, axis): Pareto-optimal variants}, across tasks, for each axis in PARETO_AXES.

    A variant is optimal when no other variant is at least as cheap and scores at least as high,
    and is strictly better in one of the two. Listed cheapest first.
    """
    costs = cost_table(lb)
    out: dict[tuple[str, str], list[str]] = {}
    for model, g in costs[costs["all_tasks"]].groupby("model"):
        for axis in PARETO_AXES:
            mask = pareto_mask(g[axis].tolist(), g["mean_score"].tolist())
            front = g[mask].sort_values(axis)
            out[(str(model), axis)] = front["variant"].tolist()
    return out
