"""Each strategy's declared capabilities (`Strategy.capabilities`, which the report's answer
prints) match what the strategy does on tiny models:

- ``mergeable`` ⇔ `merged(model)` returns a model whose logits equal the unmerged one's (1e-4),
  after the trained weights were moved off their (often identity) initialisation;
- ``quantized_base`` ⇔ `supports_quantization("nf4")` is None;
- ``multi_adapter`` ⇔ no base parameter (outside the task head and pooler) is among the ones
  the strategy trains over the whole run, and a training step leaves the base bit-identical;
- ``decoders``: True ⇔ `supports` accepts every tiny decoder family, False ⇔ none, a text ⇔
  some but not all (BitFit refuses the bias-free Llama, LoHa / LoKr / OFT refuse GPT-2);
- ``serving``: "merges" ⇔ mergeable; "same model" ⇔ the parameters outside the head are the
  base's own (none added, none replaced); "adds tokens" ⇔ a peft prompt-learning method.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import DECODERS, tiny_batch, tiny_model

from ptft_bench.models.parts import find_parts
from ptft_bench.strategy.layers import head_prefixes, in_any
from ptft_bench.strategy.registry import (
    ADDS_TOKENS,
    MERGES,
    SAME_MODEL,
    SERVING,
    get_strategy,
    list_strategies,
    strategy_class,
)

NAMES = [i.name for i in list_strategies()]
ARCHES = ("bert", "llama")
KEYS = ("serving", "mergeable", "quantized_base", "multi_adapter", "decoders")


def prepared(name: str, arch: str):
    """(strategy, applied model, ids of the base parameters) with the trained weights moved."""
    model = tiny_model(arch)
    heads = head_prefixes(find_parts(model), True)
    base = {id(p) for n, p in model.named_parameters() if not in_any(n, heads)}
    strategy = get_strategy(name)
    model = strategy.apply(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for _, p in strategy.trainable_named_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    return strategy, model.eval(), base


def skip_unsupported(name: str, arch: str) -> None:
    reason = strategy_class(name).supports(tiny_model(arch))
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_well_formed(name):
    caps = strategy_class(name).capabilities()
    assert tuple(caps) == KEYS
    assert caps["serving"] in SERVING
    assert (caps["serving"] == MERGES) == caps["mergeable"]
    assert all(isinstance(caps[k], bool) for k in ("mergeable", "quantized_base", "multi_adapter"))
    assert caps["decoders"] in (True, False) or (
        isinstance(caps["decoders"], str) and caps["decoders"]
    )


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", NAMES)
def test_mergeable_iff_merging_keeps_the_logits(name, arch):
    skip_unsupported(name, arch)
    strategy, model, _ = prepared(name, arch)
    merged = strategy.merged(model)
    batch = {k: v for k, v in tiny_batch().items() if k != "labels"}
    equal = False
    if merged is not None:
        with torch.no_grad():
            gap = (model(**batch).logits - merged.eval()(**batch).logits).abs().max().item()
        equal = gap <= 1e-4
    assert equal == strategy_class(name).capabilities()["mergeable"]


@pytest.mark.parametrize("name", NAMES)
def test_quantized_base_iff_nf4_is_supported(name):
    cls = strategy_class(name)
    assert cls.capabilities()["quantized_base"] == (cls.supports_quantization("nf4") is None)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", NAMES)
def test_multi_adapter_iff_the_base_is_never_trained(name, arch):
    skip_unsupported(name, arch)
    strategy, model, base = prepared(name, arch)
    trains_base = any(id(p) in base for _, p in strategy.trainable_named_parameters(model))
    declared = strategy_class(name).capabilities()["multi_adapter"]
    assert declared == (not trains_base)
    if declared and strategy.trains_by_gradient:
        params = {id(p): p for p in model.parameters()}
        before = {i: params[i].detach().clone() for i in base if i in params}
        optimizer = torch.optim.AdamW(strategy.param_groups(model, lr=1e-2))
        model.train()
        model(**tiny_batch()).loss.backward()
        optimizer.step()
        assert all(torch.equal(params[i], t) for i, t in before.items())


@pytest.fixture(scope="module")
def decoders():
    return {arch: tiny_model(arch) for arch in DECODERS}


@pytest.mark.parametrize("name", NAMES)
def test_decoders_declares_what_supports_decides(name, decoders):
    cls = strategy_class(name)
    accepted = [arch for arch, m in decoders.items() if cls.supports(m) is None]
    declared = cls.capabilities()["decoders"]
    if declared is True:
        assert accepted == list(DECODERS)
    elif declared is False:
        assert accepted == []
    else:  # a restriction: some decoder families run it, some refuse it
        assert 0 < len(accepted) < len(DECODERS), accepted


def test_bitfit_runs_on_decoders_with_biases_only(decoders):
    bitfit = strategy_class("bitfit")
    assert bitfit.capabilities()["decoders"] == "only with biases"
    assert bitfit.supports(decoders["gpt2"]) is None
    assert "no bias terms" in bitfit.supports(decoders["llama"])  # SmolLM2 is a Llama


@pytest.mark.parametrize("name", NAMES)
def test_serving_says_what_the_served_model_runs(name):
    skip_unsupported(name, "bert")
    before = tiny_model("bert")
    heads = head_prefixes(find_parts(before), True)
    shapes = {n: p.shape for n, p in before.named_parameters() if not in_any(n, heads)}
    strategy, model, _ = prepared(name, "bert")
    after = {n: p.shape for n, p in model.named_parameters() if not in_any(n, heads)}
    config = getattr(model, "active_peft_config", None)
    serving = strategy_class(name).capabilities()["serving"]
    assert (serving == SAME_MODEL) == (after == shapes)
    assert (serving == ADDS_TOKENS) == bool(config is not None and config.is_prompt_learning)


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning", "vera"])
def test_generic_peft_takes_its_method_s_capabilities(method):
    generic = strategy_class("peft").capabilities({"method": method})
    assert generic == strategy_class(method).capabilities()


def test_generic_peft_without_a_shortcut_claims_no_merge():
    caps = strategy_class("peft").capabilities({"method": "boft"})
    assert caps["serving"] == "adds layers" and caps["mergeable"] is False
