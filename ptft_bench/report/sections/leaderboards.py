"""The per-task leaderboards: one subsection per (task, model) with the floor (constant baseline,
linear probe), the leaderboard with the gap of every variant to the task's best and to full
fine-tuning (simultaneous intervals, Holm-corrected p-values, tie groups, McNemar), the learning
check on validation (learned, collapsed, better than the linear probe?), the comparisons that
lack evidence, and where the spread comes from (seeds vs test sample).

The leaderboard has two views: the compact one (markdown, and the HTML's first view: at most
`MAX_COLUMNS` columns, those a choice turns on, each gap with its tie mark) and the full one
(every column: p-values, McNemar, the other metrics, parameter count, checkpoint size, runs,
validation score per learning rate), folded in the HTML; summary.csv has them all.

The statistics come from `evidence.TaskEvidence` (the paired t-test over seeds too, the fallback
without per-example predictions); this module only lays them out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ptft_bench.report.evidence import LINEAR_PROBE, Evidence, TaskEvidence
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import (
    Bullets,
    Cell,
    Details,
    Paragraph,
    Section,
    Table,
    mark_best,
)
from ptft_bench.report.sections.common import (
    COLLAPSE,
    learning_of,
    method_note,
    not_compared,
    sim_gap,
)
from ptft_bench.report.sections.generations import floor_text
from ptft_bench.tasks.metrics import CLASSIFICATION_METRICS

ONE_SEED = (
    "**One seed.** Where a variant has a single seed, its intervals cover the test sample only, "
    "not seed-to-seed variation (often several points on small tasks): a one-seed interval is a "
    'lower bound on the real uncertainty, and a one-seed "significant" gap may not survive '
    "retraining with another seed. Run 3+ seeds for intervals that cover both."
)
MARK_NOTE = (
    "**≈ best**: cannot be told apart from the task's best variant; **≈ full**: cannot be told "
    "apart from full fine-tuning (better / worse: different at the 5% level). Both use "
    "Holm-corrected p-values over the task's variants (the comparisons with the best, and "
    "those with full fine-tuning, are two families). Intervals (points) are 95% simultaneous "
    "intervals, Bonferroni over the same comparisons ({families}), from the same distribution "
    "as the p-values: a tied variant's interval always contains 0 (Holm can separate a variant "
    "whose interval touches 0). {method} McNemar: exact test of per-example correctness against "
    "full fine-tuning (largest p over matched seeds), a cross-check that concerns accuracy; † "
    "marks where it disagrees with the bootstrap. n/a: no per-example predictions (the gap is "
    "then a difference of means; against full fine-tuning a paired t-test over seeds when 2+ "
    "seeds). Variants that learned nothing on validation, or collapsed, are not compared."
)

# The compact leaderboard: at most this many columns; the costs it keeps (the budgets' axes).
MAX_COLUMNS = 10
COMPACT_COSTS = ("% of model", "train time", "training memory", "latency × base")
COMPACT_NOTE = (
    "★ primary metric: {primary} (points = metric × 100), mean ± standard deviation over seeds "
    "(ddof=1), at the learning rate chosen per variant on validation (best mean validation "
    "score over seeds; costs at that rate too). Best value per column in bold. Learned: "
    "selected runs (one per seed) that learned on validation. The mark after a gap is the "
    "Holm-corrected decision at 5% over the task's variants (the comparisons with the best, "
    "and those with full fine-tuning, are two families): ≈ best / ≈ full, cannot be told apart "
    "from the task's best variant / from full fine-tuning; better / worse: different. Gaps are "
    "in points, with 95% simultaneous intervals, Bonferroni over the same comparisons "
    "({families}), so a tied gap's interval contains 0. {method} Without per-example "
    "predictions a gap is "
    "a difference of means (against full fine-tuning a paired t-test over seeds when 2+). "
    "Variants that learned nothing on validation, or collapsed, are not compared. Every other "
    "column (p-values, McNemar, the other metrics, parameter counts, checkpoint size, runs, "
    "validation score per learning rate): summary.csv, and under the table in report.html."
)

# The cost columns of a leaderboard, shown where some variant has a value: (leaderboard column,
# header, formatter, higher is better).
LEADERBOARD_COST_SPEC = (
    ("trainable_params", "trainable params", fmt.count, False),
    ("trainable_pct", "% of model", fmt.pct, False),
    ("train_seconds", "train time", fmt.seconds, False),
    ("memory_bytes", "training memory", fmt.nbytes, False),
    (
        "inference_overhead",
        "latency × base",
        lambda x: f"{x:.2f}×" if fmt.finite(x) else fmt.DASH,
        False,
    ),
    ("checkpoint_bytes", "checkpoint", fmt.nbytes, False),
)


def _metric(g: pd.DataFrame) -> str:
    return (
        str(g["primary_metric"].dropna().iloc[0]) if g["primary_metric"].notna().any() else "score"
    )


def floor_paragraph(g: pd.DataFrame, metric: str) -> Paragraph | None:
    """The constant-prediction baseline on test, and the linear probe beside it when there is one."""
    base = next((b for b in g["baseline"] if isinstance(b, dict) and b.get("test")), None)
    probe = g[(g["strategy"] == LINEAR_PROBE) & g["test_mean"].notna()]
    parts = []
    if base:
        scores = ", ".join(f"{m} {fmt.points(100 * v)}" for m, v in sorted(base["test"].items()))
        parts.append(f"Constant-prediction baseline, {floor_text(base)}, on test: {scores}.")
    if len(probe):
        r = probe.sort_values("test_mean").iloc[-1]
        parts.append(
            f"Linear probe `{r['variant']}` (logistic / ridge regression on frozen pooled "
            f"features): {metric} {fmt.mean_std(r['test_mean'], r['test_std'])}: **the floor any "
            "fine-tuning strategy must beat**."
        )
    return Paragraph("**Floor.** " + " ".join(parts)) if parts else None


def _learned_cell(r: pd.Series) -> Cell:
    n = learning_of(r)
    if not n.learned + n.not_learned:
        return Cell(fmt.DASH)
    text = f"{n.learned}/{n.runs}"
    if r["did_not_learn"]:
        text += " ✗ collapsed" if n.all_collapsed else " ✗ did not learn"
    elif n.collapsed:
        text += f" ({n.collapsed} collapsed)"
    elif n.not_learned:
        text += " (some seeds did not)"
    return Cell(text, n.learned / max(n.runs, 1))


def _fallback_full(r: pd.Series, ref: pd.Series | None, ev: TaskEvidence) -> str:
    """Δ vs full without predictions: the paired t-test over seeds (`TaskEvidence.seed_tests`),
    or a difference of means."""
    p = ev.seed_tests.get(str(r["variant"])) if ref is not None else None
    if p is None:
        return fmt.DASH
    if p.n_pairs >= 2:
        return f"{fmt.signed(p.mean_diff, p.std_diff)} ({p.verdict()})"
    return f"{fmt.signed(r['test_mean'] - ref['test_mean'])} ({p.verdict()})"


def _mark(row, which: str) -> str:
    if which == "best":
        return "≈" if row.in_best_group else ""
    if row.tied_with_reference:
        return "≈"
    return "better" if row.to_reference.observed > 0 else "worse"


def _gap_cells(r: pd.Series, ev: TaskEvidence, best: pd.Series | None, ref: pd.Series | None):
    """Δ vs best, ≈ best, Δ vs full, p (Holm), ≈ full, McNemar: six cells."""
    v = str(r["variant"])
    why = not_compared(r)
    if why:
        return [Cell(why)] + [Cell(fmt.DASH) for _ in range(5)]
    row = ev.row(v)
    if row is None:
        to_best = r["test_mean"] - best["test_mean"] if best is not None else math.nan
        return [
            Cell(f"{fmt.signed(to_best)} (no CI)", to_best),
            Cell("n/a"),
            Cell(
                _fallback_full(r, ref, ev),
                r["test_mean"] - ref["test_mean"] if ref is not None else None,
            ),
            Cell(fmt.DASH),
            Cell("n/a" if ref is not None else fmt.DASH),
            Cell(fmt.DASH),
        ]
    tb, tr = row.to_best, row.to_reference
    is_best, is_ref = v == ev.comparison.best, v == ev.reference
    disagree = tr.significant() != (row.mcnemar_p < 0.05) if fmt.finite(row.mcnemar_p) else False
    cells = [
        Cell("best" if is_best else sim_gap(tb), 100 * tb.observed),
        Cell("best" if is_best else _mark(row, "best")),
    ]
    if ev.reference and not ev.has(ev.reference):  # full fine-tuning has no predictions
        diff = r["test_mean"] - ref["test_mean"]
        return (
            cells
            + [Cell(_fallback_full(r, ref, ev), diff), Cell(fmt.DASH), Cell("n/a")]
            + [Cell(fmt.DASH)]
        )
    return cells + [
        Cell(
            "reference" if is_ref else sim_gap(tr),
            100 * tr.observed if fmt.finite(tr.observed) else None,
        ),
        Cell(fmt.DASH if is_ref else fmt.pvalue(tr.p_adjusted), tr.p_adjusted),
        Cell("reference" if is_ref else (_mark(row, "full") if ev.reference else fmt.DASH)),
        Cell(fmt.pvalue(row.mcnemar_p) + (" †" if disagree else ""), row.mcnemar_p),
    ]


def _order(g: pd.DataFrame) -> pd.DataFrame:
    """Compared variants by score, then those that learned nothing, then those without result."""
    key = g["test_mean"].where(~g["did_not_learn"].astype(bool), -1e9).fillna(-2e9)
    return g.assign(_key=key).sort_values(["_key", "variant"], ascending=[False, True])


@dataclass
class _Layout:
    """Which columns a task's leaderboard has."""

    primary: str
    others: list[str]
    costs: list
    checks: bool
    mcnemar: bool

    def columns(self) -> list[str]:
        cols = ["variant", "lr (val. score)", "seeds"] + (["learned"] if self.checks else [])
        cols += [f"test {self.primary} ★", "Δ vs best [95% simult. CI]", "≈ best"]
        cols += ["Δ vs full [95% simult. CI]"]
        cols += ["p vs full (Holm)", "≈ full"] + (["McNemar p vs full"] if self.mcnemar else [])
        cols += [f"test {m}" for m in self.others] + [c[1] for c in self.costs]
        return cols + ["runs ok/failed/missing", "val. score by lr"]

    def mark_bests(self, rows: list[list[Cell]]) -> None:
        cols = self.columns()
        mark_best(rows, cols.index(f"test {self.primary} ★"), True)
        first = len(cols) - 2 - len(self.costs) - len(self.others)
        for i in range(len(self.others)):
            mark_best(rows, first + i, True)
        for j, (_, _, _, higher) in enumerate(self.costs):
            mark_best(rows, first + len(self.others) + j, higher)


