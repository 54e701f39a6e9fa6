"""The across-tasks section: per model, each variant's mean score, mean rank (with the Friedman
test and the Nemenyi critical difference when there are enough tasks), mean gap to full
fine-tuning and on how many tasks it is tied with it, the per-task gaps, and the Pareto-optimal
variants per budget axis; then, with 2+ models, the model comparison subsection.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.aggregate import across_tasks, model_comparison, vs_reference
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.recommend import active_axes, cost_table, pareto_sets
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import (
    Bullets,
    Cell,
    Paragraph,
    Section,
    Table,
    mark_best,
)
from ptft_bench.report.sections.common import gap_to_full
from ptft_bench.report.stats.ranks import RankComparison


def across_section(lb: pd.DataFrame, evidence: Evidence) -> list[Section]:
    """Mean score, mean rank, gaps to full fine-tuning over tasks; rank tests; model comparison."""
    out = [Section("Across tasks", key="across_tasks")]
    at = across_tasks(lb)
    _, overall = vs_reference(lb)
    fronts, costs = pareto_sets(lb), cost_table(lb)
    for model, g in at.groupby("model"):
        sub = Section(f"Model `{model}`", level=3)
        ranks = evidence.ranks.get(str(model))
        sub.blocks.append(_across_table(lb, g, evidence, overall, ranks))
        if ranks is not None:
            sub.blocks += _ranks_blocks(ranks)
        if lb.loc[lb["model"] == model, "task"].nunique() > 1:
            sub.blocks.append(_per_task_gaps(lb[lb["model"] == model], evidence))
        items = [
            f"{a.what}: {', '.join(fronts.get((str(model), a.kind), [])) or fmt.DASH}"
            for a in active_axes(costs[costs["model"] == model])
        ]
        sub.blocks.append(
            Paragraph(
                "Pareto-optimal variants, cheapest first (no other variant that learned on every "
                "task is both cheaper and better on average):"
            )
        )
        sub.blocks.append(Bullets(items))
        out.append(sub)
    return out + model_section(lb)


def _tied_with_full(lb: pd.DataFrame, evidence: Evidence, model: str, variant: str) -> Cell:
    verdicts = []
    for ev in evidence.of_model(model):
        row = ev.row(variant)
        if row is not None and ev.reference and variant in ev.eligible:
            verdicts.append(row.tied_with_reference)
    if not verdicts:
        return Cell(fmt.DASH)
    return Cell(f"{sum(verdicts)}/{len(verdicts)}", sum(verdicts) / len(verdicts))


def _across_table(lb, g, evidence: Evidence, overall, ranks: RankComparison | None) -> Table:
    model = str(g["model"].iloc[0])
    pos = {n: i for i, n in enumerate(ranks.names)} if ranks else {}
    rows = []
    for _, r in g.iterrows():
        v = str(r["variant"])
        if v in pos:
            i = pos[v]
            mr = Cell(
                f"{ranks.mean_rank[i]:.2f} [{ranks.low[i]:.2f}, {ranks.high[i]:.2f}]",
                float(ranks.mean_rank[i]),
            )
        elif r["learned_all"]:
            mr = Cell(fmt.points(r["mean_rank"], 2), r["mean_rank"])
        else:  # ranked on some tasks only: a mean over them would flatter it
            mr = Cell(fmt.DASH)
        tasks = f"{r['n_tasks']}" + ("" if r["all_tasks"] else " (not all)")
        tasks += "" if r["learned_all"] else f", did not learn on {int(r['n_did_not_learn'])}"
        rows.append(
            [
                Cell(v, v),
                Cell(tasks, float(r["n_tasks"])),
                Cell(fmt.points(r["mean_score"]), r["mean_score"]),
                mr,
                gap_to_full(evidence, lb, model, v, overall),
                _tied_with_full(lb, evidence, model, v),
            ]
        )
    mark_best(rows, 2, True)
    mark_best(rows, 3, False)
    cols = ["variant", "tasks", "mean score", "mean rank", "Δ vs full [95% CI]", "≈ full on tasks"]
    note = (
        "Mean score: mean over tasks of the per-task mean test primary metric (points). Mean "
        "rank: rank 1 = best in a task"
        + (
            ", among the variants that have a score and learned on every task, with a 95% "
            "bootstrap interval over tasks"
            if ranks
            else ""
        )
        + ". Δ vs full: mean over tasks of the gap to full fine-tuning with a 95% bootstrap "
        "interval over test examples (and seeds); without per-example predictions, the paired "
        "t-test over (task, seed) pairs. ≈ full on tasks: on how many tasks the variant cannot "
        "be told apart from full fine-tuning."
    )
    return Table(cols, rows, note=note)


def _ranks_blocks(ranks: RankComparison) -> list:
    f = ranks.friedman
    verdict = (
        "the variants do not all rank alike"
        if f.p_value < 0.05
        else "no evidence that they rank differently"
    )
    text = (
        f"Friedman test over {f.n_tasks} tasks and {f.n_variants} variants: χ² = "
        f"{f.statistic:.2f}, p = {fmt.pvalue(f.p_value)} ({verdict}). Nemenyi critical "
        f"difference (α = 0.05, Demšar 2006): CD = {ranks.cd:.2f} ranks; variants whose mean "
        "ranks differ by less are not distinguishable (see the critical-difference figure)."
    )
    groups = [" ≈ ".join(grp) for grp in ranks.groups]
    out = [Paragraph(text)]
    if groups:
        out.append(Bullets([f"Not distinguishable by mean rank: {g}" for g in groups]))
    return out


def _task_gap_cell(ev, r: pd.Series | None, ref: pd.Series | None) -> Cell:
    if r is None or not fmt.finite(r["test_mean"]):
        return Cell(fmt.DASH)
    if r["did_not_learn"]:
        return Cell("did not learn")
    if ev is None or not ev.reference or ref is None:
        return Cell(fmt.DASH)
    if r["variant"] == ev.reference:
        return Cell("reference", 0.0)
    row = ev.row(str(r["variant"]))
    if row is None:  # no predictions: the difference of means, without an interval
        diff = r["test_mean"] - ref["test_mean"]
        return Cell(f"{fmt.signed(diff)} (no CI)", diff)
    g = row.to_reference
    mark = " ≈" if row.tied_with_reference else ""
    return Cell(fmt.gap(100 * g.observed, 100 * g.low, 100 * g.high) + mark, 100 * g.observed)


def _per_task_gaps(lb: pd.DataFrame, evidence: Evidence) -> Table:
    tasks = sorted(lb["task"].unique())
    model = lb["model"].iloc[0]
    by = {(r["task"], r["variant"]): r for _, r in lb.iterrows()}
    rows = []
    for variant in sorted(lb["variant"].unique()):
        cells = [Cell(str(variant), str(variant))]
        for t in tasks:
            ev = evidence.task(t, model)
            ref = by.get((t, ev.reference)) if ev and ev.reference else None
            cells.append(_task_gap_cell(ev, by.get((t, variant)), ref))
        rows.append(cells)
    note = "Gap to full fine-tuning per task (points) with its 95% interval; ≈: tied (Holm, 5%)."
    return Table(["variant"] + tasks, rows, caption="Per task: Δ vs full fine-tuning", note=note)


def model_section(lb: pd.DataFrame) -> list[Section]:
    """Model comparison (only with 2+ models): score per model and the paired difference."""
    table, ref = model_comparison(lb)
    if ref is None:
        return []
    models = sorted(lb["model"].unique())
    sec = Section("Model comparison", level=3)
    rows = []
    for _, r in table.sort_values(["task", "variant"]).iterrows():
        row = [Cell(str(r["task"])), Cell(str(r["variant"]))]
        row += [Cell(fmt.points(r[f"score:{m}"]), r[f"score:{m}"]) for m in models]
        for m in models[1:]:
            p = r[f"paired:{m}"]
            diff = r[f"score:{m}"] - r[f"score:{ref}"]
            row.append(Cell(f"{fmt.signed(diff)} ({p.verdict()})", diff))
        rows.append(row)
    means = table.groupby("variant")[[f"score:{m}" for m in models]].mean()
    for variant, r in means.iterrows():
        row = [Cell("**mean over tasks**", "~"), Cell(str(variant))]
        row += [Cell(fmt.points(r[f"score:{m}"]), r[f"score:{m}"]) for m in models]
        row += [
            Cell(
                fmt.signed(r[f"score:{m}"] - r[f"score:{ref}"]), r[f"score:{m}"] - r[f"score:{ref}"]
            )
            for m in models[1:]
        ]
        rows.append(row)
    cols = (
        ["task", "variant"]
        + [f"`{m}`" for m in models]
        + [f"Δ `{m}` − `{ref}`" for m in models[1:]]
    )
    note = (
        f"Test primary metric (points) per model, each variant at its own selected lr per model. Δ = "
        f"difference of means; the paired t-test pairs seeds of the same task and variant against `{ref}`."
    )
    sec.blocks.append(Table(cols, rows, note=note))
    return [sec]
