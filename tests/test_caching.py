"""Frozen-prefix caching gives the same logits as the full model in eval mode."""

import numpy as np
import pytest
import torch

from ptft_bench import caching
from ptft_bench import data as D
from ptft_bench.model_parts import find_parts
from ptft_bench.registry import get_strategy
from tests.tiny_models import ARCHS, tiny_model


def _split(n=12, vocab=100, seed=0):
    rng = np.random.default_rng(seed)
    ids = [
        np.concatenate([[2], rng.integers(5, vocab, size=rng.integers(3, 20)), [3]])
        for _ in range(n)
    ]
    return D.EncodedSplit(ids, None, rng.integers(0, 2, size=n))


def _prepared(arch, strategy):
    torch.manual_seed(0)
    model = tiny_model(arch, num_layers=3)
    s = strategy
    model = s.apply(model)
    trainable = {n for n, _ in s.trainable_named_parameters(model)}
    return model, trainable


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "electra"])
@pytest.mark.parametrize(
    "name,params,first", [("head_only", {}, 3), ("top_k", {"k": 1}, 2), ("top_k", {"k": 2}, 1)]
)
def test_cached_logits_equal_uncached(arch, name, params, first):
    model, trainable = _prepared(arch, get_strategy(name, **params))
    plan = caching.plan_cache(find_parts(model), trainable, changes_trainable_set=False)
    assert isinstance(plan, caching.CachePlan), plan
    assert plan.first_trainable_block == first
    splits = {"validation": _split()}
    cache = caching.FrozenPrefixCache(find_parts(model), plan, torch.device("cpu"))
    cache.build(splits, pad_id=0, batch_size=5)
    diff = caching.max_logit_difference(cache, splits["validation"], "validation", 0, n=12)
    if arch == "deberta_v2" and name == "head_only":
        # DeBERTa-v2's encoder cannot run with zero blocks: detected, the run trains uncached
        assert diff == float("inf")
    else:
        assert diff < 1e-5
    # the surgery is undone: parameter names are the original ones again
    assert {n for n, _ in model.named_parameters()} >= trainable


def test_cached_training_step_matches_eval_mode_uncached():
    """With dropout off, one optimizer step on cached states equals one on the full model."""
    split = _split(8)
    results = []
    for use_cache in (False, True):
        s = get_strategy("top_k", k=1)
        model, trainable = _prepared("bert", s)
        opt = torch.optim.SGD([p for n, p in model.named_parameters() if n in trainable], lr=0.1)
        batch = D.collate(split, np.arange(8), 0)
        if use_cache:
            plan = caching.plan_cache(find_parts(model), trainable, False)
            cache = caching.FrozenPrefixCache(find_parts(model), plan, torch.device("cpu"))
            cache.build({"train": split}, 0, 4)
            cache.install()
            cache.set_batch("train", np.arange(8), batch["input_ids"].shape[1])
        model.eval()  # tiny models have dropout off; eval keeps both paths deterministic
        model(**batch).loss.backward()
        opt.step()
        if use_cache:
            cache.uninstall()
        results.append(
            {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
        )
    for n in results[0]:
        torch.testing.assert_close(results[0][n], results[1][n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,params,why",
    [
        ("full", {}, "embeddings"),
        ("lora", {}, "embeddings or the first block"),
        ("gradual_unfreezing", {}, "unfreezes"),
        ("prompt_tuning", {}, "outside"),
    ],
)
def test_caching_refused_when_the_bottom_trains(name, params, why):
    s = get_strategy(name, **params)
    model, trainable = _prepared("bert", s)
    changes = any(cb.changes_trainable_set() for cb in s.callbacks())
    plan = caching.plan_cache(find_parts(model), trainable, changes)
    assert isinstance(plan, str) and why in plan


def test_electra_projection_is_refused():
    model, trainable = _prepared("electra", get_strategy("head_only"))
    plan = caching.plan_cache(find_parts(model), trainable, False)
    assert isinstance(plan, str) and "embeddings_project" in plan
