"""The section on runs that did not learn: runs that finished but whose learning check says they
learned nothing (e.g. not above the constant-prediction baseline), with the check's reasons and
whether the run is at its variant's selected learning rate; the variants of which every selected
run learned nothing are named, since the leaderboards mark them and the answer leaves them out.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.load import RunSet
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table
from ptft_bench.report.sections.common import short_reason


def did_not_learn_section(rs: RunSet, lb: pd.DataFrame) -> Section:
    """Runs that finished but learned nothing, with the learning check's reasons."""
    sec = Section("Runs that did not learn", key="did_not_learn")
    ok = rs.ok
    dead = ok[ok["learned"] == False]  # noqa: E712 (None = no check recorded)
    if dead.empty:
        checked = int(ok["learned"].notna().sum())
        text = f"Every checked run learned something ({checked} of {len(ok)} runs carry a check)."
        sec.blocks.append(Paragraph(text if checked else "No record carries a learning check."))
        return sec
    marked = lb[lb["did_not_learn"].astype(bool)] if len(lb) else lb
    if len(marked):
        names = ", ".join(f"`{r.variant}` on {r.task}" for r in marked.itertuples())
        sec.blocks.append(
            Paragraph(
                f"Every run at the selected learning rate learned nothing: {names}. These variants "
                "are marked in the leaderboards and left out of best variants, tie groups and "
                "recommendations. A variant of which only some seeds learned nothing keeps them in "
                "its mean: they are part of what the strategy delivers at that learning rate."
            )
        )
    selected = {(r.task, r.model, r.variant): r.lr for r in lb.itertuples()} if len(lb) else {}
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
        for r in dead.sort_values(
            ["task", "model", "variant", "lr", "seed"], key=lambda s: s.astype(str)
        ).itertuples()
    ]
    cols = ["run id", "task", "model", "variant", "lr", "seed", "selected lr", "reasons"]
    sec.blocks.append(Table(cols, rows, caption=f"{len(dead)} run(s) that did not learn"))
    return sec
