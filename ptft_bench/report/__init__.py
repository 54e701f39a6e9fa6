"""The report: run records -> markdown, self-contained HTML, summary.csv and figures.

    from ptft_bench.report import write_report, summary_table
    write_report([Path("runs/quick")], Path("reports/quick"))
    print(summary_table([Path("runs/quick")]))

Modules, in the order data flows: `load` (records and plan.json -> pandas), `aggregate` (lr
selection, leaderboards, ranks), `evidence` (the selected runs' per-example predictions ->
bootstrap statistics per task, cached: `significance` on top of `kernels` and `gaps`, `ranks`
across tasks), `recommend` (budgets, the recommendation rule, Pareto sets), `sections_*` (content:
the answer first, then setup, per-task leaderboards, across tasks, figures, runs that did not
learn, failures, cost), `figures*` / `plotting`, `markdown` / `html` (renderings), `summary`
(summary.csv), `write`.
"""

from ptft_bench.report.load import RunSet, load_runs
from ptft_bench.report.write import ReportData, build, summary_table, write_report

__all__ = ["ReportData", "RunSet", "build", "load_runs", "summary_table", "write_report"]
