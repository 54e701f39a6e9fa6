"""The tuning section, present when some variant was tuned by an Optuna study (`ptft_bench.tuning`):
the budget as configured and whether every (task, model, variant) got it; the search space of
each variant; per (task, model) the trials run, pruned and failed, the configuration selected and
what to change (a selected learning rate at the edge of its range, runs still improving at their
last epoch); the expected best validation score after n trials (`stats.tuning`, Dodge et al.
2019) and what the search cost next to one final run; and which strategies needed the search
most (`tuning_sentence`, also said in the answer). For a folder without tuning, `tuning_notes`
gives the answer one line saying so.

The selection itself is `aggregate.pick_tuned`; the trials come from `aggregate.tuning_trials`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Bullets, Cell, Figure, Paragraph, Section, Table
from ptft_bench.report.stats.tuning import tuning_gain
from ptft_bench.tuning.space import SearchSpace

UNTUNED = (
    "Learning rates were not tuned on these tasks (each variant ran at the listed learning "
    "rates): a comparison is only as fair as those choices; use `--trials N`."
)
CURVE_RULE = (
    "Expected best validation score after n trials (Dodge et al. 2019, *Show your work*): with "
    "the study's N trial scores sorted v(1) ≤ … ≤ v(N), E[best of n draws with replacement] = "
    "Σᵢ v(i)·((i/N)ⁿ − ((i−1)/N)ⁿ); n = 1 is the mean trial, n = N close to the best. A pruned "
    "trial counts with the best validation score it reached before it was stopped, a collapsed "
    "or failed one with its validation primary score where finite, else it is left out. A "
    "flat curve: any configuration tried would have done; a steep one: the comparison depends on "
    "the search."
)
FIGURE_CAPTIONS = {
    "tuning_curve": "Expected best validation score (points) after n trials, one line per "
    "variant (Dodge et al. 2019; the rule is stated above).",
    "tuning_lr": "Validation score (points, the best a trial reached) against its learning rate "
    "(log scale), one series per variant: filled = complete, hollow = pruned, × = collapsed or "
    "failed (its final validation score), ringed = the selected trial.",
}
# A study line of plan.json's sweep `tuning.studies` (`ptft_bench.sweep.plan.StudyPlan.line`).
STUDY_LINE = re.compile(r"^(\S+)  (.+?)  (.+?)  (.+?)  (\d+) trials \((.*)\), then seeds (.*)$")
LR_RANGE = re.compile(r"lr log-uniform \[([^,\]]+), ([^\]]+)\]")


def tuned(lb: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows of tuned variants (those with a `tuning` summary)."""
    if lb.empty or "tuning" not in lb:
        return lb.iloc[0:0]
    return lb[lb["tuning"].map(lambda t: bool(t))]


def _lr(x: Any) -> str:
    return f"{float(x):.3g}" if fmt.finite(x) else fmt.DASH


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


