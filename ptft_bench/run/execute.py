"""Execute: one run spec -> a `RunRecord` and its per-example predictions.

The second station of a run's road (plan -> execute -> record -> store -> report). A
`SweepContext`, built once per sweep, owns what runs share: the accelerator, the description of
the machine, and the caches of task data, tokenizers and tokenised splits. Per run, `execute`
loads the model, finds its parts once, hands them and the step counts to the strategy
(`strategy.apply(model, context)`), trains (`ptft_bench.run.train.fit`), and measures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ptft_bench import env
from ptft_bench.config import DataConfig
from ptft_bench.cost import flops
from ptft_bench.cost import meters as cost
from ptft_bench.errors import UserError
from ptft_bench.models import features
from ptft_bench.models.features import head_linear
from ptft_bench.models.load import load_causal_lm, load_classifier, load_config, load_tokenizer
from ptft_bench.models.parts import count_parameters, find_parts
from ptft_bench.models.pooling import is_decoder
from ptft_bench.records.record import RunRecord, now
from ptft_bench.records.store import RunStore
from ptft_bench.run.caching import prepare_cache
from ptft_bench.run.forgetting import forgetting, lm_loss
from ptft_bench.run.generation import MAX_NEW_TOKENS, decode, score_texts
from ptft_bench.run.generation import baseline as generation_baseline
from ptft_bench.run.generation import learning_check as generation_check
from ptft_bench.run.measure import (
    RunInputs,
    Trained,
    measure_generation_cost,
    measure_inference,
    measurements,
)
from ptft_bench.run.spec import RunSpec
from ptft_bench.run.train import fit, score, selection_metric
from ptft_bench.strategy.registry import StrategyContext
from ptft_bench.tasks import TaskData, load_task
from ptft_bench.tasks.encode import EncodedSplit, encode_task


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

    def __init__(
        self, data: DataConfig, precision: str, progress: bool = True, worker: str = "in-process"
    ) -> None:
        self.data = data
        self.progress = progress
        self.requested_precision = precision
        self.worker = worker  # "fresh process" (one run per process) or "in-process"
        self._accelerator: Any = None
        self._tasks: dict[str, TaskData] = {}
        self._tokenizers: dict[str, Any] = {}

    @property
    def accelerator(self):
        """Created on first use: a parent that only schedules workers never touches the GPU."""
        if self._accelerator is None:
            self._accelerator, self.precision = make_accelerator(self.requested_precision)
            self._env = env.describe(
                self._accelerator.device,
                precision=self.precision,
                num_processes=self._accelerator.num_processes,
                worker=self.worker,
            )
        return self._accelerator

    @property
    def env(self) -> dict[str, Any]:
        """The machine description every record of the sweep carries (`ptft_bench.env`)."""
        self.accelerator  # noqa: B018 - created with the accelerator (device, precision)
        return self._env

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
        generation = [t for t in tasks if self.task(t).spec.is_generation]
        for m in models if generation else []:
            config = load_config(m)
            if not is_decoder(config):
                raise UserError(
                    f"{generation[0]} is a generation task and {m} an encoder "
                    f"({config.model_type}): generation tasks need a decoder language model, "
                    "e.g. --model smollm2-135m"
                )


@dataclass
class RunResult:
    record: RunRecord
    predictions: dict[str, dict[str, np.ndarray]]  # split -> {"pred", "label"}


def execute(spec: RunSpec, ctx: SweepContext) -> RunResult:
    """Train one run and measure it; exceptions propagate (the sweep records them as failed)."""
    from accelerate.utils import set_seed

    started = now()
    task = ctx.task(spec.task)
    if task.spec.is_generation:
        return _execute_generation(spec, ctx, task, started)
    encoded = ctx.encoded(spec.task, spec.model, spec.budget.max_length)
    acc = ctx.accelerator
    # The run's memory is measured from before its model is loaded (the baseline) to the end of
    # training and evaluation; in a fresh worker process the increment is the run's own.
    with cost.PeakMemory(acc.device) as memory:
        set_seed(spec.seed)  # before the head is created: same seed, same head, same numbers
        model = load_classifier(
            spec.model,
            task.spec.num_labels,
            task.spec.is_regression,
            pooling_mode=spec.pooling,
            quantization=spec.quantization,
        )
        base_params = count_parameters(model)
        schedule = spec.budget.schedule(len(encoded["train"]), acc.num_processes)
        context = StrategyContext.of(
            model, total_steps=schedule.total_steps, steps_per_epoch=schedule.steps_per_epoch
        )
        strategy = spec.new_strategy()
        model = strategy.apply(model, context)
        parts = context.parts if model is context.parts.model else find_parts(model)
        run = RunInputs(spec, ctx, task, encoded, strategy, parts)
        trained = _train(run)
    # A pruned trial can never be selected: its serving cost is not worth measuring.
    inference_cost = None if trained.pruned else measure_inference(run, base_params)
    labels = {name: encoded[name].labels for name in trained.fit.predictions}
    predictions = {
        name: {"pred": pred, "label": labels[name]}
        for name, pred in trained.fit.predictions.items()
    }
    measured = measurements(run, trained, memory, inference_cost, labels)
    return RunResult(RunRecord.ok(spec, ctx.env, started, **measured), predictions)


def _execute_generation(spec: RunSpec, ctx: SweepContext, task, started: str) -> RunResult:
    """A generation run: a causal LM, trained on target tokens, decoded and scored, with the
    change of its general-text loss (forgetting) and its generation cost."""
    from accelerate.utils import set_seed

    encoded = ctx.encoded(spec.task, spec.model, spec.budget.max_length)
    acc, tokenizer = ctx.accelerator, ctx.tokenizer(spec.model)
    with cost.PeakMemory(acc.device) as memory:
        set_seed(spec.seed)
        model = load_causal_lm(spec.model, spec.quantization)
        model = model if spec.quantization != "none" else model.to(acc.device)  # placed on load
        base = find_parts(model)
        base_params = count_parameters(model)
        before = lm_loss(base, tokenizer, acc.device, acc.autocast)
        schedule = spec.budget.schedule(len(encoded["train"]), acc.num_processes)
        context = StrategyContext(base, schedule.total_steps, schedule.steps_per_epoch)
        strategy = spec.new_strategy()
        reason = type(strategy).supports_task("generation")
        if reason:
            raise ValueError(reason)
        model = strategy.apply(model, context)
        parts = context.parts if model is context.parts.model else find_parts(model)
        run = RunInputs(spec, ctx, task, encoded, strategy, parts)
        trained = _train(run)
        scored = None if trained.pruned else _decode_and_score(run)
    quality = {
        "forgetting": forgetting(before, lm_loss(parts, tokenizer, acc.device, acc.autocast), parts)
    }
    predictions: dict[str, dict] = {}
    if scored is not None:
        quality.update(_generation_quality(run, trained, scored))
        for name, sc in scored.items():
            matrix, columns = sc.matrix()
            predictions[name] = {"pred": matrix, "label": np.zeros(len(matrix)), "texts": sc.texts}
            trained.fit.metrics[name] = {**trained.fit.metrics.get(name, {}), **sc.metrics}
        quality["generation"] = {
            "max_new_tokens": MAX_NEW_TOKENS,
            "num_beams": 1,
            "columns": columns,
        }
        quality["generation"]["constant"] = quality["baseline"]["value"]
    inference_cost = None if trained.pruned else measure_generation_cost(run, base_params)
    measured = measurements(run, trained, memory, inference_cost, {}, quality)
    return RunResult(RunRecord.ok(spec, ctx.env, started, **measured), predictions)


def _decode_and_score(run: RunInputs) -> dict:
    """Decoded and scored validation and test inputs (the best epoch's weights)."""
    acc, tokenizer = run.ctx.accelerator, run.ctx.tokenizer(run.spec.model)
    out = {}
    for name in ("validation", "test"):
        split = run.encoded[f"inputs_{name}"]
        texts = decode(run.parts.model, split, tokenizer, acc.device, acc.autocast)
        out[name] = score_texts(texts, split.references)
    return out


def _generation_quality(run: RunInputs, trained: Trained, scored: dict) -> dict:
    refs = {name: run.encoded[f"inputs_{name}"].references for name in scored}
    base = generation_baseline(list(run.task.train["target"]), refs)
    check = generation_check(
        run.task.spec.primary_metric,
        scored["validation"],
        refs["validation"],
        base["value"],
        trained.fit.history,
    )
    return {"baseline": base, "learning_check": check}


def _fit_closed_form(run: RunInputs) -> Trained:
    """Closed-form strategies: features of the frozen model once, the strategy fits, then score."""
    spec, encoded, parts, acc = run.spec, run.encoded, run.parts, run.ctx.accelerator
    model = parts.model.to(acc.device)
    linear = head_linear(parts)[1]
    fm = flops.flops_model(model, parts=parts)
    t0 = time.perf_counter()
    feats = {
        name: (
            features.extract(
                model, linear, encoded[name], run.pad_id, spec.budget.eval_batch_size, acc.device
            ),
            encoded[name].labels,
        )
        for name in ("train", "validation")
    }
    info = run.strategy.fit_features(model, feats, run.task.spec)
    seconds = time.perf_counter() - t0
    result = score(model, encoded, run.task.spec, spec.budget, acc, run.pad_id)
    result.train_seconds = seconds
    result.train_samples = len(encoded["train"])
    tokens = sum(float(encoded[n].lengths.sum()) for n in ("train", "validation"))
    mean_len = tokens / max(len(encoded["train"]) + len(encoded["validation"]), 1)
    result.train_tokens = result.padded_positions = int(encoded["train"].lengths.sum())
    train_flops = (
        flops.prefix_forward_flops(fm, mean_len, len(parts.blocks), spec.budget.eval_batch_size)
        * tokens
    )
    trainable = {n for n, _ in run.strategy.trainable_named_parameters(model)}
    cache_info = {"used": False, "reason": "closed-form fit on features extracted once"}
    return Trained(result, trainable, train_flops, cache_info, info)


def _train(run: RunInputs) -> Trained:
    """Count, cache what stays frozen, fit, and meter FLOPs and memory on the way."""
    if not run.strategy.trains_by_gradient:
        return _fit_closed_form(run)
    spec, strategy, parts = run.spec, run.strategy, run.parts
    # what the loop trains and validates on (a generation task's prompts to decode come later)
    encoded = {k: v for k, v in run.encoded.items() if not k.startswith("inputs_")}
    model, acc, budget, pad_id = parts.model, run.ctx.accelerator, spec.budget, run.pad_id
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    fm = flops.flops_model(model, parts=parts)  # the set that trains now (before any unfreezing)
    callbacks = strategy.callbacks()
    changes = any(cb.changes_trainable_set() for cb in callbacks)
    schedule = budget.schedule(len(encoded["train"]), acc.num_processes)
    pruning = (
        spec.trial.callback(selection_metric(run.task.spec), schedule.epochs)
        if spec.trial
        else None
    )
    cache, cache_info = prepare_cache(
        parts, trainable, changes, encoded, budget, pad_id, acc.device
    )
    first_cached = cache_info.get("first_trainable_block", 0) if cache is not None else 0
    meter = flops.FlopsMeter(fm, parts, first_cached)  # before the cache's surgery
    result = fit(
        model,
        strategy.param_groups(model, spec.lr, budget.weight_decay),
        encoded,
        run.task.spec,
        budget,
        spec.seed,
        acc,
        pad_id,
        callbacks=[meter, *callbacks, *([pruning] if pruning else [])],
        get_state=lambda: strategy.trainable_state_dict(model),
        set_state=lambda s: strategy.load_trainable_state_dict(model, s),
        progress=run.ctx.progress,
        desc=f"{spec.task}/{spec.variant_label}",
        cache=cache,
    )
    # Building the cache replaces the frozen layers' forward passes: it is training time.
    result.train_seconds += cache_info.get("build_seconds", 0.0)
    train_flops = meter.total
    if cache is not None:  # one forward pass of the cached blocks over the training tokens
        mean_len = result.padded_positions / max(result.train_samples, 1)
        tokens = float(encoded["train"].lengths.sum())
        train_flops += (
            flops.prefix_forward_flops(fm, mean_len, first_cached, budget.eval_batch_size) * tokens
        )
    return Trained(
        result, trainable, train_flops, cache_info, tuning=pruning.outcome() if pruning else None
    )


def run_one(
    spec: RunSpec, ctx: SweepContext, store: RunStore | None, announce: bool = True
) -> RunRecord:
    """Execute one run; a failure becomes a failed record (bad input still stops the sweep)."""
    started = now()
    predictions = None
    try:
        result = execute(spec, ctx)
        record, predictions = result.record, result.predictions
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure is recorded and the sweep goes on
        record = RunRecord.failed(spec, ctx.env, started, e)
        if store is not None and announce:
            tqdm.write(f"run {spec.run_id} failed: {record.error}")
    if store is not None:
        store.write(record, predictions)
    return record


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