def _row(r: pd.Series, lay: _Layout, ev: TaskEvidence, best, ref) -> list[Cell]:
    lr = f"{fmt.lr(r['lr'])} ({fmt.points(r['val_mean'])})" if fmt.finite(r["lr"]) else fmt.DASH
    row = [Cell(str(r["variant"]), str(r["variant"])), Cell(lr, r["lr"])]
    row.append(Cell(str(int(r["n_seeds"])), float(r["n_seeds"])))
    row += [_learned_cell(r)] if lay.checks else []
    row.append(Cell(fmt.mean_std(r["test_mean"], r["test_std"]), r["test_mean"]))
    gaps = _gap_cells(r, ev, best, ref)
    row += gaps if lay.mcnemar else gaps[:5]
    for m in lay.others:
        s = r["test_metrics"].get(m)
        row.append(Cell(fmt.mean_std(s.mean, s.std) if s else fmt.DASH, s.mean if s else math.nan))
    row += [Cell(f(r[col]), r[col]) for col, _, f, _ in lay.costs]
    bad = float(r["n_runs_failed"] + r["n_runs_missing"])
    row.append(Cell(f"{r['n_runs_ok']}/{r['n_runs_failed']}/{r['n_runs_missing']}", bad))
    by_lr = ", ".join(f"{fmt.lr(k)}: {fmt.points(v)}" for k, v in sorted(r["lr_scores"].items()))
    row.append(Cell((by_lr or fmt.DASH) + (f" ({r['lr_note']})" if r["lr_note"] else "")))
    return row


