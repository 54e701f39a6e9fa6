"""The answer, the report's first section, per model: one sentence of verdict (the variant to
use without a limit, and the cheapest variant tied with it), then one table of the variants a
budget can turn on (each budget's pick, and every variant no other beats on score and every
budgeted cost at once: `recommend.choices`), each with the budgets it is picked under, the
variants tied with it, its mean score, its gap to the overall pick (95% simultaneous interval),
its costs and what serving it implies (`Strategy.capabilities`, declared by the strategy
classes); then, folded, each budget's pick with its ties and their intervals; then the rule and
the notes that qualify it (tasks in and out of the rule, collapsed runs, variants that cannot be
recommended, budgets nothing fits, one seed, missing evidence, noisy latency).

Everything comes from `recommend` (the rule, stated in the report) and `evidence.Evidence`
(the intervals and ties); this module only lays it out.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.aggregate import REFERENCE_STRATEGY
from ptft_bench.report.evidence import Evidence, left_out_tasks
from ptft_bench.report.load import latency_noise_band
from ptft_bench.report.recommend import (
    RULE,
    BudgetAxis,
    Choice,
    Recommendation,
    active_axes,
    candidates,
    cheapest_tied,
    choices,
    cost_table,
    recommendations,
    rule_board,
)
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Block, Cell, Details, Paragraph, Section, Table
from ptft_bench.report.sections.common import (
    COLLAPSE,
    learning_of,
    not_compared,
    sim_gap,
    tasks_text,
)
from ptft_bench.strategy.registry import MERGES, SAME_MODEL, strategy_class

ANSWER_TITLE = "Answer: which strategy for which budget"
NOTE = (
    "Rows: each budget's pick (**bold**, with the budgets it is picked under) and every variant "
    "that no other beats on mean score and on all the budgeted costs at once; by mean score. "
    "Tied with: the variants it cannot be told apart from under some budget (one of the two the "
    "pick; Holm, 5%). Mean score: test primary metric (points), mean over the caption's tasks. "
    "Δ: mean gap to the pick without a limit over the same tasks, 95% simultaneous interval "
    "(Bonferroni over the other candidates); ≈: tied with it. Costs: means over the tasks; in "
    "brackets, multiples of full fine-tuning's on the same task (what the budgets limit). "
    "Serving: latency over the base model's as measured (merged where the run merged), and "
    "what is served: *mergeable* (the trained weights fold into the base: no overhead once "
    "merged), *same model* (the base architecture, own weights), *adds layers* or *adds "
    "tokens* (extra modules, a longer input). Works with: a quantized (int8 / nf4) base; "
    "a shared base (several fine-tunes served from one copy of the base); decoders. Serving and "
    "works with are what the strategy classes declare (`Strategy.capabilities`)."
)
BUDGET_NOTE = (
    "Each budget's pick (the best mean score among the candidates that fit) and the variants "
    "tied with it: the mean gap to the pick with its 95% simultaneous interval (Bonferroni over "
    "the other variants that fit that budget; tied: Holm, 5%, so each interval contains 0)."
)


def _cost_cells(c: pd.Series, axes: list[BudgetAxis]) -> list[Cell]:
    """One cell per budget axis: the mean over tasks, and the multiple of full fine-tuning's."""
    out = []
    for axis in axes:
        text = axis.show(c[axis.value])
        if axis.relative and fmt.finite(c[axis.column]):
            text += f" ({fmt.ratio(c[axis.column])})"
        out.append(Cell(text, c[axis.value]))
    return out


def _capabilities(mlb: pd.DataFrame) -> dict[str, dict | None]:
    """{variant: its strategy class's `capabilities` for the record's parameters}, None for a
    strategy this installation does not know (a record from elsewhere)."""
    out: dict[str, dict | None] = {}
    for v, g in mlb.groupby("variant"):
        row = g.iloc[0]
        runs = row["selected_runs"] or []
        params = dict(runs[0][1].strategy_params or {}) if runs else {}
        try:
            out[str(v)] = strategy_class(str(row["strategy"])).capabilities(params)
        except ValueError:
            out[str(v)] = None
    return out


def _works_with(caps: dict | None) -> Cell:
    if caps is None:
        return Cell(fmt.DASH)
    items = ["quantized base"] if caps["quantized_base"] else []
    items += ["shared base"] if caps["multi_adapter"] else []
    d = caps["decoders"]
    items += ["decoders"] if d is True else ([f"decoders ({d})"] if d else [])
    return Cell(", ".join(items) or fmt.DASH)


