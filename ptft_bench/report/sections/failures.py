"""The failures section: every failed run with the reason it failed (its error, on one line),
every planned run without a record, and every record file that could not be read, so that no
run disappears from the report silently.
"""

from __future__ import annotations

from ptft_bench.report.load import RunSet
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Bullets, Cell, Paragraph, Section, Table
from ptft_bench.report.sections.common import short_reason


def failures_section(rs: RunSet) -> Section:
    """Each failed run with its reason; each planned run without a record; unreadable files."""
    sec = Section("Failures and missing runs", key="failures")
    failed = rs.failed.sort_values(
        ["task", "model", "variant", "lr", "seed"], key=lambda s: s.astype(str)
    )
    if failed.empty:
        sec.blocks.append(Paragraph("No failed runs."))
    else:
        rows = [
            [
                Cell(f"`{r.run_id}`", r.run_id),
                Cell(str(r.task)),
                Cell(str(r.model)),
                Cell(str(r.variant)),
                Cell(fmt.lr(r.lr), r.lr),
                Cell(str(r.seed)),
                Cell(short_reason(r.error)),
            ]
            for r in failed.itertuples()
        ]
        cols = ["run id", "task", "model", "variant", "lr", "seed", "reason"]
        sec.blocks.append(Table(cols, rows, caption=f"{len(failed)} failed run(s)"))
    if rs.missing.empty:
        sec.blocks.append(Paragraph("No missing runs: every planned run has a record."))
    else:
        rows = [
            [Cell(f"`{r.run_id}`", r.run_id)]
            + [
                Cell(str(v) if v is not None and v == v else fmt.DASH)
                for v in (r.task, r.model, r.variant)
            ]
            + [
                Cell(fmt.lr(r.lr), r.lr),
                Cell(str(r.seed) if r.seed is not None and r.seed == r.seed else fmt.DASH),
            ]
            for r in rs.missing.itertuples()
        ]
        cols = ["run id", "task", "model", "variant", "lr", "seed"]
        sec.blocks.append(
            Table(cols, rows, caption=f"{len(rs.missing)} missing run(s): planned, no record")
        )
    if rs.problems:
        sec.blocks.append(Bullets([f"Unreadable file: {p}" for p in rs.problems]))
    return sec
