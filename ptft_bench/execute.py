"""Execute: one run spec -> a `RunRecord` and its per-example predictions.

The second station of a run's road (plan -> execute -> record -> store -> report). A
`SweepContext`, built once per sweep, owns what runs share: the accelerator, the description of
the machine, and the caches of task data, tokenizers and tokenised splits. Per run, `execute`
loads the model, finds its parts once, hands them and the step counts to the strategy
(`strategy.apply(model, context)`), trains (`ptft_bench.train.fit`), and measures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptft_bench import baselines, cost, env, features
from ptft_bench.caching import prepare_cache
from ptft_bench.config import DataConfig
from ptft_bench.data import EncodedSplit, encode_task
from ptft_bench.features import head_linear
from ptft_bench.model_parts import ModelParts, find_parts
from ptft_bench.models import load_classifier, load_tokenizer
from ptft_bench.plan import RunSpec
from ptft_bench.record import RunRecord, now
from ptft_bench.registry import Strategy, StrategyContext
from ptft_bench.tasks import TaskData, load_task
from ptft_bench.train import FitResult, fit, score


def make_accelerator(precision: str):
    """One Accelerator per sweep; bf16 autocast where asked (auto: on CUDA with bf16 support)."""
    from accelerate import Accelerator

    if precision == "auto":
        precision = (
            "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
        )
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    acc = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no")
    return acc, precision


class SweepContext:
    """What every run of a sweep shares; built once, before the first run."""

    def __init__(self, data: DataConfig, precision: str, progress: bool = True) -> None:
        self.data = data
        self.progress = progress
        self.accelerator, self.precision = make_accelerator(precision)
        self.env = env.describe(
            self.accelerator.device,
            precision=self.precision,
            num_processes=self.accelerator.num_processes,
        )
        self._tasks: dict[str, TaskData] = {}
        self._tokenizers: dict[str, Any] = {}

    def task(self, name: str) -> TaskData:
        if name not in self._tasks:
            d = self.data
            self._tasks[name] = load_task(
                name,
                data_dir=d.data_dir,
                max_train_samples=d.max_train_samples,
                max_eval_samples=d.max_eval_samples,
            )
        return self._tasks[name]

    def tokenizer(self, model: str):
        if model not in self._tokenizers:
            self._tokenizers[model] = load_tokenizer(model)
        return self._tokenizers[model]

    def encoded(self, task: str, model: str, max_length: int) -> dict[str, EncodedSplit]:
        return encode_task(self.task(task), self.tokenizer(model), max_length)

    def check_inputs(self, tasks: list[str], models: list[str]) -> None:
        """Load every task and tokenizer now: bad input stops the sweep before any training."""
        for t in tasks:
            self.task(t)
        for m in models:
            self.tokenizer(m)


@dataclass
class RunResult:
    record: RunRecord
    predictions: dict[str, dict[str, np.ndarray]]  # split -> {"pred", "label"}


def execute(spec: RunSpec, ctx: SweepContext) -> RunResult:
    """Train one run and measure it; exceptions propagate (the sweep records them as failed)."""
    from accelerate.utils import set_seed

    started = now()
    task = ctx.task(spec.task)
    encoded = ctx.encoded(spec.task, spec.model, spec.budget.max_length)
    set_seed(spec.seed)  # before the head is created: same seed, same head, same numbers
    model = load_classifier(
        spec.model, task.spec.num_labels, task.spec.is_regression, pooling_mode=spec.pooling
    )
    schedule = spec.budget.schedule(len(encoded["train"]), ctx.accelerator.num_processes)
    context = StrategyContext.of(
        model, total_steps=schedule.total_steps, steps_per_epoch=schedule.steps_per_epoch
    )
    strategy = spec.new_strategy()
    model = strategy.apply(model, context)
    parts = context.parts if model is context.parts.model else find_parts(model)
    trained = _train(spec, ctx, task, encoded, strategy, parts)
    labels = {name: encoded[name].labels for name in trained.fit.predictions}
    predictions = {
        name: {"pred": pred, "label": labels[name]}
        for name, pred in trained.fit.predictions.items()
    }
    measured = _measurements(spec, ctx, task, encoded, trained, labels)
    return RunResult(RunRecord.ok(spec, ctx.env, started, **measured), predictions)


@dataclass
class _Trained:
    fit: FitResult
    strategy: Strategy
    parts: ModelParts
    trainable: set[str]
    flops: float
    memory: cost.PeakMemory
    cache_info: dict[str, Any]
    fit_info: dict[str, Any] | None = None


def _fit_closed_form(spec, ctx, task, encoded, strategy, parts) -> _Trained:
    """Closed-form strategies: features of the frozen model once, the strategy fits, then score."""
    model, acc = parts.model.to(ctx.accelerator.device), ctx.accelerator
    pad_id = _pad_id(ctx.tokenizer(spec.model))
    linear = head_linear(parts)[1]
    fm = cost.flops_model(model, parts=parts)
    with cost.PeakMemory(acc.device) as mem:
        t0 = time.perf_counter()
        feats = {
            name: (
                features.extract(
                    model, linear, encoded[name], pad_id, spec.budget.eval_batch_size, acc.device
                ),
                encoded[name].labels,
            )
            for name in ("train", "validation")
        }
        info = strategy.fit_features(model, feats, task.spec)
        seconds = time.perf_counter() - t0
        result = score(model, encoded, task.spec, spec.budget, acc, pad_id)
    result.train_seconds = seconds
    result.train_samples = len(encoded["train"])
    tokens = sum(float(encoded[n].lengths.sum()) for n in ("train", "validation"))
    mean_len = tokens / max(len(encoded["train"]) + len(encoded["validation"]), 1)
    result.train_tokens = result.padded_positions = int(encoded["train"].lengths.sum())
    flops = cost.prefix_forward_flops(fm, mean_len, len(parts.blocks)) * tokens
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    cache_info = {"used": False, "reason": "closed-form fit on features extracted once"}
    return _Trained(result, strategy, parts, trainable, flops, mem, cache_info, info)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _train(spec, ctx, task, encoded, strategy, parts) -> _Trained:
    """Count, cache what stays frozen, fit, and meter FLOPs and memory on the way."""
    if not strategy.trains_by_gradient:
        return _fit_closed_form(spec, ctx, task, encoded, strategy, parts)
    model, acc, budget = parts.model, ctx.accelerator, spec.budget
    pad_id = _pad_id(ctx.tokenizer(spec.model))
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    fm = cost.flops_model(model, parts=parts)  # the set that trains now (before any unfreezing)
    callbacks = strategy.callbacks()
    changes = any(cb.changes_trainable_set() for cb in callbacks)
    with cost.PeakMemory(acc.device) as mem:
        cache, cache_info = prepare_cache(
            parts, trainable, changes, encoded, budget, pad_id, acc.device
        )
        first_cached = cache_info.get("first_trainable_block", 0) if cache is not None else 0
        meter = cost.FlopsMeter(fm, parts, first_cached)  # before the cache's surgery
        result = fit(
            model,
            strategy.param_groups(model, spec.lr, budget.weight_decay),
            encoded,
            task.spec,
            budget,
            spec.seed,
            acc,
            pad_id,
            callbacks=[meter, *callbacks],
            get_state=lambda: strategy.trainable_state_dict(model),
            set_state=lambda s: strategy.load_trainable_state_dict(model, s),
            progress=ctx.progress,
            desc=f"{spec.task}/{spec.variant.label()}",
            cache=cache,
        )
    # Building the cache replaces the frozen layers' forward passes: it is training time.
    result.train_seconds += cache_info.get("build_seconds", 0.0)
    flops = meter.total
    if cache is not None:  # one forward pass of the cached blocks over the training tokens
        mean_len = result.padded_positions / max(result.train_samples, 1)
        tokens = float(encoded["train"].lengths.sum())
        flops += cost.prefix_forward_flops(fm, mean_len, first_cached) * tokens
    return _Trained(result, strategy, parts, trainable, flops, mem, cache_info)


def _measurements(spec, ctx, task, encoded, trained: _Trained, labels) -> dict[str, Any]:
    """Every measured field of the record (`RunRecord`), from the trained run."""
    r, model = trained.fit, trained.parts.model
    counts = cost.count_params(model, trained.trainable, trained.parts)
    peak, peak_source = cost.peak_flops_per_second(ctx.accelerator.device)
    achieved = trained.flops / r.train_seconds if r.train_seconds else None
    lengths = encoded["train"].lengths
    base = baselines.baseline(task.spec, encoded["train"].labels, labels)
    primary = task.spec.primary_metric
    check = baselines.learning_check(r.history, r.test[primary], base["test"][primary], primary)
    return {
        "precision": ctx.precision,
        "task_info": {
            "num_train": len(encoded["train"]),
            "num_validation": len(encoded["validation"]),
            "num_test": len(encoded["test"]),
            "primary_metric": primary,
            "metrics": list(task.spec.metrics),
            "is_regression": task.spec.is_regression,
            "source": task.source,
            "mean_train_tokens": float(lengths.mean()) if len(lengths) else 0.0,
        },
        "metrics": r.metrics,
        "primary_metric": primary,
        "best_epoch": r.best_epoch,
        "steps": r.steps,
        "baseline": base,
        "learning_check": check,
        "history": r.history,
        "trainable_params": counts.trainable,
        "trainable_params_head": counts.trainable_head,
        "total_params": counts.total,
        "train_seconds": r.train_seconds,
        "eval_seconds": r.eval_seconds,
        "train_samples_per_second": _rate(r.train_samples, r.train_seconds),
        "train_tokens_per_second": _rate(r.train_tokens, r.train_seconds),
        "padding_share": 1 - r.train_tokens / r.padded_positions if r.padded_positions else 0.0,
        "peak_memory_bytes": trained.memory.peak,
        "memory_at_start_bytes": trained.memory.baseline,
        "checkpoint_bytes": cost.checkpoint_bytes(trained.strategy.trainable_state_dict(model)),
        "train_flops": trained.flops,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak,
        "peak_flops_source": peak_source,
        "utilisation": achieved / peak if achieved and peak else None,
        "frozen_cache": trained.cache_info,
        "fit": trained.fit_info,
    }


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds else None


def release_memory() -> None:
    """Return freed memory to the OS between runs.

    CPU peak memory is the process's resident set sampled during a run; glibc keeps freed heap
    pages, so without this a run would be charged for what earlier runs of the sweep left behind.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