# How the answer's serving column writes `Strategy.capabilities()["serving"]`.
SERVING_TEXT = {MERGES: "mergeable"}


def _serving_cell(c: pd.Series, caps: dict | None, latency: BudgetAxis | None) -> Cell:
    what = SERVING_TEXT.get(caps["serving"], caps["serving"]) if caps else ""
    if latency is None:
        return Cell(what or fmt.DASH)
    text = latency.show(c[latency.value])
    return Cell(f"{text} · {what}" if what else text, c[latency.value])


def _names(variants) -> str:
    return ", ".join(f"`{v}`" for v in variants)


def _gap_cell(top: Recommendation, v: str) -> Cell:
    """The gap to the pick without a limit, ≈ when tied with it."""
    if v == top.variant:
        return Cell("pick", 0.0)
    g = top.gaps.get(v)
    if g is None:
        return Cell(fmt.DASH)
    return Cell(sim_gap(g) + (" ≈" if v in top.tied else ""), 100 * g.observed)


def _choice_row(ch: Choice, c: pd.Series, top, axes, caps) -> list[Cell]:
    name = f"**`{ch.variant}`**" if ch.picked_under else f"`{ch.variant}`"
    tied = _names(ch.tied_with) or fmt.DASH
    if not ch.ties_known:
        tied = (tied + "; " if ch.tied_with else "") + "some ties unknown (predictions missing)"
    latency = next((a for a in axes if a.kind == "inference"), None)
    return (
        [Cell(name, ch.variant), Cell("; ".join(ch.picked_under) or fmt.DASH), Cell(tied)]
        + [Cell(fmt.points(c["mean_score"]), c["mean_score"]), _gap_cell(top, ch.variant)]
        + _cost_cells(c, [a for a in axes if a is not latency])
        + [_serving_cell(c, caps, latency), _works_with(caps)]
    )


def _choice_table(mlb: pd.DataFrame, model: str, recs, tasks) -> tuple[Table, list[str]]:
    """The model's table (`recommend.choices`) and the non-dominated variants left out of it."""
    costs = cost_table(mlb)
    axes = active_axes(costs)
    cands = candidates(costs, mlb, model, tasks).set_index("variant", drop=False)
    rows, left = choices(recs, cands.reset_index(drop=True), axes)
    top, caps = recs[0], _capabilities(mlb)
    body = [_choice_row(ch, cands.loc[ch.variant], top, axes, caps.get(ch.variant)) for ch in rows]
    latency = any(a.kind == "inference" for a in axes)
    columns = ["variant", "pick under", "tied with", "mean score"]
    columns += [f"Δ vs {top.variant} [95% simult. CI]"]
    columns += [a.what for a in axes if a.kind != "inference"]
    columns += ["serving (latency × base)" if latency else "serving", "works with"]
    caption = f"Model `{model}`, over {tasks_text(tasks)}"
    return Table(columns, body, caption=caption, note=NOTE), left


def _budget_details(recs: list[Recommendation]) -> Details:
    """Folded: a row per budget, its pick and each tied variant with its interval."""
    rows = []
    for rec in recs:
        if rec.variant is None:
            rows.append([Cell(rec.short or rec.budget), Cell("no variant fits"), Cell(fmt.DASH)])
            continue
        tied = "; ".join(f"`{v}` {sim_gap(rec.gaps[v])}" for v in rec.tied) or fmt.DASH
        if not rec.ties_known:
            tied = "ties unknown: some tasks lack per-example predictions"
        rows.append([Cell(rec.short or rec.budget), Cell(f"**`{rec.variant}`**", rec.variant)])
        rows[-1].append(Cell(tied))
    columns = ["budget", "use", "tied with it: Δ vs it [95% simult. CI]"]
    table = Table(columns, rows, note=BUDGET_NOTE)
    return Details("Per budget: the pick and the variants tied with it", [table])


def _cheaper_text(alt: pd.Series, pick: pd.Series, axes: list[BudgetAxis], ref: bool) -> str:
    """ "0.0646% of the parameters, 0.7× the train time and 0.78× the training memory": the
    budgeted costs (latency aside: see the table) on which ``alt`` is below ``pick``."""
    parts = []
    for a in axes:
        if a.kind == "inference" or not alt[a.column] < pick[a.column]:
            continue
        if not a.relative:
            parts.append(f"{a.show(alt[a.value])} of the parameters")
        else:
            whose = "the" if ref else "full fine-tuning's"
            parts.append(f"{fmt.ratio(alt[a.column])} {whose} {a.what}")
    return (
        ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + (parts[-1] if parts else "")
    )


