"""The across-tasks section: per model, over one task set named in the caption
(`evidence.comparison_tasks`: the tasks of the rule on which full fine-tuning has a usable
result), each variant's mean score, mean rank (with the Friedman test and the Nemenyi critical
difference when there are enough tasks), mean gap to full fine-tuning and on how many of those
tasks it is tied with it, the per-task gaps, and the Pareto-optimal variants per budget axis;
then, with 2+ models, the model comparison subsection.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.aggregate import model_comparison, vs_reference
from ptft_bench.report.evidence import (
    Evidence,
    comparison_tasks,
    left_out_tasks,
    scores_over,
)
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
from ptft_bench.report.sections.common import gap_to_full, not_compared, sim_gap, tasks_text
from ptft_bench.report.stats.descriptive import rank_desc
from ptft_bench.report.stats.ranks import RankComparison


def across_section(lb: pd.DataFrame, evidence: Evidence) -> list[Section]:
    """Mean score, mean rank, gaps to full fine-tuning over tasks; rank tests; model comparison."""
    out = [Section("Across tasks", key="across_tasks")]
    fronts = pareto_sets(lb)
    for model in sorted(lb.loc[lb["test_mean"].notna(), "model"].unique()):
        model = str(model)
        tasks = comparison_tasks(lb, model)
        sub = Section(f"Model `{model}`", level=3)
        ranks = evidence.ranks.get(model)
        if not tasks:
            text = (
                "No task to compare over: no variant learned on any task, or full fine-tuning "
                "has no usable result on any of them ({§did_not_learn})."
            )
            sub.blocks.append(Paragraph(text))
            out.append(sub)
            continue
        sub.blocks.append(_across_table(lb, model, tasks, evidence, ranks))
        if ranks is not None:
            sub.blocks += _ranks_blocks(ranks)
        if lb.loc[lb["model"] == model, "task"].nunique() > 1:
            sub.blocks.append(_per_task_gaps(lb[lb["model"] == model], evidence))
        mlb = lb[(lb["model"] == model) & lb["task"].isin(tasks)]
        axes = active_axes(cost_table(mlb)) if tasks else []
        items = [
            f"{a.what}: {', '.join(fronts.get((model, a.kind), [])) or fmt.DASH}" for a in axes
        ]
        if items:
            sub.blocks.append(
                Paragraph(
                    "Pareto-optimal variants over the same tasks, cheapest first (no other "
                    "variant with a usable result on each of them is both cheaper and better on "
                    "average):"
                )
            )
            sub.blocks.append(Bullets(items))
        out.append(sub)
    return out + model_section(lb)


def _tied_with_full(evidence: Evidence, model: str, variant: str, tasks) -> Cell:
    verdicts = []
    for t in tasks:
        ev = evidence.task(t, model)
        row = ev.row(variant) if ev else None
        if row is not None and ev.reference:
            verdicts.append(row.tied_with_reference)
    if not verdicts:
        return Cell(fmt.DASH)
    return Cell(f"{sum(verdicts)}/{len(verdicts)}", sum(verdicts) / len(verdicts))


def _mean_ranks(scores: pd.DataFrame, ranks: RankComparison | None) -> dict[str, Cell]:
    """{variant: mean rank cell} over the table's tasks, among the variants complete on them."""
    if ranks is not None:
        return {
            n: Cell(
                f"{ranks.mean_rank[i]:.2f} [{ranks.low[i]:.2f}, {ranks.high[i]:.2f}]",
                float(ranks.mean_rank[i]),
            )
            for i, n in enumerate(ranks.names)
        }
    if scores.empty:
        return {}
    per_task = pd.DataFrame({t: rank_desc(scores[t].tolist()) for t in scores}, scores.index)
    return {str(v): Cell(fmt.points(x, 2), float(x)) for v, x in per_task.mean(axis=1).items()}


def _missing_text(g: pd.DataFrame, tasks) -> str:
    """ "collapsed on mrpc, did not learn on rte": where a variant has no usable result."""
    rows = {str(r["task"]): r for _, r in g.iterrows()}
    why = {t: not_compared(rows[t]) if t in rows else "no result" for t in tasks}
    return ", ".join(f"{w} on {t}" for t, w in why.items() if w)


def _caption(lb: pd.DataFrame, model: str, tasks) -> str:
    mine = lb[(lb["model"] == model) & lb["test_mean"].notna()]
    out = f"Model `{model}`, every row over the same {tasks_text(tasks)}"
    rule_out = set(left_out_tasks(lb, model))
    dropped = sorted(set(map(str, mine["task"])) - set(tasks))
    reasons = [
        f"{t} (no variant learned there)"
        if t in rule_out
        else f"{t} (full fine-tuning has no usable result there)"
        for t in dropped
    ]
    return out + (f"; left out: {', '.join(reasons)}" if reasons else "")


def _across_table(lb, model: str, tasks, evidence: Evidence, ranks) -> Table:
    mlb = lb[(lb["model"] == model) & lb["task"].isin(tasks)]
    scores = scores_over(lb, model, tasks)
    rank_cells = _mean_ranks(scores, ranks)
    _, overall = vs_reference(mlb)
    rows = []
    variants = sorted(map(str, lb.loc[lb["model"] == model, "variant"].unique()))
    order = sorted(
        variants, key=lambda v: (v not in scores.index, rank_cells.get(v, Cell("", 1e9)).sort, v)
    )
    for v in order:
        if v not in scores.index:
            why = _missing_text(mlb[mlb["variant"] == v], tasks) or "no result"
            rows.append([Cell(v, v), Cell(why)] + [Cell(fmt.DASH) for _ in range(4)])
            continue
        mean = float(scores.loc[v].mean())
        rows.append(
            [Cell(v, v), Cell(str(len(tasks)), float(len(tasks)))]
            + [Cell(fmt.points(mean), mean), rank_cells.get(v, Cell(fmt.DASH))]
            + [gap_to_full(evidence, mlb, model, v, tasks, overall)]
            + [_tied_with_full(evidence, model, v, tasks)]
        )
    mark_best(rows, 2, True)
    mark_best(rows, 3, False)
    cols = ["variant", "tasks", "mean score", "mean rank", "Δ vs full [95% CI]", "≈ full on tasks"]
    note = (
        "Every row is over the caption's tasks; a variant without a usable result on one of "
        "them (it collapsed, learned nothing or has no run there) has no mean and says where. "
        "Mean score: mean over the tasks of the per-task mean test primary metric (points). "
        "Mean rank: rank 1 = best in a task, among the variants with a usable result on every "
        "task"
        + (", with a 95% bootstrap interval over tasks" if ranks else "")
        + ". Δ vs full: mean over the tasks of the gap to full fine-tuning with a 95% interval "
        "(test examples, and seeds: see the leaderboards); without per-example predictions, the "
        "paired t-test over (task, seed) pairs. ≈ full on tasks: on how many of the tasks the "
        "variant cannot be told apart from full fine-tuning (Holm, as in the leaderboards)."
    )
    return Table(cols, rows, caption=_caption(lb, model, tasks), note=note)


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
    if r is None:
        return Cell(fmt.DASH)
    why = not_compared(r)
    if why:
        return Cell(why if why != "no result" else fmt.DASH)
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
    return Cell(sim_gap(g) + mark, 100 * g.observed)


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
    note = (
        "Each column is one task on its own (not a mean): the gap to full fine-tuning (points) "
        "with its 95% simultaneous interval over the task's comparisons with full fine-tuning "
        "(Bonferroni); ≈: tied (Holm over the same comparisons, 5%), so a tied cell's interval "
        "contains 0."
    )
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
