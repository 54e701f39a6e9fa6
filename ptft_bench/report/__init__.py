"""The report: run records -> markdown, self-contained HTML, summary.csv and figures.

    from ptft_bench.report import write_report, summary_table
    write_report([Path("runs/quick")], Path("reports/quick"))
    print(summary_table([Path("runs/quick")]))

Modules, in the order data flows: `load` (records and plan.json -> pandas, with serving cost,
forgetting and generated texts), `aggregate` (selection of each variant's configuration as its
study selects it, leaderboards, ranks; `columns` declares the leaderboard's schema), `evidence`
(the selected runs' per-example scores -> bootstrap statistics per task, cached: `stats/`,
pure numpy / scipy), `recommend` (budgets, the recommendation rule, the answer's non-dominated
choices, Pareto sets), `sections/` (one file per section, numbered when the document is built:
the answer first, then setup, tuning, per-task leaderboards, example generations, across tasks,
figures, runs that did not learn, failures, cost), `render/` (the document model, markdown,
HTML, figures), `summary` (summary.csv), `write`.
"""

from ptft_bench.report.load import RunSet, load_runs
from ptft_bench.report.write import ReportData, build, summary_table, write_report

__all__ = ["ReportData", "RunSet", "build", "load_runs", "summary_table", "write_report"]
