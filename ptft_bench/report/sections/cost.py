"""The cost section: per (task, model), what each variant costs to train and to serve: train
FLOPs, train time, utilisation of the device's peak, tokens/s, training memory (own and process
peak), serving latency (median / p95, and over the base model's, with the noise band of that
ratio) and throughput; for generation tasks time to first token (and over the base model's)
and generated tokens/s at batch 1 and batched instead of per-example latency; forgetting (the
general-text loss before and after training) where a record measured it, and why not where
it did not; with how FLOPs and memory are counted.
"""

from __future__ import annotations

import pandas as pd

from ptft_bench.report.load import latency_noise_band
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Cell, Paragraph, Section, Table, mark_best
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS

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
    if is_generation(has).any():
        sec.blocks.append(Paragraph(GENERATION_SERVING))
    for (model, task), g in has.groupby(["model", "task"]):
        sec.blocks.append(_cost_table(model, task, g))
    sec.blocks += forgetting_blocks(lb)
    return sec


def is_generation(lb: pd.DataFrame) -> pd.Series:
    """Rows of generation tasks (primary metric BLEU, chrF, ...)."""
    return lb["primary_metric"].isin(GENERATION_METRICS) if "primary_metric" in lb else lb.index < 0


def _cost_table(model: str, task: str, g: pd.DataFrame) -> Table:
    """One (task, model)'s cost table: serving per example, or per token for generation."""
    generation = bool(is_generation(g).any())
    row_of = _generation_cost_row if generation else _cost_row
    rows = [row_of(r) for _, r in g.sort_values("train_flops").iterrows()]
    best = ((1, False), (2, False), (3, True), (4, True), (6, False), (8, False))
    for col, higher in best + (((9, True), (10, True)) if generation else ()):
        mark_best(rows, col, higher)
    caption = f"{task} · model `{model}` (means over seeds)"
    caption += _latency_noise(g, "first_token" if generation else "latency")
    columns = GENERATION_COST_COLUMNS if generation else COST_TABLE_COLUMNS
    return Table(columns, rows, caption=caption)


