"""The cost section: per (task, model), what each variant costs to train and to serve: train
FLOPs, train time, utilisation of the device's peak, tokens/s, training memory (own and process
peak), serving latency (median / p95, and over the base model's, with the noise band of that
ratio) and throughput; with how FLOPs and memory are counted.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.load import latency_noise_band
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table, mark_best

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


def cost_section(lb: pd.DataFrame) -> Section:
    """Compute (FLOPs, utilisation), memory and inference per variant, and how they are counted."""
    sec = Section("Cost", key="cost")
    sec.blocks.append(Paragraph(FLOPS_FORMULA))
    sec.blocks.append(Paragraph(MEMORY_AND_INFERENCE))
    # An empty leaderboard (no run with a task) has no columns at all.
    has = lb[lb["train_flops"].notna() | lb["achieved_flops_per_second"].notna()] if len(lb) else lb
    if has.empty:
        sec.blocks.append(Paragraph("No record carries FLOP estimates, so there is no FLOP table."))
        return sec
    for (model, task), g in has.groupby(["model", "task"]):
        rows = [_cost_row(r) for _, r in g.sort_values("train_flops").iterrows()]
        for col, higher in ((1, False), (2, False), (3, True), (4, True), (6, False), (8, False)):
            mark_best(rows, col, higher)
        caption = f"{task} · model `{model}` (means over seeds)" + _latency_noise(g)
        sec.blocks.append(Table(COST_TABLE_COLUMNS, rows, caption=caption))
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


# The headers of the cost table, one per cell of `_cost_row`.
COST_TABLE_COLUMNS = [
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
