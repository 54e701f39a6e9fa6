"""Estimate: how long a sweep will take, before it starts, from the cost model and this machine.

Each run's work is counted with the FLOPs model (`ptft_bench.cost.flops`) on its model's structure
(built on the `meta` device: no weights, no memory) and its task's real token counts: training
FLOPs (the frozen-prefix cache and closed-form fits included) and evaluation FLOPs (validation
after each epoch, test, and the inference measurement). The machine's speed comes from the runs
it already did: after every run a worker records (train FLOPs, evaluation FLOPs, wall seconds)
under a key naming the machine (CPU or GPU model, threads per run), and a non-negative least-
squares fit gives seconds per training FLOP, per evaluation FLOP and per run (start-up, model
loading). Before any run on this machine, a matmul probe stands in (at utilisations typical of
small encoders here); the estimate says which basis it used. Wall time = the runs' seconds
divided over the workers.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptft_bench import atomic, env
from ptft_bench.cost import flops
from ptft_bench.cost.inference import LATENCY_EXAMPLES, THROUGHPUT_EXAMPLES, WARMUP
from ptft_bench.models import pooling
from ptft_bench.models.load import load_config
from ptft_bench.models.parts import find_parts
from ptft_bench.run.caching import plan_cache
from ptft_bench.strategy.registry import StrategyContext

MAX_SAMPLES = 400  # calibration samples kept per machine key
# Without any run measured on this machine: utilisation of the matmul probe's FLOP/s, typical
# of small-encoder fine-tuning on a CPU (training) and of batched evaluation, and start-up cost.
PROBE_TRAIN_UTILISATION = 0.35
PROBE_EVAL_UTILISATION = 0.5
PROBE_RUN_SECONDS = 12.0


@dataclass(frozen=True)
class Work:
    train_flops: float
    eval_flops: float
    model: str = ""  # speed differs by model: small ones are dominated by per-run overhead
    runs: float = 1.0  # how many runs' per-run overhead this work carries

    def scaled(self, factor: float, runs: float = 1.0) -> Work:
        """`factor` times this run's FLOPs over `runs` runs (a study: its trials and seeds; a
        pruned trial: the share of its epochs it trained, in one run)."""
        return Work(self.train_flops * factor, self.eval_flops * factor, self.model, runs)


@dataclass(frozen=True)
class RunStructure:
    """What a run's work depends on besides its data: the strategy applied to the model."""

    flops_now: Any  # `flops.FlopsModel` of the trainable set at the start
    flops_end: Any  # ... at the end of training (differs when the strategy unfreezes layers)
    cached_blocks: int  # blocks computed once by the frozen-prefix cache (0: none)
    closed_form: bool  # fitted on features, not by the gradient loop
    mergeable: bool  # weights merge: the inference measurement runs twice


@dataclass
class Estimate:
    seconds: float  # wall time of the sweep
    run_seconds: list[float]
    basis: str

    def describe(self) -> str:
        return f"estimated {_hms(self.seconds)} ({self.basis})"

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "basis": self.basis, "runs": len(self.run_seconds)}


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


# -- work per run ---------------------------------------------------------------------------------
def run_work(spec, ctx) -> Work:
    """Training and evaluation FLOPs of `spec` (a `RunSpec`), counted, not measured."""
    task = ctx.task(spec.task)
    encoded = ctx.encoded(spec.task, spec.model, spec.budget.max_length)
    lengths = {k: v.lengths for k, v in encoded.items()}
    key = (
        spec.model,
        spec.pooling,
        spec.variant.name,
        json.dumps(spec.strategy_params, sort_keys=True),
    )
    kind = getattr(task.spec, "kind", "") or ("regression" if task.spec.is_regression else "")
    structure = _structure(key, spec, task.spec.num_labels, kind, lengths)
    if structure is None:  # the strategy refuses the model: the run fails at once, no work
        return Work(0.0, 0.0, spec.model)
    return _work(spec, lengths, structure)


