"""Helpers shared by several sections: the gap cells (to full fine-tuning over a task set, a gap
with its simultaneous interval), how a variant's runs fared in the learning check (learned,
collapsed), the sentence that says how seed noise entered the intervals, and the one-line reason
of a failed or silent run. Nothing here builds a section.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ptft_bench.report.aggregate import reference_variant
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell
from ptft_bench.report.stats.gaps import BY_EXAMPLES, BY_SEED_T, BY_TWO_LEVELS, Gap

MAX_REASON_CHARS = 300
COLLAPSE = (
    "every prediction the same class or value — a configuration failure, such as a learning rate "
    "too high for the budget, not a verdict on the strategy"
)
METHOD_TEXT = {
    BY_EXAMPLES: "one seed per side: a paired bootstrap over test examples (2,000 resamples, "
    "the primary metric recomputed on each; seed noise not covered)",
    BY_SEED_T: "2–4 seeds: seeds are not resampled; the gap is the mean of the per-seed gaps "
    "on the whole test set ± a t quantile × √(a + b), a = variance of the per-seed gaps / S "
    "(seed noise), b = bootstrap variance of the mean gap over test examples (2,000 resamples, "
    "the same for every seed), Welch–Satterthwaite df = (a + b)² / (a² / (S − 1)), and the "
    "p-value from the same t",
    BY_TWO_LEVELS: "5+ seeds: a two-level bootstrap (2,000 resamples of the test examples, "
    "and of the seeds, in pairs when both sides ran the same seeds)",
}


def method_note(methods: Iterable[str]) -> str:
    """ "How seed noise entered: ...; ..." for the methods used (`gaps.BY_*`), in seed order."""
    used = [METHOD_TEXT[m] for m in METHOD_TEXT if m in set(methods)]
    return f"How seed noise entered: {'; '.join(used)}." if used else ""


def sim_gap(g: Gap) -> str:
    """ "−1.2 [−2.5, +0.1]" in points: the gap with its simultaneous interval."""
    return fmt.gap(100 * g.observed, 100 * g.sim_low, 100 * g.sim_high)


def tasks_text(tasks: Sequence[str]) -> str:
    """ "3 tasks: cola, mrpc, rte"."""
    return f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}: {', '.join(map(str, tasks))}"


@dataclass(frozen=True)
class Learning:
    """How the selected runs of one leaderboard row fared in their learning check."""

    runs: int
    learned: int
    collapsed: int
    not_learned: int
    split: str | None

    @property
    def all_collapsed(self) -> bool:
        return self.runs > 0 and self.collapsed == self.runs


def learning_of(row: pd.Series) -> Learning:
    """Counts over the row's selected runs (their records carry the judged check)."""
    checks = [r.learning_check or {} for _, r, _ in row.get("selected_runs") or []]
    splits = {c.get("split") for c in checks if c}
    return Learning(
        len(checks),
        sum(c.get("learned") is True for c in checks),
        sum(bool(c.get("collapsed")) for c in checks),
        sum(c.get("learned") is False for c in checks),
        splits.pop() if len(splits) == 1 else ("mixed" if splits else None),
    )


def not_compared(row: pd.Series) -> str:
    """Why a row is not compared: "collapsed", "did not learn" or "no result" ("" if it is)."""
    if not fmt.finite(row["test_mean"]):
        return "no result"
    if not row["did_not_learn"]:
        return ""
    return "collapsed" if learning_of(row).all_collapsed else "did not learn"


def gap_to_full(
    evidence: Evidence,
    lb: pd.DataFrame,
    model: str,
    variant: str,
    tasks: Sequence[str],
    overall: pd.DataFrame,
) -> Cell:
    """Mean gap over ``tasks`` (all of them) to full fine-tuning with its 95% interval; without
    predictions, the paired t-test over (task, seed) pairs of ``overall`` (computed on the same
    tasks); a dash when a side has no usable result on one of the tasks."""
    ref = reference_variant(lb, model)
    if ref is None:
        return Cell(fmt.DASH)
    if variant == ref:
        return Cell("reference", 0.0)
    gap = evidence.mean_gap(model, variant, ref, tasks)
    if gap is not None:
        return Cell(fmt.gap(100 * gap.observed, 100 * gap.low, 100 * gap.high), 100 * gap.observed)
    usable = [evidence.task(t, model) for t in tasks]
    if not all(ev and variant in ev.eligible and ref in ev.eligible for ev in usable):
        return Cell(fmt.DASH)
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
