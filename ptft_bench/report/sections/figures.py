"""The figures section: per model, the figures across tasks (mean gap to full fine-tuning,
critical-difference diagram), then per (task, model) the gap forest, the quality-cost
trade-offs, the score bars and the learning curves; each with a caption saying how to read it.
The PNGs are drawn by `render.figures`; this module only places and captions them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ptft_bench.report.render.document import Figure, Paragraph, Section

CAPTIONS = {
    "forest": "Gap of each variant to full fine-tuning (points) with its 95% simultaneous "
    "interval (Bonferroni over the task's comparisons with full fine-tuning, as in the "
    "leaderboard); filled: different from full fine-tuning at the 5% level (Holm), hollow: tied; "
    "× without per-example predictions (no interval).",
    "tradeoffs": "Quality against trainable parameters, train time and peak memory: mean test "
    "score with its 95% interval; the dashed line is the Pareto frontier (nothing else is both "
    "cheaper and better); grey: learned nothing.",
    "bars": "Test score per variant: bar = mean, whisker = ±1 std over seeds, dots = individual "
    "seeds.",
    "curves": "Learning curves at the selected lr, averaged over seeds: train loss (moving "
    "average) and validation primary metric by optimizer step.",
    "forest_all": "Mean over the across-tasks table's tasks of the gap to full fine-tuning "
    "(points), 95% interval over test examples (and seeds); filled: the interval excludes 0.",
    "cd": "Critical-difference diagram (Demšar 2006): mean rank over tasks (1 = best); variants "
    "joined by a bar are not distinguishable (Nemenyi, α = 0.05).",
}
TASK_FIGURES = ("forest", "tradeoffs", "bars", "curves")
MODEL_FIGURES = ("forest_all", "cd")


def _figure(path: Path, caption: str) -> Figure:
    return Figure(Path(path.parent.name) / path.name, caption)


def figures_section(lb: pd.DataFrame, figs: dict[tuple[str, str, str], Path]) -> Section:
    """The figures, across tasks first, then per task and model."""
    sec = Section("Figures", key="figures")
    if not figs:
        sec.blocks.append(Paragraph("No successful runs, so there is nothing to plot."))
    for model in sorted(lb["model"].unique()):
        for kind in MODEL_FIGURES:
            path = figs.get((kind, "", str(model)))
            if path is not None:
                sec.blocks.append(_figure(path, f"All tasks · `{model}` — {CAPTIONS[kind]}"))
    for (model, task), _ in lb.groupby(["model", "task"]):
        for kind in TASK_FIGURES:
            path = figs.get((kind, str(task), str(model)))
            if path is not None:
                sec.blocks.append(_figure(path, f"{task} · `{model}` — {CAPTIONS[kind]}"))
    return sec