def _serving_text(caps: dict | None) -> str:
    if not caps:
        return ""
    if caps["serving"] == MERGES:
        return ", and its weights merge into the base model (no serving overhead once merged)"
    if caps["serving"] == SAME_MODEL:
        return ", and serves as the base architecture (no serving overhead)"
    return f", but {caps['serving']} at serving"


def _verdict(mlb: pd.DataFrame, model: str, top: Recommendation, lead: str) -> Paragraph:
    """One sentence: the pick without a limit and the cheapest variant tied with it."""
    costs = cost_table(mlb)
    axes = active_axes(costs)
    cands = candidates(costs, mlb, model, list(top.tasks))
    rows = cands.set_index("variant")
    head = (
        f"{lead}**{'use' if lead else 'Use'} `{top.variant}`** ({fmt.points(top.score)} points, "
        f"mean over {tasks_text(top.tasks)})"
    )
    alt = cheapest_tied(top, cands, axes)
    if alt is None:
        other = "no cheaper variant" if top.tied else "no other variant"
        return Paragraph(f"{head}; {other} is as good within the interval.")
    ref = str(rows.loc[top.variant, "strategy"]) == REFERENCE_STRATEGY
    cheaper = _cheaper_text(rows.loc[alt], rows.loc[top.variant], axes, ref)
    serving = _serving_text(_capabilities(mlb[mlb["variant"] == alt]).get(alt))
    return Paragraph(
        f"{head}; `{alt}` is as good within the interval ({sim_gap(top.gaps[alt])} points) at "
        f"{cheaper}{serving}."
    )


def _model_blocks(lb: pd.DataFrame, model: str, recs: list[Recommendation]) -> list[Block]:
    """The verdict, the table and the folded per-budget picks of one model."""
    mlb, tasks = rule_board(lb, model)
    lead = f"Model `{model}`: " if lb["model"].nunique() > 1 else ""
    top = next(r for r in recs if r.kind == "")
    out: list[Block] = []
    if top.variant is not None:
        out.append(_verdict(mlb, model, top, lead))
    table, left = _choice_table(mlb, model, recs, tasks)
    out.append(table)
    if left:
        out.append(
            Paragraph(
                f"Also not dominated, left out for space: {_names(left)} (every variant: "
                "{§across_tasks})."
            )
        )
    return out + [_budget_details(recs)]


def _why_not(mlb: pd.DataFrame) -> dict[str, str]:
    """{variant: "collapsed on cola, mrpc; did not learn on rte"} for the variants without a
    usable result on some task of ``mlb`` (a model's leaderboard on its rule tasks)."""
    out: dict[str, str] = {}
    tasks = sorted(mlb["task"].unique())
    for variant, g in mlb.groupby("variant", sort=True):
        rows = {str(r["task"]): r for _, r in g.iterrows()}
        why: dict[str, list[str]] = {}
        for t in tasks:
            reason = not_compared(rows[t]) if t in rows else "no result"
            if reason:
                why.setdefault(reason, []).append(t)
        if why:
            out[str(variant)] = "; ".join(f"{w} on {', '.join(ts)}" for w, ts in why.items())
    return out


def _collapse_text(mlb: pd.DataFrame) -> str:
    items: dict[str, list[str]] = {}
    for _, r in mlb.sort_values(["variant", "task"]).iterrows():
        n = learning_of(r)
        if n.collapsed:
            items.setdefault(str(r["variant"]), []).append(f"{r['task']} {n.collapsed}/{n.runs}")
    if not items:
        return ""
    listed = "; ".join(f"`{v}` on {', '.join(ts)}" for v, ts in items.items())
    return (
        f"**Collapsed runs** ({COLLAPSE}), selected runs per task: {listed}. A variant whose "
        "every selected run collapsed on a task has no result there; rerun it with another "
        "configuration ({§did_not_learn})."
    )