# -- the budget, as configured ---------------------------------------------------------------
def configured(sweeps: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest sweep's `tuning` (plan.json): trials, sampler, pruner, seed and its studies
    parsed into {name: {task, model, variant, trials, space, lr}}; {} when no sweep says."""
    found = [s["tuning"] for s in sweeps if isinstance(s.get("tuning"), dict)]
    if not found:
        return {}
    conf = dict(found[-1])
    studies = {}
    for line in conf.get("studies") or []:
        m = STUDY_LINE.match(str(line))
        if not m:
            continue
        lr = LR_RANGE.search(m.group(6))
        studies[m.group(1)] = {
            "task": m.group(2),
            "model": m.group(3),
            "variant": m.group(4),
            "trials": int(m.group(5)),
            "space": m.group(6),
            "lr": (float(lr.group(1)), float(lr.group(2))) if lr else None,
            "seeds": [x for x in m.group(7).split(",") if x.strip() and x != "none"],
        }
    conf["studies"] = studies
    return conf


SAMPLER_TEXT = {
    "auto": "with the learning rate alone a grid of {n} log-spaced rates over the variant's "
    "range, TPE where a structural parameter is searched",
    "grid": "a grid of the variant's range, {n} points",
    "tpe": "TPE (Bergstra et al. 2011)",
    "random": "random search",
}


def _budget_paragraph(conf: dict[str, Any], n: int) -> Paragraph:
    how = f"an Optuna study of **{n} trials**"
    if conf:
        sampler = str(conf.get("sampler", "?"))
        what = SAMPLER_TEXT.get(sampler, "").format(n=n)
        how += (
            f" (sampler `{sampler}`" + (f": {what}" if what else "") + f"; pruner "
            f"`{conf.get('pruner', '?')}` on the validation score after each epoch; trials at "
            f"seed {conf.get('seed', '?')})"
        )
    else:
        how += " (counted from the records: the run folder's plan.json does not say how)"
    return Paragraph(
        f"**Budget.** Each (task, model, variant) that trains by gradient was tuned by {how}; "
        "the other seeds then ran at the configuration it selected. Selection, as the study "
        "makes it: the complete trial (not pruned, failed or collapsed) with the best "
        "validation score, ties to the lower trial number. Only that configuration's runs enter "
        "the leaderboards, gaps, ties, the answer and costs; the other trials appear only here."
    )


def trial_counts(lb: pd.DataFrame, trials: pd.DataFrame, conf: dict[str, Any]) -> pd.DataFrame:
    """Per tuned (task, model, variant), and per study planned without a record: trials found
    (distinct trial numbers) and the budget (the plan's, else the most any group got)."""
    rows = {}
    for r in tuned(lb).itertuples():
        rows[(r.task, r.model, r.variant)] = 0
    if len(trials):
        for key, g in trials.groupby(["task", "model", "variant"]):
            rows[key] = int(g["trial"].nunique())
    for st in conf.get("studies", {}).values():
        rows.setdefault((st["task"], st["model"], st["variant"]), 0)
    budget = conf.get("trials") or max(rows.values(), default=0)
    out = [
        {"task": t, "model": m, "variant": v, "trials": n, "budget": int(budget)}
        for (t, m, v), n in sorted(rows.items())
    ]
    return pd.DataFrame(out, columns=["task", "model", "variant", "trials", "budget"])


def check_paragraph(counts: pd.DataFrame) -> Paragraph:
    """Whether every (task, model, variant) got the same number of trials; names those that
    did not."""
    if counts.empty:
        return Paragraph("No tuned (task, model, variant) has a trial record yet.")
    budget = int(counts["budget"].iloc[0])
    off = counts[counts["trials"] != budget]
    many = counts["model"].nunique() > 1
    if off.empty:
        return Paragraph(
            f"**Equal budgets: yes.** Every one of the {len(counts)} tuned (task, model, "
            f"variant) got {budget} trials."
        )
    named = ", ".join(
        f"`{r.variant}` on `{r.task}`" + (f" with `{r.model}`" if many else "")
        + f" ({r.trials} of {budget})"
        for r in off.itertuples()
    )  # fmt: skip
    return Paragraph(
        f"**Equal budgets: no.** {len(off)} of {len(counts)} tuned (task, model, variant) did "
        f"not get {budget} trials: {named}. A sweep still running or interrupted leaves a study "
        "short (run it again to finish it); until then those variants had less search than the "
        "others, and their comparisons are not on equal terms."
    )


def seeds_paragraph(lb: pd.DataFrame, conf: dict[str, Any]) -> Paragraph | None:
    """The tuned variants whose selected configuration lacks some of its planned seeds."""
    short = []
    many = lb["model"].nunique() > 1
    for st in conf.get("studies", {}).values():
        rows = lb[(lb["task"] == st["task"]) & (lb["model"] == st["model"])]
        rows = rows[rows["variant"] == st["variant"]]
        if rows.empty or rows.iloc[0]["tuning"].get("selected_trial") is None:
            continue
        want, got = 1 + len(st["seeds"]), int(rows.iloc[0]["n_seeds"])
        if got < want:
            where = f" with `{st['model']}`" if many else ""
            short.append(f"`{st['variant']}` on `{st['task']}`{where} ({got} of {want})")
    if not short:
        return None
    return Paragraph(
        "**Seeds at the selected configuration still missing** (successful final runs of "
        f"those planned): {', '.join(short)}; their leaderboard rows rest on fewer seeds."
    )


def _sampler_of(conf: dict[str, Any], searched: list[str]) -> str:
    requested = str(conf.get("sampler", "auto")) if conf else "auto"
    if requested != "auto":
        return requested
    return "tpe" if searched else "grid"


def space_table(trials: pd.DataFrame, conf: dict[str, Any]) -> Table:
    """Per variant: the sampler, the space as configured (plan.json) and as tried (records)."""
    planned: dict[str, set[str]] = {}
    for st in conf.get("studies", {}).values():
        planned.setdefault(st["variant"], set()).add(st["space"])
    rows = []
    for variant, g in trials.groupby("variant"):
        lrs = g["lr"].dropna()
        searched = sorted({k for p in g["params"] for k in p})
        tried = "; ".join(
            f"{k} in {{{', '.join(sorted({str(p[k]) for p in g['params'] if k in p}))}}}"
            for k in searched
        )
        rows.append(
            [
                Cell(str(variant), str(variant)),
                Cell(_sampler_of(conf, searched)),
                Cell("; ".join(sorted(planned.get(variant, ()))) or fmt.DASH),
                Cell(f"{_lr(lrs.min())} – {_lr(lrs.max())} ({lrs.nunique()} distinct)"),
                Cell(tried or fmt.DASH),
            ]
        )
    cols = ["variant", "sampler", "search space (configured)", "lr tried", "other params tried"]
    return Table(cols, rows, caption="Search space per variant")


# -- per (task, model) ---------------------------------------------------------------------
def _edge(r: pd.Series, g: pd.DataFrame, conf: dict[str, Any]) -> str | None:
    """ "low" / "high" when the selected lr is at that edge of the range searched."""
    tried = [float(x) for x in g["lr"].dropna() if x > 0]
    if not fmt.finite(r["lr"]) or not tried:
        return None
    study = conf.get("studies", {}).get(r["tuning"].get("study"), {})
    searched = sorted({k for p in g["params"] for k in p})
    if study.get("lr") and _sampler_of(conf, searched) != "grid":
        return SearchSpace(study["lr"]).at_edge(float(r["lr"]))  # sampled: the range's ends
    return SearchSpace((min(tried), max(tried))).at_edge(float(r["lr"]), tried)


def _still_improving(r: pd.Series) -> tuple[int, int]:
    """(final runs still improving at their last epoch, final runs)."""
    stops = [getattr(rec, "training_stop", None) for _, rec, _ in r["selected_runs"]]
    flags = [bool(s.get("still_improving")) for s in stops if isinstance(s, dict)]
    return sum(flags), len(r["selected_runs"])


def flags(r: pd.Series, g: pd.DataFrame, conf: dict[str, Any]) -> list[str]:
    """What to change for one tuned variant on one task."""
    out = []
    if r["tuning"].get("selected_trial") is None:
        out.append(
            "nothing selected: every trial was pruned, failed or collapsed; move or widen the "
            "learning-rate range"
        )
        return out
    edge = _edge(r, g, conf)
    if edge:
        out.append(f"selected lr at the {edge} edge of the searched range: widen the range")
    improving, n = _still_improving(r)
    if improving:
        out.append(
            f"still improving at the last epoch ({improving} of {n} final runs): give it more "
            "epochs"
        )
    return out


def study_table(g_lb: pd.DataFrame, trials: pd.DataFrame, conf: dict[str, Any]) -> Table:
    """One (task, model): a row per tuned variant, the trials, the selection and the flags."""
    rows = []
    for _, r in g_lb.sort_values("variant").iterrows():
        t, mine = r["tuning"], trials[trials["variant"] == r["variant"]]
        params = _params(t.get("selected_params") or {})
        selected = _lr(r["lr"]) + (f" ({params})" if params else "")
        rows.append(
            [
                Cell(str(r["variant"]), str(r["variant"])),
                Cell(str(t["trials"]), float(t["trials"])),
                Cell(str(t["complete"]), float(t["complete"])),
                Cell(str(t["pruned"]), float(t["pruned"])),
                Cell(f"{t['collapsed']} / {t['failed'] - t['collapsed']}", float(t["failed"])),
                Cell(selected if t.get("selected_trial") is not None else fmt.DASH, r["lr"]),
                Cell(fmt.points(t["selected_value"]), t["selected_value"]),
                Cell(str(int(r["n_seeds"])), float(r["n_seeds"])),
                Cell("; ".join(flags(r, mine, conf)) or "none"),
            ]
        )
    cols = ["variant", "trials", "complete", "pruned", "collapsed / failed", "selected lr (params)"]
    cols += ["val. score of selected trial", "final runs", "flags: what to change"]
    note = (
        "Trials: records of the study, each counted once as the study counts it (complete, "
        "pruned, collapsed or failed: a run that collapsed to one constant prediction is a failed "
        "configuration even when it was also pruned); val. score: the best validation primary "
        "score (points) "
        "of the selected trial; final runs: successful runs at the selected configuration (the "
        "trial and the other seeds), what the leaderboard uses."
    )
    return Table(cols, rows, caption="Trials and selection", note=note)


def _ns(n_max: int) -> list[int]:
    """The trial counts shown as columns: all up to 8, else powers of two and N."""
    if n_max <= 8:
        return list(range(1, n_max + 1))
    return sorted({*(2**k for k in range(int(math.log2(n_max)) + 1)), n_max})


def curve_table(g_lb: pd.DataFrame) -> Table:
    """One (task, model): the expected best validation score after n trials, per variant."""
    n_max = max((len(t["expected_best"]) for t in g_lb["tuning"]), default=0)
    ns = _ns(n_max)
    rows = []
    for _, r in g_lb.sort_values("variant").iterrows():
        curve = r["tuning"]["expected_best"]
        cells = [Cell(str(r["variant"]), str(r["variant"]))]
        cells += [
            Cell(fmt.points(curve[n - 1]), curve[n - 1]) if n <= len(curve) else Cell(fmt.DASH)
            for n in ns
        ]
        gain = tuning_gain(curve)
        cells.append(Cell(fmt.signed(gain), gain))
        rows.append(cells)
    cols = ["variant"] + [f"n = {n}" for n in ns] + ["gain, 1 → N"]
    return Table(cols, rows, caption="Expected best validation score after n trials (points)")


def cost_table(g_lb: pd.DataFrame, trials: pd.DataFrame) -> Table:
    """One (task, model): what all the trials cost against one final run, per variant."""
    rows = []
    for _, r in g_lb.sort_values("variant").iterrows():
        mine = trials[trials["variant"] == r["variant"]]
        cells = [Cell(str(r["variant"]), str(r["variant"]))]
        for col, show in (("train_seconds", fmt.seconds), ("train_flops", fmt.flops)):
            total = float(mine[col].sum()) if mine[col].notna().any() else math.nan
            final = r[col]
            ratio = total / final if fmt.finite(final) and final > 0 else math.nan
            cells += [Cell(show(total), total), Cell(show(final), final)]
            cells.append(Cell(fmt.ratio(ratio), ratio))
        rows.append(cells)
    cols = ["variant", "trials: train time", "final run: train time", "tuning cost × final run"]
    cols += ["trials: train FLOPs", "final run: train FLOPs", "tuning FLOPs × final run"]
    note = (
        "Trials: the sum over every trial of the study (pruned and failed ones included); final "
        "run: the mean over the runs at the selected configuration; × : the first over the "
        "second, what the search cost in final runs."
    )
    return Table(cols, rows, caption="Tuning cost", note=note)


def _figure_blocks(figs: dict, task: str, model: str) -> list[Figure]:
    out = []
    for kind, caption in FIGURE_CAPTIONS.items():
        path = figs.get((kind, task, model))
        if path is not None:
            out.append(Figure(Path(Path(path).parent.name) / Path(path).name, caption))
    return out


def _failed_bullets(trials: pd.DataFrame) -> list[Bullets]:
    bad = trials[(trials["outcome"] == "failed") & ~trials["collapsed"].astype(bool)]
    if bad.empty:
        return []
    items = [
        f"`{r.variant}` trial {int(r.trial)} (lr {_lr(r.lr)}): {r.reason or 'failed'}"
        for r in bad.sort_values(["variant", "trial"]).itertuples()
    ]
    return [Bullets(items)]


def task_subsection(g_lb: pd.DataFrame, trials: pd.DataFrame, conf: dict, figs: dict) -> Section:
    """One (task, model)'s studies."""
    task, model = str(g_lb["task"].iloc[0]), str(g_lb["model"].iloc[0])
    mine = trials[(trials["task"] == task) & (trials["model"] == model)] if len(trials) else trials
    sec = Section(f"Tuning: {task} · model `{model}`", level=3)
    sec.blocks.append(study_table(g_lb, mine, conf))
    sec.blocks += _failed_bullets(mine) if len(mine) else []
    sec.blocks.append(curve_table(g_lb))
    sec.blocks.append(cost_table(g_lb, mine))
    sec.blocks += _figure_blocks(figs, task, model)
    return sec


# -- across tasks ------------------------------------------------------------------------------
def tuning_gains(lb: pd.DataFrame) -> pd.DataFrame:
    """Per (model, variant): the gain of the expected best from 1 to N trials, averaged over
    tasks, with the mean trial (n = 1) and the expected best of N; most gained first."""
    rows = []
    for _, r in tuned(lb).iterrows():
        curve = r["tuning"]["expected_best"]
        if curve:
            rows.append(
                {
                    "model": r["model"],
                    "variant": r["variant"],
                    "task": r["task"],
                    "first": curve[0],
                    "best": curve[-1],
                    "gain": tuning_gain(curve),
                    "n": len(curve),
                }
            )
    cols = ["model", "variant", "n_tasks", "first", "best", "gain", "n"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = (
        pd.DataFrame(rows)
        .groupby(["model", "variant"])
        .agg(
            n_tasks=("task", "nunique"),
            first=("first", "mean"),
            best=("best", "mean"),
            gain=("gain", "mean"),
            n=("n", "max"),
        )
        .reset_index()
    )
    return out.sort_values(["gain", "variant"], ascending=[False, True]).reset_index(drop=True)


def tuning_sentence(lb: pd.DataFrame) -> str | None:
    """One sentence for the answer: which variant the search helped most and least (the gain in
    expected best validation score from 1 to N trials, mean over tasks); None when no variant
    was tuned."""
    gains = tuning_gains(lb)
    if gains.empty:
        return None
    many = gains["model"].nunique() > 1

    def name(r: pd.Series) -> str:
        return f"`{r['variant']}`" + (f" with `{r['model']}`" if many else "")

    top, low = gains.iloc[0], gains.iloc[-1]
    over = f", mean over {int(top['n_tasks'])} tasks" if top["n_tasks"] > 1 else ""
    head = (
        f"{fmt.signed(top['gain'])} points of validation score from 1 to {int(top['n'])} "
        f"trials{over}"
    )
    if len(gains) == 1:
        return f"Tuning moved the expected best of {name(top)} by {head}."
    return (
        f"Tuning mattered most for {name(top)} ({head}) and least for {name(low)} "
        f"({fmt.signed(low['gain'])})."
    )


def gains_table(lb: pd.DataFrame) -> Table:
    gains = tuning_gains(lb)
    many = gains["model"].nunique() > 1
    rows = [
        [
            Cell(str(r.variant) + (f" · `{r.model}`" if many else ""), str(r.variant)),
            Cell(str(int(r.n_tasks)), float(r.n_tasks)),
            Cell(fmt.points(r.first), r.first),
            Cell(fmt.points(r.best), r.best),
            Cell(fmt.signed(r.gain), r.gain),
        ]
        for r in gains.itertuples()
    ]
    cols = ["variant", "tasks", "E[best of 1] (mean trial)", "E[best of N]", "gain"]
    return Table(
        cols,
        rows,
        caption="Which strategies need the most tuning (validation points, mean over tasks)",
    )


def tuning_notes(lb: pd.DataFrame) -> list[Paragraph]:
    """The answer's note on tuning: which strategies the search helped most, or, where nothing
    was tuned but some variant trains with a learning rate, that the rates were not tuned."""
    sentence = tuning_sentence(lb)
    if sentence:
        more = "The studies, their budget and what to change: {§tuning}."
        return [Paragraph(f"{sentence} {more}")]
    if len(tuned(lb)) or lb.empty or not (lb["lr"].fillna(0) > 0).any():
        return []
    return [Paragraph(UNTUNED)]


def tuning_sections(
    lb: pd.DataFrame, trials: pd.DataFrame, sweeps: list[dict[str, Any]], figs: dict
) -> list[Section]:
    """The tuning section and a subsection per (task, model); [] when nothing was tuned."""
    rows = tuned(lb)
    if rows.empty:
        return []
    conf = configured(sweeps)
    counts = trial_counts(lb, trials, conf)
    budget = int(counts["budget"].iloc[0]) if len(counts) else 0
    sec = Section("Tuning", key="tuning")
    sec.blocks += [_budget_paragraph(conf, budget), check_paragraph(counts)]
    seeds = seeds_paragraph(lb, conf)
    sec.blocks += [seeds] if seeds else []
    if len(trials):
        sec.blocks.append(space_table(trials, conf))
    sec.blocks += [Paragraph(CURVE_RULE), gains_table(lb)]
    sentence = tuning_sentence(lb)
    sec.blocks += [Paragraph(sentence)] if sentence else []
    out = [sec]
    for _, g in rows.groupby(["task", "model"]):
        out.append(task_subsection(g, trials, conf, figs))
    return out
