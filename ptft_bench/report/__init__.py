"""The report: run records -> markdown, self-contained HTML, summary.csv and figures.

    from ptft_bench.report import write_report, summary_table
    write_report([Path("runs/quick")], Path("reports/quick"))
    print(summary_table([Path("runs/quick")]))

Modules: `load` (records and plan.json -> pandas), `stats` (seed summaries, paired tests, Pareto),
`aggregate` (lr selection, leaderboards, ranks, gaps to full fine-tuning), `recommend` (budgets,
Pareto sets), `figures`, `sections*` (content), `markdown` / `html` (renderings), `write`.
"""

from ptft_bench.report.load import RunSet, load_runs
from ptft_bench.report.write import ReportData, build, summary_table, write_report

__all__ = ["ReportData", "RunSet", "build", "load_runs", "summary_table", "write_report"]