def _with_mark(gap: Cell, mark: Cell) -> Cell:
    """The gap cell followed by its tie mark ("−0.6 [−3.2, +1.9] ≈"), where there is one."""
    if mark.text in ("", fmt.DASH, "n/a", gap.text) or gap.text in ("best", "reference"):
        return gap
    return Cell(f"{gap.text} {mark.text}", gap.sort)


def compact_table(full: Table, primary: str) -> Table:
    """The columns a choice turns on, from `leaderboard_table`'s: variant, lr, learned (or
    seeds), the primary metric, the two gaps with their marks, the budgeted costs."""
    at = {c: i for i, c in enumerate(full.columns)}
    seeds = "learned" if "learned" in at else "seeds"
    keep = ["variant", "lr (val. score)", seeds, f"test {primary} ★"]
    costs = [c for c in COMPACT_COSTS if c in at]
    rows = []
    for row in full.rows:
        cells = [row[at[c]] for c in keep]
        cells.append(_with_mark(row[at["Δ vs best [95% simult. CI]"]], row[at["≈ best"]]))
        cells.append(_with_mark(row[at["Δ vs full [95% simult. CI]"]], row[at["≈ full"]]))
        rows.append(cells + [row[at[c]] for c in costs])
    columns = keep + ["Δ vs best [95% simult. CI]", "Δ vs full [95% simult. CI]"] + costs
    return Table(columns, rows, caption=full.caption)


