"""Inference cost of a trained model: batch-1 latency and batched throughput, merged and not.

People choose between LoRA, adapters and prompt methods also for what they cost when serving:
LoRA-family and IA3 weights can be merged into the base weights (no overhead), bottleneck
adapters add layers, prompt methods add tokens. Measured on the test split with the precision of
training, after training: latency of single examples (the first `n` of the split in its order,
after `warmup` untimed ones; median and 95th percentile) and throughput at the evaluation batch
size over the first 512 examples (batches sorted by length, as evaluation runs them). For a strategy
whose weights merge (`Strategy.merged`), the merged copy is measured too, and its predictions are
checked against the unmerged model's.

On a CPU the numbers are the sweep's own load: with `--jobs 2`, another run trains beside it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ptft_bench.tasks import encode as D

LATENCY_EXAMPLES = 64
WARMUP = 5
THROUGHPUT_EXAMPLES = 512  # the first examples of the split: enough for a stable rate


@torch.inference_mode()
def measure(
    model: torch.nn.Module,
    split: D.EncodedSplit,
    pad_id: int,
    device: torch.device,
    autocast: Any,
    batch_size: int,
    n: int = LATENCY_EXAMPLES,
) -> dict[str, float]:
    """{"latency_ms_median", "latency_ms_p95", "throughput_per_second", "examples_timed",
    "examples_throughput"}."""
    model.eval()
    n = min(n, len(split))
    times = []
    for i in range(-min(WARMUP, n), n):
        batch = _batch(split, np.array([max(i, 0)]), pad_id, device)
        t0 = time.perf_counter()
        with autocast():
            model(**batch)
        _sync(device)
        if i >= 0:
            times.append(time.perf_counter() - t0)
    m = min(len(split), THROUGHPUT_EXAMPLES)
    t0 = time.perf_counter()
    for idx in D.eval_batches(split.lengths[:m], batch_size):
        with autocast():
            model(**_batch(split, idx, pad_id, device))
    _sync(device)
    seconds = time.perf_counter() - t0
    ms = np.asarray(times) * 1000
    return {
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        "throughput_per_second": m / seconds if seconds else float("nan"),
        "examples_timed": n,
        "examples_throughput": m,
    }


@torch.inference_mode()
def max_logit_difference(a: torch.nn.Module, b: torch.nn.Module, split, pad_id, device) -> float:
    """Largest logit difference of two models on the first 32 examples of `split`."""
    a.eval()
    b.eval()
    batch = _batch(split, np.arange(min(32, len(split))), pad_id, device)
    return float((a(**batch).logits.float() - b(**batch).logits.float()).abs().max())


def _batch(split: D.EncodedSplit, idx: np.ndarray, pad_id: int, device) -> dict:
    batch = D.collate(split, idx, pad_id)
    batch.pop("labels")
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


GEN_LATENCY_PROMPTS = 16  # batch-1 prompts timed (after WARMUP untimed); 32 new tokens each
GEN_NEW_TOKENS = 32


@torch.inference_mode()
def measure_generation(
    model: torch.nn.Module,
    split: D.EncodedSplit,
    pad_id: int,
    device: torch.device,
    autocast: Any,
    batch_size: int,
) -> dict[str, float]:
    """Generation cost: time to first token and tokens per second at batch 1 (median over
    `GEN_LATENCY_PROMPTS` prompts), and tokens per second at `batch_size` over the first
    batch-size prompts; greedy, a fixed budget of new tokens (no early stop: equal work)."""
    model.eval()
    n = min(GEN_LATENCY_PROMPTS, len(split))
    ttft, rate = [], []
    for i in range(-min(WARMUP, n), n):
        batch = {
            k: v.to(device)
            for k, v in D.collate_prompts(split, np.array([max(i, 0)]), pad_id).items()
        }
        first = _timed_generate(model, batch, 1, pad_id, autocast, device)
        full = _timed_generate(model, batch, GEN_NEW_TOKENS, pad_id, autocast, device)
        if i >= 0:
            ttft.append(first)
            rate.append(GEN_NEW_TOKENS / full)
    m = min(batch_size, len(split))
    batch = {k: v.to(device) for k, v in D.collate_prompts(split, np.arange(m), pad_id).items()}
    seconds = _timed_generate(model, batch, GEN_NEW_TOKENS, pad_id, autocast, device)
    return {
        "time_to_first_token_ms": float(np.median(ttft) * 1000),
        "tokens_per_second_batch1": float(np.median(rate)),
        "tokens_per_second_batched": m * GEN_NEW_TOKENS / seconds,
        "batch_size": m,
        "prompts_timed": n,
        "new_tokens": GEN_NEW_TOKENS,
    }


def _timed_generate(model, batch, new_tokens, pad_id, autocast, device) -> float:
    t0 = time.perf_counter()
    with autocast():
        model.generate(
            **batch,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    _sync(device)
    return time.perf_counter() - t0


@torch.inference_mode()
def max_lm_logit_difference(a, b, split: D.EncodedSplit, pad_id: int, device) -> float:
    """Largest next-token logit difference of two causal LMs on the first 8 prompts."""
    a.eval()
    b.eval()
    batch = {
        k: v.to(device)
        for k, v in D.collate_prompts(split, np.arange(min(8, len(split))), pad_id).items()
    }
    return float((a(**batch).logits.float() - b(**batch).logits.float()).abs().max())
