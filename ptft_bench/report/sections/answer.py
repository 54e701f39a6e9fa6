"""The answer, the report's first section: for each budget, the variant to use, the variants
tied with it (with the simultaneous interval of their gap to it), what each costs and how far
each is from full fine-tuning (with its 95% interval), all over one task set per model named in
the table's caption; then the notes that qualify it (the tasks in and out of the rule and why,
collapsed runs, variants that cannot be recommended, one seed, missing evidence, noisy latency).

Everything comes from `recommend.recommendations` (the rule, stated in the report) and
`evidence.Evidence` (the intervals and ties); this module only lays it out.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.aggregate import reference_variant, vs_reference
from ptft_bench.report.evidence import Evidence, left_out_tasks
from ptft_bench.report.load import latency_noise_band
from ptft_bench.report.recommend import (
    RULE,
    BudgetAxis,
    Recommendation,
    active_axes,
    cost_table,
    recommendations,
    rule_board,
)
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table
from ptft_bench.report.sections.common import (
    COLLAPSE,
    gap_to_full,
    learning_of,
    not_compared,
    sim_gap,
    tasks_text,
)

ANSWER_TITLE = "Answer: which strategy for which budget"
NOTE = (
    "Every row is over the same tasks, those of the caption. Mean score: test primary metric "
    "(points) averaged over them. Δ vs full: mean over them of the gap to full fine-tuning, 95% "
    "interval (test examples, and seeds when 2+: see the leaderboards for how); not a tie test. "
    "Δ vs pick: mean gap to the budget's pick over the same tasks, 95% simultaneous interval "
    "(Bonferroni over the other variants that fit the budget); ties: Holm over the same "
    "comparisons, so a tied variant's interval always contains 0. Costs: means over the tasks; "
    "in brackets, multiples of full fine-tuning's on the same task (the quantity the budgets "
    "limit)."
)
COLUMNS = ["budget", "use", "mean score", "Δ vs full [95% CI]", "Δ vs pick [95% simult. CI]"]


def _cost_cells(c: pd.Series, axes: list[BudgetAxis]) -> list[Cell]:
    """One cell per budget axis: the mean over tasks, and the multiple of full fine-tuning's."""
    out = []
    for axis in axes:
        text = axis.show(c[axis.value])
        if axis.relative and fmt.finite(c[axis.column]):
            text += f" ({fmt.ratio(c[axis.column])})"
        out.append(Cell(text, c[axis.value]))
    return out


def _pick_cell(rec: Recommendation, v: str) -> Cell:
    if v == rec.variant:
        return Cell("pick", 0.0)
    g = rec.gaps.get(v)
    return Cell(sim_gap(g), 100 * g.observed) if g is not None else Cell(fmt.DASH)


def _rows(rec: Recommendation, costs: pd.DataFrame, axes, gap_cell) -> list[list[Cell]]:
    empty = 3 + len(axes)
    if rec.variant is None:
        return [[Cell(rec.budget), Cell("no variant fits")] + [Cell(fmt.DASH)] * empty]
    out = []
    for i, v in enumerate((rec.variant, *rec.tied)):
        c = costs[(costs["model"] == rec.model) & (costs["variant"] == v)].iloc[0]
        label = f"**{v}**" if i == 0 else f"≈ {v} (tied)"
        out.append(
            [Cell(rec.budget if i == 0 else ""), Cell(label, v)]
            + [Cell(fmt.points(c["mean_score"]), c["mean_score"]), gap_cell(v)]
            + [_pick_cell(rec, v)]
            + _cost_cells(c, axes)
        )
    if not rec.ties_known:
        out.append([Cell(""), Cell("ties unknown: some tasks lack per-example predictions")])
        out[-1] += [Cell("")] * empty
    return out


def _model_table(lb: pd.DataFrame, evidence: Evidence, model: str, recs) -> Table:
    mlb, tasks = rule_board(lb, model)
    costs = cost_table(mlb)
    axes = active_axes(costs)
    _, overall = vs_reference(mlb)
    rows = []
    for rec in recs:
        gap_cell = lambda v: gap_to_full(evidence, mlb, model, v, tasks, overall)  # noqa: E731
        rows += _rows(rec, costs, axes, gap_cell)
    caption = f"Model `{model}`, over {tasks_text(tasks)}"
    return Table(COLUMNS + [a.what for a in axes], rows, caption=caption, note=NOTE)


