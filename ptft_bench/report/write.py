"""Entry points: `write_report` (md / html / csv / figures) and `summary_table` (console)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ptft_bench import atomic
from ptft_bench.errors import UserError
from ptft_bench.report.aggregate import leaderboard, tuning_trials, without_trials
from ptft_bench.report.evidence import Evidence, gather
from ptft_bench.report.load import RunSet, load_runs
from ptft_bench.report.render import fmt, html, markdown
from ptft_bench.report.render.document import Document
from ptft_bench.report.sections.across_tasks import across_section
from ptft_bench.report.sections.answer import answer_section
from ptft_bench.report.sections.cost import cost_section
from ptft_bench.report.sections.did_not_learn import did_not_learn_section
from ptft_bench.report.sections.failures import failures_section
from ptft_bench.report.sections.figures import figures_section
from ptft_bench.report.sections.generations import generations_sections
from ptft_bench.report.sections.leaderboards import task_sections
from ptft_bench.report.sections.setup import setup_section
from ptft_bench.report.sections.tuning import tuning_notes, tuning_sections
from ptft_bench.report.summary import summary_frame

FORMATS = frozenset({"md", "html", "csv"})


@dataclass
class ReportData:
    """The loaded runs, the per-(task, model, variant) leaderboard everything derives from, the
    statistics on the selected runs' per-example predictions (`evidence.gather`) and the trials
    of the tuned variants' studies (`aggregate.tuning_trials`; empty when nothing was tuned)."""

    runs: RunSet
    leaderboard: pd.DataFrame
    evidence: Evidence
    tuning: pd.DataFrame = field(default_factory=pd.DataFrame)


def build(
    run_dirs: list[Path], expected_run_ids: set[str] | None = None, statistics: bool = True
) -> ReportData:
    """Load the records of `run_dirs` (merged), compute the leaderboard and, unless
    ``statistics`` is False (the console summary), bootstrap every task once."""
    rs = load_runs([Path(d) for d in run_dirs], expected_run_ids)
    lb = leaderboard(rs)
    return ReportData(rs, lb, gather(lb) if statistics else Evidence({}), tuning_trials(rs.runs))


def build_document(data: ReportData, figs: dict) -> Document:
    """All sections, in reading order: the answer first, then the details; numbered here, and
    their cross-references resolved (`Document.numbered`). The tuning section (with tuned
    variants) follows the per-task leaderboards, the example generations (with generation
    tasks) the figures; the sections listing failed runs and runs that did not learn leave out
    the trials it reports (`aggregate.without_trials`)."""
    rs, lb, ev = data.runs, data.leaderboard, data.evidence
    title = "ptft-bench report" + (f": {', '.join(rs.suites)}" if rs.suites else "")
    answer = answer_section(lb, ev)
    if len(lb) and lb["test_mean"].notna().any():  # after the answer's notes: tuning, or its lack
        answer.blocks += tuning_notes(lb)
    doc = Document(title, [answer, setup_section(rs)])
    if len(lb):
        doc.sections += task_sections(lb, ev)
        doc.sections += tuning_sections(lb, data.tuning, rs.sweeps, figs)
        doc.sections += across_section(lb, ev)
        doc.sections += [figures_section(lb, figs)]
        doc.sections += generations_sections(lb)  # only with generation tasks
    shown = without_trials(rs)
    doc.sections += [
        did_not_learn_section(shown, lb),
        failures_section(shown),
        cost_section(lb),
    ]
    return doc.numbered()


def write_report(
    run_dirs: list[Path],
    out_dir: Path,
    formats: set[str] = {"md", "html", "csv"},  # noqa: B006 (read-only default, the documented API)
    expected_run_ids: set[str] | None = None,
) -> dict[str, Path]:
    """Write the report of the runs in `run_dirs` (merged) to `out_dir`.

    Args:
        run_dirs: run folders, each with `records/*.json` and optionally `plan.json` (see
            `ptft_bench.report.load`); several folders = shards of one sweep.
        out_dir: created if needed; gets `report.md`, `report.html`, `summary.csv`, `figures/`.
        formats: any of "md", "html", "csv".
        expected_run_ids: run ids that should exist; those without a record are listed missing.

    Returns:
        {"md" | "html" | "csv" | "figures": path written}.

    Raises:
        UserError: unknown format, missing folder, or no records and no plan at all.
    """
    formats = set(formats)
    if not formats or formats - FORMATS:
        bad = ", ".join(sorted(formats - FORMATS)) or "(none)"
        raise UserError(f"unknown report format {bad}; use a comma-separated subset of md,html,csv")
    data = build(run_dirs, expected_run_ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figs: dict = {}
    if formats & {"md", "html"} and len(data.leaderboard):
        from ptft_bench.report.render.figures import make_figures  # matplotlib only when drawing

        figs = make_figures(data.leaderboard, data.evidence, out_dir / "figures")
        if len(data.tuning):
            from ptft_bench.report.render.figures_tuning import tuning_figures

            figs.update(tuning_figures(data.leaderboard, data.tuning, out_dir / "figures"))
        written["figures"] = out_dir / "figures"
    doc = build_document(data, figs)
    if "md" in formats:
        written["md"] = _write(out_dir / "report.md", markdown.render(doc))
    if "html" in formats:
        written["html"] = _write(out_dir / "report.html", html.render(doc, out_dir))
    if "csv" in formats:
        path = out_dir / "summary.csv"
        summary_frame(data.leaderboard, data.evidence).to_csv(path, index=False)
        written["csv"] = path
    return written


def _write(path: Path, text: str) -> Path:
    return atomic.write_text(path, text)  # a reader never sees half a report


def summary_table(run_dirs: list[Path]) -> str:
    """Plain-text leaderboards per task and model, for the console (best score first)."""
    data = build(run_dirs, statistics=False)
    rs, lb = data.runs, data.leaderboard
    lines = []
    for (model, task), g in lb.groupby(["model", "task"]) if len(lb) else []:
        metric = (
            g["primary_metric"].dropna().iloc[0] if g["primary_metric"].notna().any() else "score"
        )
        header = ["variant", f"test {metric}", "seeds", "trainable", "train time", "memory"]
        rows = [
            [
                str(r["variant"]),
                (fmt.mean_std(r["test_mean"], r["test_std"]) if r["n_seeds"] else "all failed")
                + (" (learned nothing)" if r["did_not_learn"] else ""),
                str(int(r["n_seeds"])),
                f"{fmt.count(r['trainable_params'])} ({fmt.pct(r['trainable_pct'])})",
                fmt.seconds(r["train_seconds"]),
                fmt.nbytes(r["memory_bytes"]),
            ]
            for _, r in g.sort_values("test_mean", ascending=False, na_position="last").iterrows()
        ]
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        lines += [
            f"{task} · {model} (test {metric}, points, mean ± std over seeds)",
            _line(header, widths),
        ]
        lines += ["  ".join("-" * w for w in widths)] + [_line(r, widths) for r in rows] + [""]
    lines.append(f"runs: {len(rs.ok)} ok, {len(rs.failed)} failed, {len(rs.missing)} missing")
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    # First column (the variant) left-aligned, numbers right-aligned.
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
