"""The answer, the report's first section: for each budget, the variant to use, the variants
tied with it, what each costs and how far each is from full fine-tuning (with its 95% interval),
and the notes that qualify it (one seed, missing evidence, tasks left out of the rule, noisy
latency, variants never recommended).

Everything comes from `recommend.recommendations` (the rule, stated in the report) and
`evidence.Evidence` (the intervals and ties); this module only lays it out.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.aggregate import across_tasks, not_taught, taught, vs_reference
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.load import latency_noise_band
from ptft_bench.report.recommend import (
    RULE,
    BudgetAxis,
    Recommendation,
    active_axes,
    cost_table,
    recommendations,
)
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table
from ptft_bench.report.sections.common import gap_to_full

ANSWER_TITLE = "Answer: which strategy for which budget"
NOTE = (
    "Mean score: test primary metric (points) averaged over tasks. Δ vs full: mean over tasks of "
    "the gap to full fine-tuning, 95% bootstrap interval over test examples (and seeds when 2+). "
    "Costs: means over tasks; in brackets, multiples of full fine-tuning's on the same task (the "
    "quantity the budgets limit)."
)
COLUMNS = ["budget", "use", "mean score", "Δ vs full [95% CI]"]


def _cost_cells(c: pd.Series, axes: list[BudgetAxis]) -> list[Cell]:
    """One cell per budget axis: the mean over tasks, and the multiple of full fine-tuning's."""
    out = []
    for axis in axes:
        text = axis.show(c[axis.value])
        if axis.relative and fmt.finite(c[axis.column]):
            text += f" ({fmt.ratio(c[axis.column])})"
        out.append(Cell(text, c[axis.value]))
    return out


def _rows(rec: Recommendation, costs: pd.DataFrame, axes, gap_cell) -> list[list[Cell]]:
    empty = 2 + len(axes)
    if rec.variant is None:
        return [[Cell(rec.budget), Cell("no variant fits")] + [Cell(fmt.DASH)] * empty]
    out = []
    for i, v in enumerate((rec.variant, *rec.tied)):
        c = costs[(costs["model"] == rec.model) & (costs["variant"] == v)].iloc[0]
        label = f"**{v}**" if i == 0 else f"≈ {v} (tied)"
        out.append(
            [Cell(rec.budget if i == 0 else ""), Cell(label, v)]
            + [Cell(fmt.points(c["mean_score"]), c["mean_score"]), gap_cell(v)]
            + _cost_cells(c, axes)
        )
    if not rec.ties_known:
        out.append([Cell(""), Cell("ties unknown: some tasks lack per-example predictions")])
        out[-1] += [Cell("")] * empty
    return out


def _notes(lb: pd.DataFrame, evidence: Evidence) -> list[Paragraph]:
    out = []
    if evidence.one_seed:
        out.append(
            Paragraph(
                "**One seed**: intervals cover the test sample only, not seed-to-seed variation "
                "(often several points on small tasks), so they are a lower bound on the "
                'uncertainty; a one-seed "significant" gap may not survive another seed.'
            )
        )
    if evidence.any_missing:
        out.append(
            Paragraph(
                "Some comparisons lack evidence (no per-example predictions: rerun to compare); "
                "they fall back to means and paired t-tests over seeds and their ties are unknown."
            )
        )
    scored = lb[lb["test_mean"].notna()]
    left_out = _left_out_text(scored)
    if left_out:
        out.append(
            Paragraph(
                f"**Left out of the rule**: {left_out}. Under this budget most variants did not "
                "beat the constant-prediction baseline there, so those tasks do not separate the "
                "strategies: mean scores, gaps and ties above are over the other tasks; every "
                "result is in the leaderboards ({§leaderboards}) and {§did_not_learn}."
            )
        )
    noisy = _latency_noise_text(scored)
    if noisy:
        out.append(Paragraph(noisy))
    summary = across_tasks(scored) if len(scored) else scored
    barred = summary[~summary["learned_all"].astype(bool)] if len(summary) else summary
    dead = sorted(set(barred.loc[barred["n_did_not_learn"] > 0, "variant"])) if len(barred) else []
    if dead:
        out.append(
            Paragraph(
                f"Never recommended: {', '.join(f'`{v}`' for v in dead)} learned nothing at "
                "their selected learning rate on some task ({§did_not_learn})."
            )
        )
    return out


# Runs that serve the base model's computation (full, head-only, BitFit, ...) measure the same
# latency up to noise; when they spread wider than this, say so next to the latency budgets.
NOISY_LATENCY_SPREAD = 0.2


def _latency_noise_text(scored: pd.DataFrame) -> str:
    band = latency_noise_band(scored)
    if band is None or band[1] - band[0] <= NOISY_LATENCY_SPREAD:
        return ""
    lo, hi = band
    return (
        f"**Serving latency is noisy here**: runs whose model serves the same computation as the "
        f"base model measured {lo:.2f}–{hi:.2f}× base (machine load while they were measured), "
        "so a latency ratio or budget inside that band is not a real difference ({§cost})."
    )


def _left_out_text(scored: pd.DataFrame) -> str:
    """ "`cola` (6 of 8 variants learned nothing), ..." for the tasks `not_taught` leaves out."""
    if scored.empty:
        return ""
    out = []
    many = scored["model"].nunique() > 1
    for (task, model), g in scored[not_taught(scored)].groupby(["task", "model"], sort=True):
        dead = int(g["did_not_learn"].astype(bool).sum())
        out.append(
            f"`{task}`"
            + (f" with `{model}`" if many else "")
            + f" ({dead} of {len(g)} variants learned nothing)"
        )
    return ", ".join(out)


def answer_section(lb: pd.DataFrame, evidence: Evidence) -> Section:
    """The report's first section."""
    sec = Section(ANSWER_TITLE, key="answer")
    if lb.empty or lb["test_mean"].notna().sum() == 0:
        sec.blocks.append(Paragraph("No successful runs, so there is nothing to recommend yet."))
        return sec
    sec.blocks.append(Paragraph("**Rule.** " + RULE))
    recs = recommendations(lb, evidence)
    rule_lb = taught(lb)  # the tasks the rule compares on; the others are named in the notes
    rule_ev = evidence.restricted_to(rule_lb)
    costs = cost_table(rule_lb)
    _, overall = vs_reference(rule_lb)
    for model in sorted(lb["model"].unique()):
        mine = [r for r in recs if r.model == model]
        if not mine:
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: every task is left out of the rule (below), so there is "
                    "nothing to recommend (see {§did_not_learn})."
                )
            )
            continue
        if all(r.variant is None for r in mine):
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: no variant has a result on every task and learned "
                    "something on each, so there is nothing to recommend (see {§did_not_learn})."
                )
            )
            continue
        axes = active_axes(costs[costs["model"] == model])
        rows = []
        for rec in mine:
            gap_cell = lambda v, m=model: gap_to_full(rule_ev, rule_lb, m, v, overall)  # noqa: E731
            rows += _rows(rec, costs, axes, gap_cell)
        n_tasks = rule_lb.loc[rule_lb["model"] == model, "task"].nunique()
        columns = COLUMNS + [a.what for a in axes]
        sec.blocks.append(
            Table(columns, rows, caption=f"Model `{model}`, {n_tasks} task(s)", note=NOTE)
        )
    sec.blocks += _notes(lb, evidence)
    return sec