def _why_not(mlb: pd.DataFrame) -> dict[str, str]:
    """{variant: "collapsed on cola, mrpc; did not learn on rte"} for the variants without a
    usable result on some task of ``mlb`` (a model's leaderboard on its rule tasks)."""
    out: dict[str, str] = {}
    tasks = sorted(mlb["task"].unique())
    for variant, g in mlb.groupby("variant", sort=True):
        rows = {str(r["task"]): r for _, r in g.iterrows()}
        why: dict[str, list[str]] = {}
        for t in tasks:
            reason = not_compared(rows[t]) if t in rows else "no result"
            if reason:
                why.setdefault(reason, []).append(t)
        if why:
            out[str(variant)] = "; ".join(f"{w} on {', '.join(ts)}" for w, ts in why.items())
    return out


def _collapse_text(mlb: pd.DataFrame) -> str:
    items: dict[str, list[str]] = {}
    for _, r in mlb.sort_values(["variant", "task"]).iterrows():
        n = learning_of(r)
        if n.collapsed:
            items.setdefault(str(r["variant"]), []).append(f"{r['task']} {n.collapsed}/{n.runs}")
    if not items:
        return ""
    listed = "; ".join(f"`{v}` on {', '.join(ts)}" for v, ts in items.items())
    return (
        f"**Collapsed runs** ({COLLAPSE}), selected runs per task: {listed}. A variant whose "
        "every selected run collapsed on a task has no result there; rerun it with another "
        "configuration ({§did_not_learn})."
    )


def _tasks_text(lb: pd.DataFrame, model: str, tasks: list[str]) -> str:
    out = left_out_tasks(lb, model)
    head = f"**Tasks in the rule**: {len(tasks)} of {len(tasks) + len(out)}"
    if not out:
        return head + " (on every task some variant beats the constant-prediction baseline)."
    mine = lb[lb["model"] == model]
    parts = []
    for t in out:
        g = mine[(mine["task"] == t) & mine["test_mean"].notna()]
        collapsed = sum(learning_of(r).all_collapsed for _, r in g.iterrows())
        parts.append(f"`{t}` ({len(g)} variants, {collapsed} of them collapsed)")
    return (
        f"{head}. Left out: {', '.join(parts)}: no variant beats the constant-prediction "
        "baseline on validation there, so those tasks cannot separate the strategies; their "
        "results are in the leaderboards ({§leaderboards}) and {§did_not_learn}."
    )


def _model_notes(lb: pd.DataFrame, model: str) -> list[Paragraph]:
    mlb, tasks = rule_board(lb, model)
    lead = f"Model `{model}`: " if lb["model"].nunique() > 1 else ""
    out = [Paragraph(lead + _tasks_text(lb, model, tasks))]
    collapse = _collapse_text(mlb)
    out += [Paragraph(collapse)] if collapse else []
    barred = _why_not(mlb)
    if barred:
        items = [f"`{v}` ({why})" for v, why in barred.items()]
        out.append(
            Paragraph(
                f"Not candidates (no usable result on every task of the rule): {', '.join(items)}."
            )
        )
    ref = reference_variant(mlb, model)
    if ref is not None and ref in barred:
        out.append(
            Paragraph(
                f"Δ vs full is a dash: `{ref}` has no usable result on every task of the rule; "
                "{§across_tasks} compares with it over the tasks where it has one."
            )
        )
    return out


def _notes(lb: pd.DataFrame, evidence: Evidence) -> list[Paragraph]:
    out = []
    for model in sorted(lb["model"].unique()):
        out += _model_notes(lb, str(model))
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
    noisy = _latency_noise_text(lb[lb["test_mean"].notna()])
    return out + ([Paragraph(noisy)] if noisy else [])


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


def answer_section(lb: pd.DataFrame, evidence: Evidence) -> Section:
    """The report's first section."""
    sec = Section(ANSWER_TITLE, key="answer")
    if lb.empty or lb["test_mean"].notna().sum() == 0:
        sec.blocks.append(Paragraph("No successful runs, so there is nothing to recommend yet."))
        return sec
    sec.blocks.append(Paragraph("**Rule.** " + RULE))
    recs = recommendations(lb, evidence)
    for model in sorted(lb["model"].unique()):
        mine = [r for r in recs if r.model == model]
        if not mine:
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: every task is left out of the rule (below), so there is "
                    "nothing to recommend (see {§did_not_learn})."
                )
            )
        elif all(r.variant is None for r in mine):
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: no variant has a usable result on every task of the rule, "
                    "so there is nothing to recommend (see {§did_not_learn})."
                )
            )
        else:
            sec.blocks.append(_model_table(lb, evidence, str(model), mine))
    sec.blocks += _notes(lb, evidence)
    return sec
