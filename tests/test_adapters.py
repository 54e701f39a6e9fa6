"""Bottleneck adapters (strategies/adapters.py): counts, identity at init, what trains, saving."""

from __future__ import annotations

import copy

import pytest
import torch

from ptft_bench import get_strategy
from ptft_bench.models.parts import find_parts
from strategies.adapters import (
    VARIANTS,
    BottleneckAdapter,
    LinearRecordingInput,
    LinearWithAdapter,
    LinearWithParallelAdapter,
)
from tests.tiny_models import ARCHS, HIDDEN, tiny_batch, tiny_model


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_counts_match_adapterhub_on_minilm():
    from ptft_bench.models.load import load_classifier
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    base = load_classifier("minilm-l6", 2)
    expected = {"pfeiffer": 113_040, "houlsby": 226_080, "parallel": 113_040}
    for variant, count in expected.items():
        strategy = get_strategy("adapter", variant=variant, reduction_factor=16)
        model = strategy.apply(copy.deepcopy(base))
        named = strategy.trainable_named_parameters(model)
        # 6 layers x (384*24 + 24 + 24*384 + 384) per adapter; Houlsby has two per layer.
        assert sum(p.numel() for n, p in named if ".adapter." in n) == count, variant
        assert sum(p.numel() for n, p in named if n.startswith("classifier.")) == 384 * 2 + 2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_adapted_model_starts_as_the_base_model(arch, variant):
    batch = tiny_batch()
    base = _logits(tiny_model(arch), batch)
    adapted = get_strategy("adapter", variant=variant).apply(tiny_model(arch))
    torch.testing.assert_close(_logits(adapted, batch), base, rtol=0, atol=0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("train_layer_norms", [False, True])
def test_only_adapters_head_and_chosen_norms_train(variant, train_layer_norms):
    strategy = get_strategy("adapter", variant=variant, train_layer_norms=train_layer_norms)
    model = strategy.apply(tiny_model("distilbert"))
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    adapters = [m for m in model.modules() if isinstance(m, BottleneckAdapter)]
    assert len(adapters) == (6 if variant == "houlsby" else 3)
    for n in trainable:
        is_norm = "layer_norm" in n and n.startswith("distilbert.transformer.")
        assert (
            ".adapter." in n
            or n.startswith(("classifier.", "pre_classifier."))
            or (train_layer_norms and is_norm)
        ), n
    assert any("layer_norm" in n for n in trainable) == train_layer_norms

    # Two steps: the zero-initialised up-projection first moves, then the down-projection.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.AdamW(strategy.param_groups(model, lr=1e-2))
    for seed in range(2):
        model(**tiny_batch(seed=seed)).loss.backward()
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != (n in trainable), n


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_then_load_gives_identical_logits(variant):
    batch = tiny_batch()
    strategy = get_strategy("adapter", variant=variant, bottleneck=4)
    trained = strategy.apply(tiny_model("roberta"))
    opt = torch.optim.SGD(strategy.param_groups(trained, lr=0.5))
    trained.train()
    for _ in range(2):
        trained(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    state = strategy.trainable_state_dict(trained)
    fresh_strategy = get_strategy("adapter", **strategy.to_dict()["params"])
    fresh = fresh_strategy.apply(tiny_model("roberta"))
    assert not torch.equal(_logits(fresh, batch), _logits(trained, batch))
    fresh_strategy.load_trainable_state_dict(fresh, state)
    torch.testing.assert_close(_logits(fresh, batch), _logits(trained, batch), rtol=0, atol=0)


# where each variant's adapters sit in a decoder block: (wrapped module, wrapper class name)
DECODER_PLACEMENT = {
    "llama": {
        "houlsby": {"self_attn.o_proj": "LinearWithAdapter", "mlp.down_proj": "LinearWithAdapter"},
        "pfeiffer": {"mlp.down_proj": "LinearWithAdapter"},
        # the gated MLP's gate and up projections read the same input: the first one records it
        "parallel": {
            "mlp.gate_proj": "LinearRecordingInput",
            "mlp.down_proj": "LinearWithParallelAdapter",
        },
    },
    "gpt2": {  # Conv1D layers, wrapped like Linear ones
        "houlsby": {"attn.c_proj": "LinearWithAdapter", "mlp.c_proj": "LinearWithAdapter"},
        "pfeiffer": {"mlp.c_proj": "LinearWithAdapter"},
        "parallel": {"mlp.c_fc": "LinearRecordingInput", "mlp.c_proj": "LinearWithParallelAdapter"},
    },
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", list(DECODER_PLACEMENT))
def test_decoder_placement(arch, variant):
    model = get_strategy("adapter", variant=variant).apply(tiny_model(arch))
    block = find_parts(model).blocks[0]
    wrappers = (LinearWithAdapter, LinearRecordingInput, LinearWithParallelAdapter)
    wrapped = {n: type(m).__name__ for n, m in block.named_modules() if isinstance(m, wrappers)}
    assert wrapped == DECODER_PLACEMENT[arch][variant]


def test_train_layer_norms_trains_a_decoders_rmsnorms():
    strategy = get_strategy("adapter", train_layer_norms=True)
    model = strategy.apply(tiny_model("llama"))
    trained = {n for n, _ in strategy.trainable_named_parameters(model)}
    norms = {n for n, _ in model.named_parameters() if "layernorm" in n and ".layers." in n}
    assert norms and norms <= trained
    assert "model.norm.weight" not in trained  # the final norm is not in a block


def test_bottleneck_overrides_reduction_factor():
    strategy = get_strategy("adapter", variant="pfeiffer", bottleneck=5, activation="gelu")
    model = strategy.apply(tiny_model("bert"))
    count = sum(
        p.numel() for n, p in strategy.trainable_named_parameters(model) if ".adapter." in n
    )
    assert count == 3 * (HIDDEN * 5 + 5 + 5 * HIDDEN + HIDDEN)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"variant": "foo"}, ["'foo'", "houlsby", "pfeiffer", "parallel"]),
        ({"reduction_factor": 0}, ["reduction_factor"]),
        ({"bottleneck": 0}, ["bottleneck"]),
        ({"activation": "softplus"}, ["softplus", "relu"]),
        ({"size": 3}, ["size", "allowed"]),
    ],
)
def test_bad_parameters_are_named(params, words):
    with pytest.raises(ValueError) as err:
        get_strategy("adapter", **params)
    for w in words:
        assert w in str(err.value)
