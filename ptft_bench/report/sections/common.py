"""Report sections built from the records: setup, runs that did not learn, failures and cost.

Everything here is derived from the run records; no sentence depends on a hand-written value.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from ptft_bench.report.load import RunSet, latency_noise_band
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Bullets, Cell, Paragraph, Section, Table, mark_best

FLOPS_FORMULA = (
    "Train FLOPs are counted step by step as torch's FlopCounterMode counts them (matmuls only, "
    "2 FLOPs per multiply-add; elementwise work, embedding lookups and the optimizer step left "
    "out; `ptft_bench/cost/flops.py`, checked against the counter for every strategy): each matmul "
    "unit (a Linear, or a peft layer with its adapter's own matmuls) costs 2N per row it sees "
    "forward, 2N more backward if its input needs a gradient and 2N more if its weight trains; "
    "the blocks see the sequence plus any virtual tokens (prompt and p-tuning), the head one "
    "position per sequence, attention scores are counted with prefix tuning's extra keys, and "
    "blocks served from the frozen-prefix cache run once, forward only. Achieved FLOP/s = train "
    "FLOPs / train time; utilisation = achieved / the device's peak FLOP/s."
)


def _uniq(values: Any) -> list[Any]:
    return sorted({v for v in values if v is not None and v == v}, key=str)


def setup_section(rs: RunSet) -> Section:
    """Models, tasks and sizes, budget, seeds, device, versions, run counts, compute time."""
    runs = rs.runs
    sec = Section("2. Setup")
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
    items += _machine_items(envs, runs)
    items += _sweep_items(rs.sweeps)
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


def _sweep_items(sweeps: list[dict[str, Any]]) -> list[str]:
    """Each sweep's estimate before it started against the wall time it took."""
    items = []
    for s in sweeps:
        est, took = s.get("estimate_seconds"), s.get("seconds")
        line = f"Sweep started {s.get('started_at', fmt.DASH)} ({s.get('runs_to_do', '?')} runs, "
        line += f"{s.get('workers', '?')}): estimated {fmt.seconds(est)} before it started"
        if fmt.finite(took):
            line += f", took {fmt.seconds(took)}"
            if fmt.finite(est) and took:
                line += f" (estimate / actual = {est / took:.2f})"
        else:
            line += ", did not finish (interrupted, or resumed later)"
        items.append(line + f"; estimate basis: {s.get('basis', fmt.DASH)}")
    return items


def _counted(values: list[Any]) -> str:
    counts = Counter(str(v) for v in values if v is not None and v == v and v != "")
    return ", ".join(f"{v} ({n} runs)" for v, n in counts.most_common())


def _machine_items(envs: list[dict[str, Any]], runs: pd.DataFrame) -> list[str]:
    """CPU, threads and pooling, when the records carry them."""
    items = []
    cpus = _counted([e.get("cpu") for e in envs])
    if cpus:
        items.append(f"CPU: {cpus}")
    threads = _counted(
        [
            f"{e['threads']} thread{'s' if e['threads'] != 1 else ''}"
            + (f" of {e['cores_available']} cores" if e.get("cores_available") else "")
            for e in envs
            if e.get("threads")
        ]
    )
    if threads:
        items.append(f"Threads: {threads}")
    pooling = _counted(list(runs["pooling"])) if "pooling" in runs else ""
    items.append(f"Pooling (what the head reads): {pooling or 'not recorded'}")
    if "model_source" in runs:
        for (model, source), _ in runs.dropna(subset=["model_source"]).groupby(
            ["model", "model_source"]
        ):
            items.append(f"Model `{model}` converted from {source}")
    return items


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
    ("memory_bytes", "training memory", fmt.nbytes, False),
    (
        "inference_overhead",
        "latency × base",
        lambda x: f"{x:.2f}×" if fmt.finite(x) else fmt.DASH,
        False,
    ),
    ("checkpoint_bytes", "checkpoint", fmt.nbytes, False),
)


def failures_section(rs: RunSet) -> Section:
    """Section 7: each failed run with its reason; each planned run without a record."""
    sec = Section("7. Failures and missing runs")
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


def did_not_learn_section(rs: RunSet, lb: pd.DataFrame) -> Section:
    """Section 6: runs that finished but learned nothing, with the learning check's reasons."""
    sec = Section("6. Runs that did not learn")
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
            Cell(_reason("; ".join(r.learn_reasons))),
        ]
        for r in dead.sort_values(
            ["task", "model", "variant", "lr", "seed"], key=lambda s: s.astype(str)
        ).itertuples()
    ]
    cols = ["run id", "task", "model", "variant", "lr", "seed", "selected lr", "reasons"]
    sec.blocks.append(Table(cols, rows, caption=f"{len(dead)} run(s) that did not learn"))
    return sec


def _reason(error: Any) -> str:
    if not error or error != error:
        return "no reason recorded"
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def cost_section(lb: pd.DataFrame) -> Section:
    """Section 8: compute (FLOPs, utilisation), memory and inference per variant, the formula."""
    sec = Section("8. Cost")
    sec.blocks.append(Paragraph(FLOPS_FORMULA))
    sec.blocks.append(Paragraph(MEMORY_AND_INFERENCE))
    has = lb[lb["train_flops"].notna() | lb["achieved_flops_per_second"].notna()]
    if has.empty:
        sec.blocks.append(Paragraph("No record carries FLOP estimates, so there is no FLOP table."))
        return sec
    for (model, task), g in has.groupby(["model", "task"]):
        rows = [_cost_row(r) for _, r in g.sort_values("train_flops").iterrows()]
        for col, higher in ((1, False), (2, False), (3, True), (4, True), (6, False), (8, False)):
            mark_best(rows, col, higher)
        caption = f"{task} · model `{model}` (means over seeds)" + _latency_noise(g)
        sec.blocks.append(Table(COST_COLUMNS, rows, caption=caption))
    return sec


def _latency_noise(g: pd.DataFrame) -> str:
    """The spread of the base-architecture runs' latency: the noise band of `latency × base`."""
    band = latency_noise_band(g)
    if band is None:
        return ""
    lo, hi = band
    return (
        f"; the base-architecture runs, which serve the same computation, measured "
        f"{lo:.2f}–{hi:.2f}× base: latency ratios inside that band are measurement noise"
    )


COST_COLUMNS = [
    "variant",
    "train FLOPs",
    "train time",
    "utilisation",
    "tokens/s",
    "training memory (own)",
    "process peak",
    "latency median / p95",
    "latency × base",
    "throughput",
]
MEMORY_AND_INFERENCE = (
    "Training memory (own): the run's peak minus the baseline measured before its model was "
    "loaded (CPU: resident set of a fresh worker process per run; GPU: allocator peak); older or "
    "in-process runs show the process's peak. Latency: one example at a time on the test split "
    "(median and 95th percentile of 64), of the merged model where the weights merge; × base: "
    "over the latency of the runs whose model has the base architecture, on the same task. "
    "Throughput: examples/s at the evaluation batch size."
)


def _cost_row(r: pd.Series) -> list[Cell]:
    util = f"{100 * r['utilisation']:.1f}%" if fmt.finite(r["utilisation"]) else fmt.DASH
    latency = f"{fmt.milliseconds(r['inference_latency_ms'])} / "
    latency += fmt.milliseconds(r.get("inference_latency_p95_ms"))
    overhead = r.get("inference_overhead")
    return [
        Cell(str(r["variant"]), str(r["variant"])),
        Cell(fmt.flops(r["train_flops"]), r["train_flops"]),
        Cell(fmt.seconds(r["train_seconds"]), r["train_seconds"]),
        Cell(util, r["utilisation"]),
        Cell(fmt.rate(r["train_tokens_per_second"]), r["train_tokens_per_second"]),
        Cell(fmt.nbytes(r["memory_bytes"]), r["memory_bytes"]),
        Cell(fmt.nbytes(r["peak_memory_bytes"]), r["peak_memory_bytes"]),
        Cell(latency, r["inference_latency_ms"]),
        Cell(f"{overhead:.2f}×" if fmt.finite(overhead) else fmt.DASH, overhead),
        Cell(fmt.rate(r.get("inference_throughput")), r.get("inference_throughput")),
    ]
