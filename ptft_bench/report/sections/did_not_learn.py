"""The section on runs that collapsed or did not learn: runs that finished but whose learning
check (judged on validation, `load.judged_check`) says they learned nothing, with the check's
reasons and whether the run is at its variant's selected learning rate. Collapsed runs (one
prediction for every input) come first and apart: a configuration failure, never a verdict on
the strategy. The variants of which every selected run learned nothing are named, since the
leaderboards mark them and the answer cannot recommend them.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.load import RunSet
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table
from ptft_bench.report.sections.common import COLLAPSE, not_compared, short_reason

COLUMNS = ["run id", "task", "model", "variant", "lr", "seed", "selected lr", "reasons"]


def _how_judged(ok: pd.DataFrame) -> str:
    split = ok["learn_split"] if "learn_split" in ok else pd.Series(dtype=object)
    recomputed = sum(bool((r.learning_check or {}).get("recomputed")) for r in ok["record"])
    old = int((split == "test").sum())
    text = (
        "Learning is judged on validation: a run learned when its validation Matthews "
        "(classification) or Pearson (regression) correlation, 0 for any constant prediction, "
        "has a 95% bootstrap interval above 0 and its train loss did not diverge."
    )
    if recomputed:
        text += (
            f" {recomputed} older record(s) judged on test were re-judged from their stored "
            "validation predictions."
        )
    if old:
        text += f" {old} older record(s) without validation predictions keep their test check."
    return text


def _table(runs: pd.DataFrame, selected: dict, caption: str) -> Table:
    rows = [
        [
            Cell(f"`{r.run_id}`", r.run_id),
            Cell(str(r.task)),
            Cell(str(r.model)),
            Cell(str(r.variant)),
            Cell(fmt.lr(r.lr), r.lr),
            Cell(str(r.seed)),
            Cell("yes" if selected.get((r.task, r.model, r.variant)) == r.lr else "no"),
            Cell(short_reason("; ".join(r.learn_reasons))),
        ]
        for r in runs.sort_values(
            ["task", "model", "variant", "lr", "seed"], key=lambda s: s.astype(str)
        ).itertuples()
    ]
    return Table(COLUMNS, rows, caption=caption)


def _marked(lb: pd.DataFrame) -> list[Paragraph]:
    marked = lb[lb["did_not_learn"].astype(bool)] if len(lb) else lb
    if marked.empty:
        return []
    names = ", ".join(
        f"`{r['variant']}` on {r['task']} ({not_compared(r)})" for _, r in marked.iterrows()
    )
    return [
        Paragraph(
            f"Every run at the selected learning rate collapsed or learned nothing: {names}. "
            "These variants are marked in the leaderboards and left out of best variants, tie "
            "groups and recommendations. A variant of which only some seeds collapsed or "
            "learned nothing keeps them in its mean: they are part of what the strategy "
            "delivered at that learning rate."
        )
    ]


def did_not_learn_section(rs: RunSet, lb: pd.DataFrame) -> Section:
    """Runs that finished but collapsed or learned nothing, with the learning check's reasons."""
    sec = Section("Runs that collapsed or did not learn", key="did_not_learn")
    ok = rs.ok
    dead = ok[ok["learned"] == False]  # noqa: E712 (None = no check recorded)
    if dead.empty:
        checked = int(ok["learned"].notna().sum())
        text = f"Every checked run learned something ({checked} of {len(ok)} runs carry a check)."
        sec.blocks.append(Paragraph(text if checked else "No record carries a learning check."))
        return sec
    sec.blocks.append(Paragraph(_how_judged(ok)))
    sec.blocks += _marked(lb)
    selected = {(r.task, r.model, r.variant): r.lr for r in lb.itertuples()} if len(lb) else {}
    collapsed = dead[dead["collapsed"].astype(bool)] if "collapsed" in dead else dead.iloc[:0]
    if len(collapsed):
        caption = f"{len(collapsed)} run(s) that collapsed ({COLLAPSE})"
        sec.blocks.append(_table(collapsed, selected, caption))
    rest = dead.drop(collapsed.index)
    if len(rest):
        sec.blocks.append(_table(rest, selected, f"{len(rest)} run(s) that did not learn"))
    return sec
