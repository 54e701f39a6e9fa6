"""Measure: what a trained run's record says about it — quality, floor, cost and inference.

`execute` trains; this module turns the trained run into the measured fields of its
`RunRecord`: metrics and the constant-prediction baseline with the learning check
(`ptft_bench.run.baselines`), parameter counts, time and throughput, memory (total and the run's
own increment), checkpoint size, FLOPs and utilisation, and inference latency / throughput of
the trained model (and of its merged copy when the strategy's weights merge).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ptft_bench.cost import inference
from ptft_bench.cost import meters as cost
from ptft_bench.models.load import model_source
from ptft_bench.models.parts import ModelParts, count_parameters
from ptft_bench.run import baselines
from ptft_bench.run.train import FitResult
from ptft_bench.strategy.registry import Strategy


@dataclass(frozen=True)
class RunInputs:
    """One run once its model is prepared: what training and every measurement read."""

    spec: Any  # `ptft_bench.run.spec.RunSpec`
    ctx: Any  # `ptft_bench.run.execute.SweepContext`
    task: Any  # `ptft_bench.tasks.TaskData`
    encoded: dict[str, Any]  # split -> `ptft_bench.tasks.encode.EncodedSplit`
    strategy: Strategy
    parts: ModelParts

    @property
    def pad_id(self) -> int:
        return pad_id_of(self.ctx.tokenizer(self.spec.model))


@dataclass(frozen=True)
class Trained:
    """A trained run, on its way to a record."""

    fit: FitResult
    trainable: set[str]
    flops: float
    cache_info: dict[str, Any]
    fit_info: dict[str, Any] | None = None
    tuning: dict[str, Any] | None = None  # a trial's outcome (`TrialRef.callback().outcome()`)

    @property
    def pruned(self) -> bool:
        return bool(self.tuning and self.tuning.get("state") == "pruned")


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def measure_inference(run: RunInputs, base_params: int) -> dict[str, Any]:
    """Latency and throughput on the test split, of the trained and (if any) merged model.

    `same_architecture_as_base`: the trained model has the base model's parameters and no
    wrapper (full, head-only, top-k, BitFit, ...); the report takes these runs' latency as the
    unmodified base model's when it computes a strategy's inference overhead.
    """
    t0 = time.perf_counter()
    model, acc, pad_id = run.parts.model, run.ctx.accelerator, run.pad_id
    test = run.encoded["test"]
    batch = run.spec.budget.eval_batch_size
    out: dict[str, Any] = {
        "model": inference.measure(model, test, pad_id, acc.device, acc.autocast, batch)
    }
    params = count_parameters(model)
    wrapped = hasattr(model, "peft_config")
    out["same_architecture_as_base"] = params == base_params and not wrapped
    merged = run.strategy.merged(model)
    if merged is not None:
        out["merged"] = inference.measure(merged, test, pad_id, acc.device, acc.autocast, batch)
        out["merged_max_logit_difference"] = inference.max_logit_difference(
            model, merged, test, pad_id, acc.device
        )
        del merged
    out["measure_seconds"] = time.perf_counter() - t0  # outside train and eval seconds
    return out


def measure_generation_cost(run: RunInputs, base_params: int) -> dict[str, Any]:
    """Time to first token and tokens/s of the trained and (if any) merged causal LM."""
    t0 = time.perf_counter()
    model, acc, pad_id = run.parts.model, run.ctx.accelerator, run.pad_id
    prompts, batch = run.encoded["inputs_test"], run.spec.budget.eval_batch_size
    measure = inference.measure_generation
    out: dict[str, Any] = {
        "model": measure(model, prompts, pad_id, acc.device, acc.autocast, batch)
    }
    params = count_parameters(model)
    out["same_architecture_as_base"] = params == base_params and not hasattr(model, "peft_config")
    merged = run.strategy.merged(model)
    if merged is not None:
        out["merged"] = measure(merged, prompts, pad_id, acc.device, acc.autocast, batch)
        out["merged_max_logit_difference"] = inference.max_lm_logit_difference(
            model, merged, prompts, pad_id, acc.device
        )
        del merged
    out["measure_seconds"] = time.perf_counter() - t0
    return out


def measurements(
    run: RunInputs,
    trained: Trained,
    memory: cost.PeakMemory | None,
    inference_cost: dict[str, Any] | None,
    labels: dict[str, Any],
    quality: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every measured field of the record (`RunRecord`), from the trained run.

    `quality` ({"baseline", "learning_check", "forgetting"}) replaces the classification floor
    and check for a generation run (`ptft_bench.run.generation`)."""
    r, task = trained.fit, run.task
    primary = task.spec.primary_metric
    if quality is None:
        base = baselines.baseline(task.spec, run.encoded["train"].labels, labels)
        val_preds = r.predictions.get("validation")
        check = baselines.learning_check(task.spec, r.history, val_preds, labels["validation"])
        quality = {"baseline": base, "learning_check": check}
    return {
        "precision": run.ctx.precision,
        "quantization": run.spec.quantization,
        "model_source": model_source(run.spec.model),
        "task_info": _task_info(task, run.encoded),
        "metrics": r.metrics,
        "primary_metric": primary,
        "best_epoch": r.best_epoch,
        "training_stop": r.stop or None,
        "steps": r.steps,
        **quality,
        "history": r.history,
        "fit": trained.fit_info,
        **({"tuning": {**run.spec.tuning_identity(), **trained.tuning}} if trained.tuning else {}),
        "inference": inference_cost,
        **_costs(run, trained, memory),
    }


def _task_info(task, encoded) -> dict[str, Any]:
    lengths = encoded["train"].lengths
    return {
        "num_train": len(encoded["train"]),
        "num_validation": len(encoded["validation"]),
        "num_test": len(encoded["test"] if "test" in encoded else encoded["inputs_test"]),
        "primary_metric": task.spec.primary_metric,
        "metrics": list(task.spec.metrics),
        "is_regression": task.spec.is_regression,
        "source": task.source,
        "mean_train_tokens": float(lengths.mean()) if len(lengths) else 0.0,
    }


def _costs(run: RunInputs, trained: Trained, mem: cost.PeakMemory | None) -> dict[str, Any]:
    r, model = trained.fit, run.parts.model
    counts = cost.count_params(model, trained.trainable, run.parts)
    peak, peak_source = cost.peak_flops_per_second(run.ctx.accelerator.device)
    achieved = trained.flops / r.train_seconds if r.train_seconds else None
    return {
        "trainable_params": counts.trainable,
        "trainable_params_head": counts.trainable_head,
        "total_params": counts.total,
        "train_seconds": r.train_seconds,
        "eval_seconds": r.eval_seconds,
        "train_samples_per_second": _rate(r.train_samples, r.train_seconds),
        "train_tokens_per_second": _rate(r.train_tokens, r.train_seconds),
        "padding_share": 1 - r.train_tokens / r.padded_positions if r.padded_positions else 0.0,
        "peak_memory_bytes": mem.peak if mem else None,
        "memory_at_start_bytes": mem.baseline if mem else None,
        "run_memory_bytes": mem.peak - mem.baseline if mem else None,
        "checkpoint_bytes": cost.checkpoint_bytes(run.strategy.trainable_state_dict(model)),
        "train_flops": trained.flops,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak,
        "peak_flops_source": peak_source,
        "utilisation": achieved / peak if achieved and peak else None,
        "frozen_cache": trained.cache_info,
    }


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds else None