def leaderboard_table(g: pd.DataFrame, ev: TaskEvidence) -> Table:
    """One (task, model), every column: a row per variant, gaps with intervals and tie marks,
    p-values, McNemar, other metrics, costs, runs; best in bold (`compact_table` picks)."""
    primary = _metric(g)
    lay = _Layout(
        primary,
        sorted({m for d in g["test_metrics"] for m in d} - {primary}),
        [c for c in LEADERBOARD_COST_SPEC if g[c[0]].notna().any()],
        bool((g["n_learned"] + g["n_not_learned"]).any()),
        ev.comparison is not None and ev.metric in CLASSIFICATION_METRICS,
    )
    compared = g[g["variant"].isin(ev.eligible)]
    best = compared.sort_values("test_mean").iloc[-1] if len(compared) else None
    refs = compared[compared["variant"] == ev.reference]
    ref = refs.iloc[0] if len(refs) else None
    rows = [_row(r, lay, ev, best, ref) for _, r in _order(g).iterrows()]
    lay.mark_bests(rows)
    marks = MARK_NOTE.format(families=_families(ev), method=method_note(ev.methods))
    note = (
        f"★ primary metric: {primary} (points = metric × 100), mean ± standard deviation over "
        "seeds (ddof=1). The learning rate is chosen per variant on the validation split (best "
        "mean validation score over seeds); test numbers and costs are at that rate. Best value "
        "per column in bold. " + marks.replace("  ", " ")
    )
    return Table(lay.columns(), rows, note=note)


def _families(ev: TaskEvidence) -> str:
    """ "m = 7 comparisons with the best, 7 with full fine-tuning" from the comparison rows."""
    rows = [r for r in (ev.comparison.rows if ev.comparison else []) if r.has_evidence]
    best = max((r.to_best.family for r in rows if r.variant != ev.comparison.best), default=0)
    ref = max((r.to_reference.family for r in rows if r.variant != ev.reference), default=0)
    out = f"m = {best} comparison{'s' if best != 1 else ''} with the best"
    return out + (f", {ref} with full fine-tuning" if ev.reference and ref else "")


def variance_table(ev: TaskEvidence) -> Table | None:
    """Seed SD vs test-sample SD per variant with 2+ seeds (None when there is none)."""
    if ev.samples is None:
        return None
    rows = []
    for v in ev.eligible:
        if not ev.has(v) or len(ev.samples.runs[v]) < 2:
            continue
        s = ev.samples.variance(v)
        rows.append(
            [
                Cell(v, v),
                Cell(str(s.n_seeds), float(s.n_seeds)),
                Cell(fmt.points(100 * s.mean), 100 * s.mean),
                Cell(fmt.points(100 * s.seed_sd, 2), 100 * s.seed_sd),
                Cell(fmt.points(100 * s.test_sample_sd, 2), 100 * s.test_sample_sd),
                Cell(fmt.points(100 * s.seed_share, 0) + "%", s.seed_share),
            ]
        )
    if not rows:
        return None
    cols = ["variant", "seeds", "score", "seed SD", "test-sample SD", "share from seeds"]
    note = (
        "Where the spread of one run's score comes from (points): seed SD = standard deviation of "
        "the per-seed test scores (ddof=1), what retraining with another seed moves; test-sample "
        "SD = bootstrap standard deviation of one run's score, what drawing another test set of "
        "the same size moves. Share from seeds = seed SD² / (seed SD² + test-sample SD²)."
    )
    return Table(cols, rows, caption="Seeds or test sample?", note=note)