def _tasks_text(lb: pd.DataFrame, model: str, tasks: list[str]) -> str:
    out = left_out_tasks(lb, model)
    head = f"**Tasks in the rule**: {len(tasks)} of {len(tasks) + len(out)}"
    if not out:
        return head + " (on every task some variant beats the constant-prediction baseline)."
    mine = lb[lb["model"] == model]
    parts = []
    for t in out:
        g = mine[(mine["task"] == t) & mine["test_mean"].notna()]
        collapsed = sum(learning_of(r).all_collapsed for _, r in g.iterrows())
        parts.append(f"`{t}` ({len(g)} variants, {collapsed} of them collapsed)")
    return (
        f"{head}. Left out: {', '.join(parts)}: no variant beats the constant-prediction "
        "baseline on validation there, so those tasks cannot separate the strategies; their "
        "results are in the leaderboards ({§leaderboards}) and {§did_not_learn}."
    )


def _model_notes(lb: pd.DataFrame, model: str, recs: list[Recommendation]) -> list[Paragraph]:
    mlb, tasks = rule_board(lb, model)
    lead = f"Model `{model}`: " if lb["model"].nunique() > 1 else ""
    out = [Paragraph(lead + _tasks_text(lb, model, tasks))]
    collapse = _collapse_text(mlb)
    out += [Paragraph(collapse)] if collapse else []
    barred = _why_not(mlb)
    if barred:
        items = [f"`{v}` ({why})" for v, why in barred.items()]
        out.append(
            Paragraph(
                f"Not candidates (no usable result on every task of the rule): {', '.join(items)}."
            )
        )
    empty = [r.short or r.budget for r in recs if r.variant is None]
    if empty and len(empty) < len(recs):
        out.append(Paragraph(f"{lead}No variant fits {', '.join(empty)}."))
    return out


def _notes(lb: pd.DataFrame, evidence: Evidence, recs: list[Recommendation]) -> list[Paragraph]:
    out = []
    for model in sorted(lb["model"].unique()):
        out += _model_notes(lb, str(model), [r for r in recs if r.model == model])
    if evidence.one_seed:
        out.append(
            Paragraph(
                "**One seed**: intervals cover the test sample only, not seed-to-seed variation "
                "(often several points on small tasks), so they are a lower bound on the "
                'uncertainty; a one-seed "significant" gap may not survive another seed.'
            )
        )
    if evidence.any_missing:
        out.append(
            Paragraph(
                "Some comparisons lack evidence (no per-example predictions: rerun to compare); "
                "they fall back to means and paired t-tests over seeds and their ties are unknown."
            )
        )
    noisy = _latency_noise_text(lb[lb["test_mean"].notna()])
    return out + ([Paragraph(noisy)] if noisy else [])


# Runs that serve the base model's computation (full, head-only, BitFit, ...) measure the same
# latency up to noise; when they spread wider than this, say so next to the latency budgets.
NOISY_LATENCY_SPREAD = 0.2


def _latency_noise_text(scored: pd.DataFrame) -> str:
    band = latency_noise_band(scored)
    if band is None or band[1] - band[0] <= NOISY_LATENCY_SPREAD:
        return ""
    lo, hi = band
    return (
        f"**Serving latency is noisy here**: runs whose model serves the same computation as the "
        f"base model measured {lo:.2f}–{hi:.2f}× base (machine load while they were measured), "
        "so a latency ratio or budget inside that band is not a real difference ({§cost})."
    )


def answer_section(lb: pd.DataFrame, evidence: Evidence) -> Section:
    """The report's first section."""
    sec = Section(ANSWER_TITLE, key="answer")
    if lb.empty or lb["test_mean"].notna().sum() == 0:
        sec.blocks.append(Paragraph("No successful runs, so there is nothing to recommend yet."))
        return sec
    recs = recommendations(lb, evidence)
    for model in sorted(lb["model"].unique()):
        mine = [r for r in recs if r.model == model]
        if not mine:
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: every task is left out of the rule (below), so there is "
                    "nothing to recommend (see {§did_not_learn})."
                )
            )
        elif all(r.variant is None for r in mine):
            sec.blocks.append(
                Paragraph(
                    f"Model `{model}`: no variant has a usable result on every task of the rule, "
                    "so there is nothing to recommend (see {§did_not_learn})."
                )
            )
        else:
            sec.blocks += _model_blocks(lb, str(model), mine)
    sec.blocks.append(Paragraph("**Rule.** " + RULE))
    sec.blocks += _notes(lb, evidence, recs)
    return sec
