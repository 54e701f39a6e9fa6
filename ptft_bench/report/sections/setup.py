"""The setup section: what was run and where. Suite and run folders, run counts (ok, failed,
missing), seeds and learning rates searched, compute time, models and their sizes, budgets,
devices, CPU and threads, pooling, quantization of the frozen base, how generation tasks were
decoded, each sweep's time estimate against its actual time, precision and library versions,
and a table of the tasks with their metrics and split sizes (generation tasks: training and
validation (input, reference) pairs, and the inputs decoded).

Everything is derived from the run records; no sentence depends on a hand-written value.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from ptft_bench.report.load import RunSet
from ptft_bench.report.render import fmt
from ptft_bench.report.render.document import Bullets, Cell, Section, Table
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS


def _uniq(values: Any) -> list[Any]:
    return sorted({v for v in values if v is not None and v == v}, key=str)


def setup_section(rs: RunSet) -> Section:
    """Models, tasks and sizes, budget, seeds, device, versions, run counts, compute time."""
    runs = rs.runs
    sec = Section("Setup", key="setup")
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
    items += _generation_items(runs)
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


def _records(runs: pd.DataFrame) -> list[Any]:
    return list(runs["record"]) if "record" in runs else []


def _generation_items(runs: pd.DataFrame) -> list[str]:
    """How the frozen base was stored, and how generation tasks were decoded."""
    items = []
    quantized = _counted([getattr(r, "quantization", None) for r in _records(runs)])
    if quantized:
        items.append(f"Quantization of the frozen base: {quantized}")
    decoding = _counted(
        [
            f"greedy, at most {g.get('max_new_tokens', '?')} new tokens"
            if g.get("num_beams", 1) == 1
            else f"beam search ({g['num_beams']} beams), at most {g.get('max_new_tokens', '?')} "
            "new tokens"
            for g in (getattr(r, "generation", None) for r in _records(runs))
            if isinstance(g, dict)
        ]
    )
    if decoding:
        items.append(
            f"Generation decoding: {decoding}; floor: a constant output (one training target, "
            "of median length, for every input)"
        )
    return items


def _inputs_decoded(g: pd.DataFrame, split: str) -> Any:
    """How many inputs of ``split`` a generation run decoded (`record.predictions` splits)."""
    for rec in _records(g):
        n = ((getattr(rec, "predictions", None) or {}).get("splits") or {}).get(split)
        if n is not None:
            return n
    return None


def _size_cells(info: dict[str, Any], g: pd.DataFrame, generation: bool) -> list[Cell]:
    """train, validation, test: examples; generation: pairs, and the inputs decoded."""
    train, val, test = (info.get(k) for k in ("num_train", "num_validation", "num_test"))
    if not generation:
        return [Cell(fmt.count(x), x) for x in (train, val, test)]
    val_inputs = _inputs_decoded(g, "validation")
    return [
        Cell(f"{fmt.count(train)} pairs", train),
        Cell(f"{fmt.count(val)} pairs, {fmt.count(val_inputs)} inputs", val),
        Cell(f"{fmt.count(test)} inputs", test),
    ]


def _task_table(runs: pd.DataFrame) -> Table:
    rows = []
    any_generation = False
    for task, g in runs.groupby("task"):
        infos = [i for i in g["task_info"] if i]
        info = infos[0] if infos else {}
        metrics = info.get("metrics") or sorted({m for d in g["metrics_test"] for m in d})
        primary = next((p for p in g["primary_metric"] if p), None) or info.get("primary_metric")
        generation = primary in GENERATION_METRICS
        any_generation |= generation
        rows.append(
            [
                Cell(f"`{task}`", task),
                Cell(str(primary or fmt.DASH)),
                Cell(", ".join(metrics) or fmt.DASH),
            ]
            + _size_cells(info, g, generation)
            + [Cell(str(info.get("source") or fmt.DASH))]
        )
    cols = ["task", "primary metric", "metrics", "train", "validation", "test", "source"]
    caption = "Tasks and split sizes (examples"
    if any_generation:
        caption += (
            "; generation tasks: (input, reference) pairs trained and validated on, inputs decoded"
        )
    return Table(cols, rows, caption=caption + ")")
