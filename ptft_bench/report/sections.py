"""Report sections built from the records: setup, leaderboards, failures and cost.

Everything here is derived from the run records; no sentence depends on a hand-written value.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pandas as pd

from ptft_bench.report import fmt
from ptft_bench.report.document import Bullets, Cell, Paragraph, Section, Table, mark_best
from ptft_bench.report.load import RunSet

FLOPS_FORMULA = (
    "Train FLOPs are estimates: forward ≈ 2·N FLOPs per token for the parts that run; backward ≈ "
    "2·N per token through every layer above the lowest trainable one, plus 2·N_trainable for the "
    "weight gradients; parts whose outputs are cached cost nothing after the first pass. "
    "Achieved FLOP/s = train FLOPs / train time; utilisation = achieved / the device's peak FLOP/s."
)


def _uniq(values: Any) -> list[Any]:
    return sorted({v for v in values if v is not None and v == v}, key=str)


def setup_section(rs: RunSet) -> Section:
    """Models, tasks and sizes, budget, seeds, device, versions, run counts, compute time."""
    runs = rs.runs
    sec = Section("1. Setup")
    n_ok, n_failed, n_missing = len(rs.ok), len(rs.failed), len(rs.missing)
    compute = runs["train_seconds"].fillna(0).sum() + runs["eval_seconds"].fillna(0).sum()
    started = pd.to_datetime(runs["started_at"], errors="coerce", utc=True)
    finished = pd.to_datetime(runs["finished_at"], errors="coerce", utc=True)
    wall = (finished - started).dt.total_seconds().sum()
    seeds = _uniq(list(runs["seed"]) + list(rs.missing["seed"]))
    lrs = _uniq(list(runs["lr"]) + list(rs.missing["lr"]))
    items = [
        f"Suite: {', '.join(rs.suites) or fmt.DASH}; run folders: {', '.join(str(s) for s in rs.sources)}",
        f"Runs: {n_ok + n_failed + n_missing} planned or recorded — **{n_ok} ok**, "
        f"**{n_failed} failed**, **{n_missing} missing** (planned, no record)",
        f"Seeds: {', '.join(str(s) for s in seeds) or fmt.DASH}; learning rates searched: "
        f"{', '.join(fmt.lr(x) for x in lrs) or fmt.DASH}",
        f"Total compute time (train + evaluation, all records): {fmt.seconds(compute)}"
        + (f"; run wall-clock sum: {fmt.seconds(wall)}" if wall > 0 else ""),
    ]
    for model, g in runs.groupby("model"):
        total = g["total_params"].dropna()
        items.append(
            f"Model `{model}`: {fmt.count(total.median()) if len(total) else fmt.DASH} parameters"
        )
    budgets = Counter(json.dumps(b, sort_keys=True) for b in runs["budget"] if b)
    for b, n in budgets.most_common():
        desc = ", ".join(f"{k}={v}" for k, v in json.loads(b).items())
        items.append(f"Budget ({n} runs): {desc}")
    envs = [e for e in runs["env"] if e]
    devices = Counter(
        f"{e.get('device', '?')} ({e.get('device_name') or 'unnamed'}, {e.get('num_processes') or 1} process(es))"
        for e in envs
    )
    for d, n in devices.most_common():
        items.append(f"Device ({n} runs): {d}")
    precisions = _uniq(runs["precision"])
    if precisions:
        items.append(f"Precision: {', '.join(precisions)}")
    for lib in ("python", "torch", "transformers", "peft", "accelerate", "platform", "git_commit"):
        vals = _uniq(e.get(lib) for e in envs)
        if vals:
            items.append(f"{lib}: {', '.join(f'`{v}`' for v in vals)}")
    sec.blocks.append(Bullets(items))
    sec.blocks.append(_task_table(runs))
    return sec


def _task_table(runs: pd.DataFrame) -> Table:
    rows = []
    for task, g in runs.groupby("task"):
        infos = [i for i in g["task_info"] if i]
        info = infos[0] if infos else {}
        metrics = info.get("metrics") or sorted({m for d in g["metrics_test"] for m in d})
        primary = next((p for p in g["primary_metric"] if p), None) or info.get("primary_metric")
        rows.append(
            [
                Cell(f"`{task}`", task),
                Cell(str(primary or fmt.DASH)),
                Cell(", ".join(metrics) or fmt.DASH),
            ]
            + [
                Cell(fmt.count(info.get(k)), info.get(k))
                for k in ("num_train", "num_validation", "num_test")
            ]
            + [Cell(str(info.get("source") or fmt.DASH))]
        )
    cols = ["task", "primary metric", "metrics", "train", "validation", "test", "source"]
    return Table(cols, rows, caption="Tasks and split sizes (examples)")


# (column, header, formatter, higher is better) for the cost part of a leaderboard.
COST_SPEC = (
    ("trainable_params", "trainable params", fmt.count, False),
    ("trainable_pct", "% of model", fmt.pct, False),
    ("train_seconds", "train time", fmt.seconds, False),
    ("train_samples_per_second", "samples/s", fmt.rate, True),
    ("peak_memory_bytes", "peak memory", fmt.nbytes, False),
    ("checkpoint_bytes", "checkpoint", fmt.nbytes, False),
    ("train_flops", "train FLOPs", fmt.flops, False),
    (
        "utilisation",
        "utilisation",
        lambda x: f"{100 * x:.1f}%" if fmt.finite(x) else fmt.DASH,
        True,
    ),
)


def _leaderboard_row(r: pd.Series, show_ci: bool, others: list[str], costs: list) -> list[Cell]:
    row = [
        Cell(
            fmt.points(r["rank"], 1 if r["rank"] % 1 else 0) if fmt.finite(r["rank"]) else fmt.DASH,
            r["rank"],
        ),
        Cell(str(r["variant"]), str(r["variant"])),
        Cell(
            f"{fmt.lr(r['lr'])} ({fmt.points(r['val_mean'])})" if fmt.finite(r["lr"]) else fmt.DASH,
            r["lr"],
        ),
        Cell(str(int(r["n_seeds"])), float(r["n_seeds"])),
        Cell(fmt.mean_std(r["test_mean"], r["test_std"]), r["test_mean"]),
    ]
    if show_ci:
        row.append(Cell(fmt.interval(r["test_ci_low"], r["test_ci_high"]), r["test_ci_low"]))
    for m in others:
        s = r["test_metrics"].get(m)
        row.append(Cell(fmt.mean_std(s.mean, s.std) if s else fmt.DASH, s.mean if s else math.nan))
    for col, _, f, _ in costs:
        row.append(Cell(f(r[col]), r[col]))
    row.append(
        Cell(
            f"{r['n_runs_ok']}/{r['n_runs_failed']}/{r['n_runs_missing']}",
            float(r["n_runs_failed"] + r["n_runs_missing"]),
        )
    )
    by_lr = ", ".join(f"{fmt.lr(k)}: {fmt.points(v)}" for k, v in sorted(r["lr_scores"].items()))
    row.append(Cell((by_lr or fmt.DASH) + (f" ({r['lr_note']})" if r["lr_note"] else "")))
    return row


def leaderboard_table(g: pd.DataFrame) -> Table:
    """The leaderboard of one (task, model): one row per variant, best per column in bold."""
    primary = (
        str(g["primary_metric"].dropna().iloc[0]) if g["primary_metric"].notna().any() else "score"
    )
    others = sorted({m for d in g["test_metrics"] for m in d} - {primary})
    show_ci = bool((g["n_seeds"] >= 3).any())
    costs = [c for c in COST_SPEC if g[c[0]].notna().any()]
    cols = ["rank", "variant", "lr (val. score)", "seeds", f"test {primary} ★"]
    cols += ["95% CI"] if show_ci else []
    cols += (
        [f"test {m}" for m in others]
        + [c[1] for c in costs]
        + ["runs ok/failed/missing", "val. score by lr"]
    )
    rows = [_leaderboard_row(r, show_ci, others, costs) for _, r in g.iterrows()]
    mark_best(rows, 4, True)
    first_other = 6 if show_ci else 5
    for i in range(len(others)):
        mark_best(rows, first_other + i, True)
    for j, (_, _, _, higher) in enumerate(costs):
        mark_best(rows, first_other + len(others) + j, higher)
    note = (
        f"★ primary metric: {primary} (points = metric × 100), mean ± standard deviation over seeds "
        "(ddof=1)"
        + ("; 95% CI: t distribution, given for 3+ seeds" if show_ci else "")
        + ". The learning rate is chosen per variant on the validation split (best mean validation "
        "score over seeds); test numbers are at that rate. Costs are means over the same seeds. "
        "Best value per column in bold."
    )
    return Table(cols, rows, note=note)


def leaderboard_sections(lb: pd.DataFrame) -> list[Section]:
    """Section 2: a leaderboard per task per model."""
    out = [Section("2. Per-task leaderboards")]
    for (model, task), g in lb.groupby(["model", "task"]):
        sub = Section(f"{task} · model `{model}`", level=3)
        sub.blocks.append(leaderboard_table(g.sort_values("rank", na_position="last")))
        out.append(sub)
    return out


def failures_section(rs: RunSet) -> Section:
    """Section 6: each failed run with its reason; each planned run without a record."""
    sec = Section("6. Failures and missing runs")
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
                Cell(_reason(r.error)),
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


def _reason(error: Any) -> str:
    if not error or error != error:
        return "no reason recorded"
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def cost_section(lb: pd.DataFrame) -> Section:
    """Section 7: FLOPs, achieved FLOP/s and utilisation per variant, with the formula."""
    sec = Section("7. Cost")
    sec.blocks.append(Paragraph(FLOPS_FORMULA))
    has = lb[lb["train_flops"].notna() | lb["achieved_flops_per_second"].notna()]
    if has.empty:
        sec.blocks.append(Paragraph("No record carries FLOP estimates, so there is no FLOP table."))
        return sec
    for (model, task), g in has.groupby(["model", "task"]):
        rows = []
        for _, r in g.sort_values("train_flops").iterrows():
            util = f"{100 * r['utilisation']:.1f}%" if fmt.finite(r["utilisation"]) else fmt.DASH
            rows.append(
                [
                    Cell(str(r["variant"]), str(r["variant"])),
                    Cell(fmt.flops(r["train_flops"]), r["train_flops"]),
                    Cell(fmt.seconds(r["train_seconds"]), r["train_seconds"]),
                    Cell(
                        fmt.flops(r["achieved_flops_per_second"], True),
                        r["achieved_flops_per_second"],
                    ),
                    Cell(fmt.flops(r["peak_flops_per_second"], True), r["peak_flops_per_second"]),
                    Cell(util, r["utilisation"]),
                    Cell(fmt.rate(r["train_tokens_per_second"]), r["train_tokens_per_second"]),
                ]
            )
        for col, higher in ((1, False), (2, False), (3, True), (5, True), (6, True)):
            mark_best(rows, col, higher)
        cols = [
            "variant",
            "train FLOPs",
            "train time",
            "achieved FLOP/s",
            "peak FLOP/s",
            "utilisation",
            "tokens/s",
        ]
        sec.blocks.append(Table(cols, rows, caption=f"{task} · model `{model}` (means over seeds)"))
    return sec
