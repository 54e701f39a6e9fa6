"""Helpers shared by several sections: the gap-to-full-fine-tuning cell (the answer and the
across-tasks table) and the one-line reason of a failed or silent run (failures, runs that did
not learn). Nothing here builds a section.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ptft_bench.report.aggregate import reference_variant
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell

MAX_REASON_CHARS = 300


def gap_to_full(
    evidence: Evidence, lb: pd.DataFrame, model: str, variant: str, overall: pd.DataFrame
) -> Cell:
    """Mean gap over tasks to full fine-tuning with its bootstrap interval; without predictions,
    the paired t-test over (task, seed) pairs."""
    ref = reference_variant(lb, model)
    if ref is None:
        return Cell(fmt.DASH)
    if variant == ref:
        return Cell("reference", 0.0)
    gap, n = evidence.mean_gap(model, variant, ref)
    if n == 0 and evidence.tasks:
        return Cell("not compared (a side learned nothing)")
    n_tasks = lb.loc[lb["model"] == model, "task"].nunique()
    over = "" if n == n_tasks else f" ({n} of {n_tasks} tasks)"
    if gap is not None:
        text = fmt.gap(100 * gap.observed, 100 * gap.low, 100 * gap.high)
        return Cell(text + over, 100 * gap.observed)
    match = overall[(overall["model"] == model) & (overall["variant"] == variant)]
    if match.empty:
        return Cell(fmt.DASH)
    p = match["paired"].iloc[0]
    text = f"{fmt.signed(p.mean_diff, p.std_diff)} ({p.verdict()}; no per-example predictions)"
    return Cell(text, p.mean_diff)


def short_reason(error: Any) -> str:
    """An error or a list of reasons on one line, cut to `MAX_REASON_CHARS`."""
    if not error or error != error:
        return "no reason recorded"
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."