def _work(spec, lengths, structure: RunStructure) -> Work:
    b, fm, first_cached = spec.budget, structure.flops_now, structure.cached_blocks
    train, val = lengths["train"], lengths["validation"]
    tests = [v for k, v in lengths.items() if k.startswith("test")]
    # generation: decoding the validation and test prompts, about half the new-token budget each
    decoded = sum(
        float(v.sum()) + len(v) * 32 for k, v in lengths.items() if k.startswith("inputs_")
    )
    mean = float(train.mean()) if len(train) else 1.0
    forward = flops.prefix_forward_flops(fm, mean, len(fm.stages) - 1, b.eval_batch_size)
    schedule = b.schedule(len(train))
    positions = float(train.sum()) * 1.04 * schedule.total_steps / max(schedule.steps_per_epoch, 1)
    if structure.closed_form:
        train_flops = forward * float(train.sum() + val.sum())
    else:
        per_token = np.mean(
            [
                flops.train_flops_per_token(f, mean, first_cached, b.batch_size)
                for f in (fm, structure.flops_end)
            ]
        )
        train_flops = per_token * positions + forward * float(train.sum()) * bool(first_cached)
    epochs = 1 if structure.closed_form else schedule.epochs
    test_tokens = sum(float(t.sum()) for t in tests)
    # the inference measurement (`cost.inference`): single examples after a warm-up, then a
    # batched pass; twice when the weights merge
    single, batched = LATENCY_EXAMPLES + WARMUP, THROUGHPUT_EXAMPLES
    measured = (min(single, len(tests[0])) + min(batched, len(tests[0]))) * mean if tests else 0.0
    eval_tokens = float(val.sum()) * epochs + test_tokens + measured * (1 + structure.mergeable)
    eval_tokens += decoded
    return Work(float(train_flops), float(forward * eval_tokens), spec.model)


_STRUCTURES: dict[tuple, RunStructure | None] = {}


def _structure(key, spec, num_labels, kind, lengths) -> RunStructure | None:
    """The run's `RunStructure`, or None when the strategy does not support the model
    (`Strategy.supports`)."""
    steps = spec.budget.schedule(len(lengths["train"])).total_steps
    full_key = (*key, num_labels, kind, steps, spec.budget.frozen_cache)
    if full_key not in _STRUCTURES:
        _STRUCTURES[full_key] = _build_structure(spec, num_labels, kind, steps)
    return _STRUCTURES[full_key]


def _build_structure(spec, num_labels, kind, total_steps) -> RunStructure | None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = copy.deepcopy(load_config(spec.model))
    strategy = spec.new_strategy()
    if type(strategy).supports_task(kind):
        return None
    with torch.device("meta"):  # the structure only: no weights are allocated
        if kind == "generation":
            model = AutoModelForCausalLM.from_config(config)
        else:
            config.num_labels = num_labels
            if kind == "regression":
                config.problem_type = "regression"
            model = AutoModelForSequenceClassification.from_config(config)
            pooling.install(model, spec.pooling if spec.pooling in pooling.POOLINGS else "cls")
        if type(strategy).supports(model):
            return None
        model = strategy.apply(model, StrategyContext.of(model, total_steps=total_steps))
    parts = find_parts(model)
    fm = flops.flops_model(model, parts=parts)
    names = {n for n, _ in strategy.trainable_named_parameters(model)}
    changes = any(cb.changes_trainable_set() for cb in strategy.callbacks())
    fm_end = flops.flops_model(model, names, parts) if changes else fm
    plan = plan_cache(parts, names, changes)
    cached = (
        0
        if isinstance(plan, str) or spec.budget.frozen_cache == "off"
        else plan.first_trainable_block
    )
    peft_config = getattr(model, "active_peft_config", None)
    mergeable = peft_config is not None and not peft_config.is_prompt_learning
    return RunStructure(fm, fm_end, cached, not strategy.trains_by_gradient, mergeable)


def run_work_of(spec, record, works: dict[str, Work], ctx) -> Work | None:
    """The counted work of a finished run, for calibration: a trial's at the epochs it ran."""
    work = works.get(spec.run_id)
    if work is None and spec.role != "run" and ctx is not None:
        try:
            work = run_work(spec, ctx)
        except (ValueError, TypeError, RuntimeError):
            return None
    stop = (record.training_stop or {}) if record is not None else {}
    if work is not None and stop.get("epochs_budget"):
        work = work.scaled(stop["epochs_run"] / stop["epochs_budget"], 1.0)
    return work


# -- this machine's speed -------------------------------------------------------------------------
def machine_key(threads: int, device: str = "cpu") -> str:
    name = env.cpu_model() if device == "cpu" else torch.cuda.get_device_name(0)
    return f"{device}|{name}|{threads} threads"


def _calibration_path() -> Path:
    root = Path(os.environ.get("PTFT_CACHE", Path.home() / ".cache" / "ptft_bench"))
    return root / "speed.json"


