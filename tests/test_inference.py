"""Inference cost: merged and unmerged weights give the same predictions; strategies that
cannot merge say so; the measurement returns sane numbers on a tiny model."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from ptft_bench.cost import inference
from ptft_bench.strategy.registry import get_strategy
from ptft_bench.tasks import encode as D
from tests.tiny_models import VOCAB_SIZE, tiny_batch, tiny_model


def _trained(name: str, **params):
    torch.manual_seed(0)
    strategy = get_strategy(name, **params)
    model = strategy.apply(tiny_model("bert"))
    opt = torch.optim.AdamW(strategy.param_groups(model, lr=5e-2))
    model.train()
    for step in range(3):  # move the adapter weights away from their identity init
        model(**tiny_batch(seed=step)).loss.backward()
        opt.step()
        opt.zero_grad()
    return strategy, model.eval()


def _split(n: int = 20) -> D.EncodedSplit:
    rng = np.random.default_rng(0)
    ids = [
        np.concatenate([[2], rng.integers(5, VOCAB_SIZE, size=rng.integers(3, 12)), [3]])
        for _ in range(n)
    ]
    return D.EncodedSplit(ids, None, rng.integers(0, 2, size=n))


@pytest.mark.parametrize(
    "name,params", [("lora", {}), ("lora", {"use_dora": True}), ("ia3", {}), ("loha", {})]
)
def test_merged_weights_give_the_same_predictions(name, params):
    strategy, model = _trained(name, **params)
    merged = strategy.merged(model)
    assert merged is not None and not hasattr(merged, "peft_config")
    split = _split()
    diff = inference.max_logit_difference(model, merged, split, 0, torch.device("cpu"))
    assert diff < 1e-4, diff
    assert sum(p.numel() for p in merged.parameters()) == sum(
        p.numel() for p in tiny_model("bert").parameters()
    )  # the base architecture again


@pytest.mark.parametrize("name", ["full", "bitfit", "head_only", "adapter", "prompt_tuning"])
def test_strategies_without_a_merge_return_none(name):
    strategy, model = _trained(name)
    assert strategy.merged(model) is None


def test_measure_returns_latency_and_throughput():
    _, model = _trained("full")
    out = inference.measure(
        model, _split(), 0, torch.device("cpu"), contextlib.nullcontext, batch_size=8, n=10
    )
    assert out["examples_timed"] == 10
    assert 0 < out["latency_ms_median"] <= out["latency_ms_p95"]
    assert out["throughput_per_second"] > 0