def _latency_noise(g: pd.DataFrame, kind: str = "latency") -> str:
    """The spread of the base-architecture runs' latency (time to first token for generation):
    the noise band of `latency × base`."""
    band = latency_noise_band(g, kind)
    if band is None:
        return ""
    lo, hi = band
    what = "latency" if kind == "latency" else "first-token"
    return (
        f"; the base-architecture runs, which serve the same computation, measured "
        f"{lo:.2f}–{hi:.2f}× base: {what} ratios inside that band are measurement noise"
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


def _training_cells(r: pd.Series) -> list[Cell]:
    """variant, train FLOPs, train time, utilisation, tokens/s, memory (own), process peak."""
    util = f"{100 * r['utilisation']:.1f}%" if fmt.finite(r["utilisation"]) else fmt.DASH
    return [
        Cell(str(r["variant"]), str(r["variant"])),
        Cell(fmt.flops(r["train_flops"]), r["train_flops"]),
        Cell(fmt.seconds(r["train_seconds"]), r["train_seconds"]),
        Cell(util, r["utilisation"]),
        Cell(fmt.rate(r["train_tokens_per_second"]), r["train_tokens_per_second"]),
        Cell(fmt.nbytes(r["memory_bytes"]), r["memory_bytes"]),
        Cell(fmt.nbytes(r["peak_memory_bytes"]), r["peak_memory_bytes"]),
    ]


def _times_base(x) -> Cell:
    return Cell(f"{x:.2f}×" if fmt.finite(x) else fmt.DASH, x)


def _cost_row(r: pd.Series) -> list[Cell]:
    latency = f"{fmt.milliseconds(r['inference_latency_ms'])} / "
    latency += fmt.milliseconds(r.get("inference_latency_p95_ms"))
    return [
        *_training_cells(r),
        Cell(latency, r["inference_latency_ms"]),
        _times_base(r.get("inference_overhead")),
        Cell(fmt.rate(r.get("inference_throughput")), r.get("inference_throughput")),
    ]


# The headers of a generation task's cost table, one per cell of `_generation_cost_row`.
GENERATION_COST_COLUMNS = [
    *COST_TABLE_COLUMNS[:7],
    "time to first token",
    "first token × base",
    "tokens/s, batch 1",
    "tokens/s, batched",
]
GENERATION_SERVING = (
    "Generation serving (the merged model where the weights merge): time to first token and "
    "generated tokens/s one prompt at a time (medians over the first 16 test prompts, 32 new "
    "tokens each, greedy, no early stop), and tokens/s for a batch of test prompts at the "
    "evaluation batch size; × base: over the runs whose model has the base architecture, on "
    "the same task."
)


def _generation_cost_row(r: pd.Series) -> list[Cell]:
    ttft = r.get("time_to_first_token_ms")
    one, batched = r.get("tokens_per_second_batch1"), r.get("tokens_per_second_batched")
    return [
        *_training_cells(r),
        Cell(fmt.milliseconds(ttft), ttft),
        _times_base(r.get("first_token_overhead")),
        Cell(fmt.rate(one), one),
        Cell(fmt.rate(batched), batched),
    ]


# -- forgetting ------------------------------------------------------------------------------

FORGETTING_TEXT = (
    "Forgetting: the causal-LM loss (nats per token) on a fixed slice of held-out general text "
    "(WikiText-2's test set) of the base model before training and of the trained model after; "
    "Δ = after − before, positive = worse at general text (`ptft_bench/run/forgetting.py`). "
    "Means over the seeds of the selected learning rate."
)
FORGETTING_COLUMNS = ["variant", "base loss", "loss after", "Δ loss (forgetting)"]
NOT_RECORDED = "not recorded"


def forgetting_blocks(lb: pd.DataFrame) -> list:
    """A forgetting table per (task, model) where some variant measured it; one paragraph with
    the reasons where none did (encoders, older records), grouped by reason."""
    if "forgetting_delta" not in lb or lb.empty:
        return []
    blocks: list = []
    omitted: dict[str, list[str]] = {}
    for (model, task), g in lb[lb["test_mean"].notna()].groupby(["model", "task"]):
        if not g["forgetting_delta"].notna().any():
            omitted.setdefault(_reasons(g), []).append(f"{task} · `{model}`")
            continue
        rows = [_forgetting_row(r) for _, r in g.sort_values("forgetting_delta").iterrows()]
        mark_best(rows, 3, False)
        caption = f"Forgetting: {task} · model `{model}` (nats per token, means over seeds)"
        blocks.append(Table(FORGETTING_COLUMNS, rows, caption=caption))
    if blocks:
        blocks.insert(0, Paragraph(FORGETTING_TEXT))
    if omitted:
        parts = [f"{why}: {', '.join(where)}" for why, where in sorted(omitted.items())]
        blocks.append(Paragraph("Forgetting omitted (" + "; ".join(parts) + ")."))
    return blocks


def _reasons(g: pd.DataFrame) -> str:
    reasons = sorted({str(x) for x in g["forgetting_omitted"] if isinstance(x, str) and x})
    return "; ".join(reasons) or NOT_RECORDED


def _forgetting_row(r: pd.Series) -> list[Cell]:
    delta = r["forgetting_delta"]
    if not fmt.finite(delta):
        why = f"omitted: {r['forgetting_omitted'] or NOT_RECORDED}"
        return [
            Cell(str(r["variant"]), str(r["variant"])),
            Cell(fmt.DASH),
            Cell(fmt.DASH),
            Cell(why),
        ]
    return [
        Cell(str(r["variant"]), str(r["variant"])),
        Cell(f"{r['forgetting_base_loss']:.3f}", r["forgetting_base_loss"]),
        Cell(f"{r['forgetting_loss']:.3f}", r["forgetting_loss"]),
        Cell(f"{delta:+.3f}".replace("-", "−"), delta),
    ]