def _load() -> dict[str, list[list[float]]]:
    try:
        return json.loads(_calibration_path().read_text())
    except (OSError, ValueError):
        return {}


def record_sample(key: str, work: Work, seconds: float) -> None:
    """Remember one finished run's work, model and wall seconds on this machine."""
    data = _load()
    samples = data.setdefault(key, [])
    samples.append([work.train_flops, work.eval_flops, float(seconds), work.model])
    data[key] = samples[-MAX_SAMPLES:]
    try:
        atomic.write_json(_calibration_path(), data)
    except OSError:  # a read-only home: no calibration, estimates stay on the probe
        pass


def rates(key: str, model: str = "") -> tuple[np.ndarray, str]:
    """Seconds per (training FLOP, evaluation FLOP, run), and where they come from: this
    model's earlier runs on this machine, else any model's, else the probe."""
    from scipy.optimize import nnls

    every = [s for s in _load().get(key, []) if isinstance(s, list)]
    same = [s for s in every if len(s) > 3 and s[3] == model]
    for samples, whose in ((same, f"{model}'s"), (every, "all models'")):
        if len(samples) < 3:
            continue
        x = np.asarray([s[:3] for s in samples], dtype=float)
        coef, _ = nnls(np.column_stack([x[:, :2], np.ones(len(x))]), x[:, 2])
        if coef[0] > 0:
            return coef, f"calibrated on {len(x)} earlier runs ({whose}) on this machine"
    probed = _probed(key, model)
    if probed is not None:
        return probed
    from ptft_bench.cost.meters import cpu_peak_flops

    peak = cpu_peak_flops() if key.startswith("cpu") else 100e12
    coef = np.array(
        [
            1 / (peak * PROBE_TRAIN_UTILISATION),
            1 / (peak * PROBE_EVAL_UTILISATION),
            PROBE_RUN_SECONDS,
        ]
    )
    return coef, "uncalibrated: a matmul probe, no run measured on this machine yet"


def _probed(key: str, model: str) -> tuple[np.ndarray, str] | None:
    """This machine's speed on `model` from a timed training step (`ptft_bench.sweep.probe`),
    measured once per machine key and model; None when the model cannot be probed here."""
    if not model:
        return None
    data = _load()
    known = data.get("probes", {}).get(f"{key}|{model}")
    if known is None:
        from ptft_bench.sweep import probe

        found = re.search(r"(\d+) threads", key)
        threads = int(found.group(1)) if found else 1
        try:
            coef, _ = probe.measure(model, threads)
        except Exception:  # noqa: BLE001 - any model that cannot load here: the matmul probe
            return None
        known = [float(c) for c in coef]
        data.setdefault("probes", {})[f"{key}|{model}"] = known
        try:
            atomic.write_json(_calibration_path(), data)
        except OSError:
            pass
    return np.asarray(known), f"uncalibrated: a timed training step of {model}, no run here yet"


def estimate(works: list[Work], key: str, jobs: int) -> Estimate:
    per_run, bases = [], set()
    fitted = {m: rates(key, m) for m in {w.model for w in works}}
    for w in works:
        coef, basis = fitted[w.model]
        per_run.append(float(coef @ [w.train_flops, w.eval_flops, w.runs]))
        bases.add(basis)
    basis = "; ".join(sorted(bases)) or "no runs to estimate"
    return Estimate(sum(per_run) / max(jobs, 1), per_run, basis)


def seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return math.nan


@dataclass
class SweepClock:
    """The estimate kept up to date while a sweep runs: each finished run rescales what is left
    by how this sweep's runs compared with their prediction (actual / predicted so far), so the
    first run calibrates the rest even on a machine never seen before."""

    predicted_total: float  # the runs' predicted seconds, summed (not divided over workers)
    jobs: int
    predicted_done: float = 0.0
    actual_done: float = 0.0
    runs_done: int = 0

    def finished(self, predicted: float, seconds: float) -> None:
        self.predicted_done += predicted
        self.actual_done += seconds
        self.runs_done += 1

    @property
    def ratio(self) -> float:
        return self.actual_done / self.predicted_done if self.predicted_done > 0 else 1.0

    def remaining_seconds(self) -> float:
        left = max(self.predicted_total - self.predicted_done, 0.0)
        return left * self.ratio / max(self.jobs, 1)

    def describe(self) -> str:
        if not self.runs_done:
            return ""
        return f"left ~{_hms(self.remaining_seconds())} (x{self.ratio:.2f} after {self.runs_done})"