def _gain_cell(r: pd.Series) -> Cell:
    """Mean over the selected runs of the validation gain over the constant (Matthews / Pearson)."""
    gains = [(rec.learning_check or {}).get("gain") or {} for _, rec, _ in r["selected_runs"] or []]
    values = [x["value"] for x in gains if fmt.finite(x.get("value"))]
    if not values:
        return Cell(fmt.DASH)
    metric = gains[0].get("metric", "")
    mean = 100 * sum(values) / len(values)
    return Cell(f"{metric} {fmt.points(mean)}", mean)


def _probe_cells(v: str, ev: TaskEvidence) -> list[Cell]:
    if v == ev.probe:
        return [Cell("probe"), Cell("probe")]
    g = ev.vs_probe.get(v)
    if g is None or not fmt.finite(g.observed):
        return [Cell(fmt.DASH), Cell(fmt.DASH)]
    verdict = "≈" if not g.significant() else ("better" if g.observed > 0 else "worse")
    return [Cell(sim_gap(g), 100 * g.observed), Cell(verdict)]


def validation_table(g: pd.DataFrame, ev: TaskEvidence) -> Table | None:
    """Per variant: did its runs learn on validation (or collapse), its gain over the constant,
    and whether it beats the linear probe on validation (None without any learning check)."""
    rows = []
    for _, r in _order(g).iterrows():
        n = learning_of(r)
        if not n.runs or not n.learned + n.not_learned:
            continue
        v = str(r["variant"])
        judged = {"validation": "validation", "test": "test (old record)"}.get(n.split, "mixed")
        rows.append(
            [Cell(v, v), Cell(f"{n.learned}/{n.runs}", n.learned / n.runs)]
            + [Cell(str(n.collapsed), float(n.collapsed)), Cell(judged), _gain_cell(r)]
            + (_probe_cells(v, ev) if ev.probe else [])
        )
    if not rows:
        return None
    cols = ["variant", "runs that learned", "collapsed", "judged on", "gain over the constant"]
    if ev.probe:
        cols += [f"Δ vs `{ev.probe}` on validation [95% simult. CI]", "vs probe"]
    m = max((x.family for x in ev.vs_probe.values()), default=0)
    note = (
        "A run learned when its validation Matthews (classification) or Pearson (regression) "
        "correlation, which any constant prediction scores 0 on, has a 95% bootstrap interval "
        "(validation examples) above 0, and its train loss did not diverge; gain: that "
        f"correlation (points), mean over the selected runs. Collapsed: {COLLAPSE}."
        + (
            f" Δ vs `{ev.probe}`: validation primary metric, gap to the linear probe, intervals "
            f"simultaneous over m = {m} comparisons (Bonferroni), ≈ / better / worse by Holm at 5%."
            if ev.probe
            else ""
        )
    )
    return Table(cols, rows, caption="Learned? (validation)", note=note)


def task_section(g: pd.DataFrame, ev: TaskEvidence) -> Section:
    """The subsection of one (task, model)."""
    task, model = g["task"].iloc[0], g["model"].iloc[0]
    sec = Section(f"{task} · model `{model}`", level=3)
    floor = floor_paragraph(g, _metric(g))
    sec.blocks += [floor] if floor else []
    full = leaderboard_table(g, ev)
    compact = compact_table(full, _metric(g))
    marks = dict(families=_families(ev), method=method_note(ev.methods))
    compact.note = COMPACT_NOTE.format(primary=_metric(g), **marks).replace("  ", " ")
    sec.blocks.append(compact)
    sec.blocks.append(
        Details("Every column (p-values, McNemar, other metrics, runs)", [full], False)
    )
    val = validation_table(g, ev)
    sec.blocks += [val] if val else []
    if ev.missing:
        reasons: dict[str, list[str]] = {}
        for v, why in ev.missing.items():
            reasons.setdefault(why, []).append(v)
        items = [f"{why}: {', '.join(vs)}" for why, vs in reasons.items()]
        sec.blocks.append(Bullets([f"Comparisons without evidence — {i}" for i in items]))
    var = variance_table(ev)
    sec.blocks += [var] if var else []
    return sec


def task_sections(lb: pd.DataFrame, evidence: Evidence) -> list[Section]:
    """The section's head, then a leaderboard subsection per task per model."""
    head = Section("Per-task leaderboards", key="leaderboards")
    if evidence.one_seed:
        head.blocks.append(Paragraph(ONE_SEED))
    out = [head]
    for (task, model), g in lb.groupby(["task", "model"]):
        ev = evidence.task(task, model) or TaskEvidence(str(task), str(model), None, None, [])
        out.append(task_section(g, ev))
    return out
