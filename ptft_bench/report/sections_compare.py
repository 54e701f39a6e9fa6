"""Report sections that compare strategies: across tasks, across models, figures, recommendations."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ptft_bench.report import fmt
from ptft_bench.report.aggregate import across_tasks, model_comparison, vs_reference
from ptft_bench.report.document import Bullets, Cell, Figure, Paragraph, Section, Table, mark_best
from ptft_bench.report.recommend import PARETO_AXES, pareto_sets, recommendations

PAIRED_NOTE = (
    "Differences are in points, variant minus full fine-tuning (each at its own selected lr), paired "
    "by seed: mean ± standard deviation (ddof=1) of the per-seed differences. A paired t-test is run "
    "when there are 2+ pairs; with a single seed no test is possible. p ≥ 0.05 means the gap cannot "
    "be told apart from seed noise."
)


def across_section(lb: pd.DataFrame) -> list[Section]:
    """Section 3: mean score and rank over tasks, and paired gaps to full fine-tuning."""
    out = [Section("3. Across tasks")]
    at = across_tasks(lb)
    per_task, overall = vs_reference(lb)
    for model, g in at.groupby("model"):
        sub = Section(f"Model `{model}`", level=3)
        ov = (
            overall[overall["model"] == model].set_index("variant")
            if len(overall)
            else pd.DataFrame()
        )
        ref = ov["reference"].iloc[0] if len(ov) else None
        sub.blocks.append(_across_table(g, ov, ref))
        pt = per_task[per_task["model"] == model] if len(per_task) else per_task
        if len(pt):
            sub.blocks.append(_per_task_gaps(pt, ref))
        out.append(sub)
    out += model_section(lb)
    return out


def _across_table(g: pd.DataFrame, ov: pd.DataFrame, ref: str | None) -> Table:
    rows = []
    for _, r in g.iterrows():
        p = ov.loc[r["variant"], "paired"] if r["variant"] in ov.index else None
        diff = (
            fmt.signed(p.mean_diff, p.std_diff)
            if p
            else ("reference" if r["variant"] == ref else fmt.DASH)
        )
        rows.append(
            [
                Cell(str(r["variant"]), str(r["variant"])),
                Cell(
                    f"{r['n_tasks']}" + ("" if r["all_tasks"] else " (not all)"),
                    float(r["n_tasks"]),
                ),
                Cell(fmt.points(r["mean_score"]), r["mean_score"]),
                Cell(fmt.points(r["mean_rank"], 2), r["mean_rank"]),
                Cell(diff, p.mean_diff if p else None),
                Cell(str(p.n_pairs) if p else fmt.DASH, float(p.n_pairs) if p else None),
                Cell(p.verdict() if p else fmt.DASH, p.p_value if p else None),
            ]
        )
    mark_best(rows, 2, True)
    mark_best(rows, 3, False)
    cols = ["variant", "tasks", "mean score", "mean rank"]
    cols += [f"Δ vs {ref or 'full'} (points)", "pairs", "paired t-test"]
    note = "Mean score: mean over tasks of the per-task mean test primary metric. Rank 1 = best in a task. "
    note += (
        PAIRED_NOTE
        if ref
        else "No full fine-tuning run succeeded for this model, so there is no reference gap."
    )
    return Table(cols, rows, note=note)


def _per_task_gaps(pt: pd.DataFrame, ref: str | None) -> Table:
    tasks = sorted(pt["task"].unique())
    trows = []
    for variant, vg in pt.groupby("variant"):
        cells = {t: p for t, p in zip(vg["task"], vg["paired"])}
        trows.append(
            [Cell(str(variant), str(variant))]
            + [
                Cell(
                    f"{fmt.signed(cells[t].mean_diff, cells[t].std_diff)} ({cells[t].verdict()})",
                    cells[t].mean_diff,
                )
                if t in cells
                else Cell(fmt.DASH)
                for t in tasks
            ]
        )
    return Table(
        ["variant"] + tasks, trows, caption=f"Per task: Δ vs {ref} (points), paired by seed"
    )


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


def figures_section(lb: pd.DataFrame, figs: dict[tuple[str, str, str], Path]) -> Section:
    """Section 4: the figures, grouped per task and model."""
    sec = Section("4. Figures")
    if not figs:
        sec.blocks.append(Paragraph("No successful runs, so there is nothing to plot."))
    captions = {
        "bars": "Test score per variant: bar = mean, whisker = ±1 std over seeds, dots = individual seeds.",
        "tradeoffs": "Quality against trainable parameters, train time and peak memory (mean ± std over "
        "seeds); the dashed line is the Pareto frontier (nothing else is both cheaper and better).",
        "curves": "Learning curves at the selected lr, averaged over seeds: train loss (moving average) "
        "and validation primary metric by optimizer step.",
    }
    for (model, task), _ in lb.groupby(["model", "task"]):
        for kind in ("bars", "tradeoffs", "curves"):
            path = figs.get((kind, str(task), str(model)))
            if path is not None:
                sec.blocks.append(
                    Figure(
                        Path(path.parent.name) / path.name, f"{task} · `{model}` — {captions[kind]}"
                    )
                )
    return sec


def recommendations_section(lb: pd.DataFrame) -> Section:
    """Section 5: best variant per budget, and the Pareto-optimal sets (across tasks)."""
    sec = Section("5. Recommendations")
    sec.blocks.append(
        Paragraph(
            "Computed from the leaderboards: under each budget, the variant with the highest mean score "
            "over tasks (among variants with a result on every task). Time and memory budgets are "
            "relative to full fine-tuning on the same task. Gaps to full fine-tuning are paired by "
            "(task, seed): mean ± std of the differences, with a paired t-test."
        )
    )
    recs = recommendations(lb)
    fronts = pareto_sets(lb)
    for model in sorted(lb["model"].unique()):
        mine = [r for r in recs if r.model == model]
        if not mine:
            sec.blocks.append(Paragraph(f"Model `{model}`: no variant has a result on every task."))
            continue
        sec.blocks.append(Paragraph(f"**Model `{model}`**"))
        sec.blocks.append(Bullets([r.text() for r in mine]))
        items = [
            f"{desc}: {', '.join(fronts.get((model, axis), [])) or fmt.DASH}"
            for axis, desc in PARETO_AXES.items()
        ]
        sec.blocks.append(
            Paragraph(
                "Pareto-optimal variants (cheapest first; no other variant is both cheaper and better):"
            )
        )
        sec.blocks.append(Bullets(items))
    return sec
