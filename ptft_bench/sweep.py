"""Run a suite: validate everything first, then train each pending run and record it."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ptft_bench import cost
from ptft_bench.config import SuiteConfig
from ptft_bench.data import encode_task, padding_share
from ptft_bench.errors import UserError
from ptft_bench.models import load_classifier, load_tokenizer
from ptft_bench.registry import get_strategy
from ptft_bench.runner import (
    RunSpec,
    base_record,
    environment,
    expand,
    failed_record,
    now,
    pending,
    shard,
)
from ptft_bench.store import RunStore
from ptft_bench.train import Budget, fit


@dataclass
class SweepResult:
    out: Path
    planned: int
    skipped: int
    ok: int
    failed: int
    seconds: float


@lru_cache(maxsize=8)
def _task(name: str, data_dir: str | None, max_train: int | None, max_eval: int | None):
    from ptft_bench.tasks import load_task

    return load_task(
        name, data_dir=data_dir, max_train_samples=max_train, max_eval_samples=max_eval
    )


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    return load_tokenizer(model)


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


def run_suite(
    suite: SuiteConfig,
    retry_failed: bool = False,
    shard_spec: str | None = None,
    progress: bool = True,
    write_report: bool = True,
) -> SweepResult:
    t_start = time.perf_counter()
    specs = shard(expand(suite), shard_spec)
    store = RunStore(suite.out)
    # Validate every input before training anything: a bad task, file or model stops the sweep
    # with one line and nothing written.
    for task in suite.tasks:
        _task(task, suite.data.data_dir, suite.data.max_train_samples, suite.data.max_eval_samples)
    for model in suite.models:
        _tokenizer(model)
    accelerator, precision = make_accelerator(suite.precision)
    if accelerator.is_main_process:  # only the writer cleans its own leftovers
        store.clean_temporaries()
        store.write_plan(suite.name, [s.plan_entry() for s in specs])
    todo = pending(specs, store, retry_failed)
    env = environment(accelerator, precision)
    ok = failed = 0
    outer = tqdm(
        todo,
        desc=f"suite {suite.name}",
        disable=not (progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    for spec in outer:
        outer.set_postfix_str(f"{spec.task} {spec.variant.label()} lr={spec.lr:g} seed={spec.seed}")
        started = now()
        try:
            record = run_one(spec, suite, accelerator, env, progress)
            ok += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure is recorded and the sweep goes on
            record = failed_record(spec, e, env, started)
            failed += 1
            if accelerator.is_main_process:
                tqdm.write(f"run {spec.run_id} failed: {record['error']}")
        record.setdefault("started_at", started)
        if accelerator.is_main_process:
            store.write(record)
        accelerator.wait_for_everyone()
        accelerator.free_memory()
        release_memory()
    result = SweepResult(
        suite.out, len(specs), len(specs) - len(todo), ok, failed, time.perf_counter() - t_start
    )
    if write_report and accelerator.is_main_process:
        _write_report(suite.out)
    return result


def _write_report(out: Path) -> None:
    try:
        from ptft_bench.report import write_report
    except ImportError:
        return
    write_report([out], out / "report")


def run_one(
    spec: RunSpec, suite: SuiteConfig, accelerator, env: dict[str, Any], progress: bool
) -> dict[str, Any]:
    from accelerate.utils import set_seed

    task = _task(
        spec.task, suite.data.data_dir, suite.data.max_train_samples, suite.data.max_eval_samples
    )
    tokenizer = _tokenizer(spec.model)
    budget = Budget(**spec.budget)
    encoded = encode_task(task, tokenizer, budget.max_length)
    started = now()
    set_seed(spec.seed)  # before the head is created: same seed, same head, same numbers
    model = load_classifier(spec.model, task.spec.num_labels, task.spec.is_regression)
    strategy = get_strategy(spec.variant.name, **spec.resolved_params)
    n_train = len(encoded["train"])
    steps_per_epoch = max(1, -(-n_train // budget.batch_size) // accelerator.num_processes)
    total_steps = budget.max_steps or steps_per_epoch * budget.epochs
    if hasattr(strategy, "configure_for_training"):
        strategy.configure_for_training(total_steps=total_steps)
    model = strategy.apply(model)
    groups = strategy.param_groups(model, spec.lr, budget.weight_decay)
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    counts = cost.count_params(model, trainable)
    fm = cost.flops_model(model, trainable)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    callbacks = strategy.callbacks()
    with cost.PeakMemory(accelerator.device) as mem:
        cache, cache_info = _maybe_cache(
            model, trainable, callbacks, encoded, budget, pad_id, accelerator
        )
        first_cached = cache_info.get("first_trainable_block", 0) if cache is not None else 0
        meter = cost.FlopsMeter(model, trainable, first_cached)  # before the cache's surgery

        result = fit(
            model,
            groups,
            encoded,
            task.spec,
            budget,
            spec.seed,
            accelerator,
            pad_id,
            callbacks=[meter, *callbacks],
            get_state=lambda: strategy.trainable_state_dict(model),
            set_state=lambda s: strategy.load_trainable_state_dict(model, s),
            progress=progress,
            desc=f"{spec.task}/{spec.variant.label()}",
            cache=cache,
        )
    # Building the cache replaces the frozen layers' forward passes: it is training time.
    result.train_seconds += cache_info.get("build_seconds", 0.0)
    ckpt = cost.checkpoint_bytes(strategy.trainable_state_dict(model))
    mean_len = result.padded_positions / max(result.train_samples, 1)
    flops = meter.total
    if cache is not None:  # one forward pass of the cached blocks over the training tokens
        flops += cost.prefix_forward_flops(fm, mean_len, first_cached) * float(
            encoded["train"].lengths.sum()
        )
    peak, peak_source = cost.peak_flops_per_second(accelerator.device)
    achieved = flops / result.train_seconds if result.train_seconds else None
    lengths = encoded["train"].lengths
    return {
        **base_record(spec, env),
        "status": "ok",
        "error": None,
        "task_info": {
            "num_train": n_train,
            "num_validation": len(encoded["validation"]),
            "num_test": len(encoded["test"]),
            "primary_metric": task.spec.primary_metric,
            "metrics": list(task.spec.metrics),
            "is_regression": task.spec.is_regression,
            "source": task.source,
            "mean_train_tokens": float(lengths.mean()) if len(lengths) else 0.0,
        },
        "metrics": {"validation": result.validation, "test": result.test},
        "primary_metric": task.spec.primary_metric,
        "best_epoch": result.best_epoch,
        "steps": result.steps,
        "trainable_params": counts.trainable,
        "trainable_params_head": counts.trainable_head,
        "total_params": counts.total,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "train_samples_per_second": result.train_samples / result.train_seconds
        if result.train_seconds
        else None,
        "train_tokens_per_second": result.train_tokens / result.train_seconds
        if result.train_seconds
        else None,
        "padding_share": 1 - result.train_tokens / result.padded_positions
        if result.padded_positions
        else 0.0,
        "peak_memory_bytes": mem.peak,
        "memory_at_start_bytes": mem.baseline,
        "checkpoint_bytes": ckpt,
        "train_flops": flops,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak,
        "peak_flops_source": peak_source,
        "utilisation": achieved / peak if achieved and peak else None,
        "precision": env["precision"],
        "frozen_cache": cache_info,
        "history": result.history,
        "started_at": started,
        "finished_at": now(),
    }


__all__ = ["run_suite", "run_one", "padding_share"]


def _maybe_cache(model, trainable, callbacks, encoded, budget, pad_id, accelerator):
    """Build a frozen-prefix cache when the strategy's frozen set allows it (see caching.py)."""
    from ptft_bench import caching

    if budget.frozen_cache == "off":
        return None, {"used": False, "reason": "disabled (budget.frozen_cache = off)"}
    plan = caching.plan_cache(model, trainable, any(cb.changes_trainable_set() for cb in callbacks))
    if isinstance(plan, str):
        return None, {"used": False, "reason": plan}
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "dim", 0))
    need = caching.estimate_bytes(encoded, hidden)
    if need > budget.cache_max_mb * 2**20:
        return None, {"used": False, "reason": f"needs {need / 2**20:.0f} MiB > cache_max_mb"}
    t0 = time.perf_counter()
    model.to(accelerator.device)
    cache = caching.FrozenPrefixCache(model, plan, accelerator.device)
    try:
        cache.build(encoded, pad_id, budget.eval_batch_size)
    except Exception as e:  # noqa: BLE001 - fall back to the uncached path, say why
        cache.uninstall()
        return None, {"used": False, "reason": f"cache build failed: {type(e).__name__}: {e}"[:300]}
    diff = caching.max_logit_difference(cache, encoded["validation"], "validation", pad_id)
    if not diff <= 1e-4:  # an architecture the surgery does not fit: train uncached
        return None, {"used": False, "reason": f"cached logits differ by {diff:.2e}"}
    return cache, {
        "used": True,
        "first_trainable_block": plan.first_trainable_block,
        "bytes": cache.nbytes,
        "build_seconds": time.perf_counter() - t0,
        "semantics": "frozen layers computed once in eval mode (no dropout)",
    }


def release_memory() -> None:
    """Return freed memory to the OS between runs.

    CPU peak memory is the process's resident set sampled during a run; glibc keeps freed heap
    pages, so without this a run would be charged for what earlier runs of the sweep left behind.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass
