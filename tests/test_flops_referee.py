"""Referee for the FLOPs model: torch's FlopCounterMode against `ptft_bench.cost.meters`, strategy by strategy.

For every registered strategy on every tiny architecture, one training step (forward + backward)
on a 4 x 12 batch is counted by `torch.utils.flop_counter.FlopCounterMode` and compared with what
the meter charges for that step (`FlopsMeter`, i.e. `train_flops_per_step(fm, 4, 12)`).
Both count matmuls only (mm, addmm, bmm, attention kernels): the optimizer step, norms,
activations, softmax, embedding lookups and IA3's scalings are elementwise and in neither.

Attention runs in eager mode: on CPU, PyTorch's fused SDPA kernel is not in FlopCounterMode's
table (it counts only the CUDA kernels), so its score matmuls would be invisible to the referee.

Every registered strategy runs on every tiny architecture, encoders and decoders (GPT-2's Conv1D
and fused q/k/v, grouped-query attention with SwiGLU's three matrices, tied and untied output
embeddings, Qwen3's attention wider than its hidden size, GPT-NeoX's parallel residual, a
decoder's score layer on every position); the variants run on the encoders and one decoder per
structural variety (`DECODER_SUBSET`: Mistral and Qwen2 repeat Llama's structure).
Strategies a model does not support (`supports(model)` gives the reason) are skipped with it.
Closed-form strategies (no gradient step) are refereed on the one forward pass they cost. The
frozen-prefix cache is refereed on its two halves: the one forward pass that builds it and a
training step of the uncached blocks.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForSequenceClassification

from ptft_bench.cost import flops
from ptft_bench.models.parts import find_parts
from ptft_bench.run.caching import FrozenPrefixCache, plan_cache
from ptft_bench.strategy.callbacks import TrainState
from ptft_bench.strategy.registry import get_strategy, list_strategies, strategy_class
from ptft_bench.tasks.encode import EncodedSplit
from tests.tiny_models import ARCHS, DECODER_SUBSET, ENCODERS, tiny_batch, tiny_config, tiny_model

BATCH, WIDTH = 4, 12
TOLERANCE = 0.10

# (strategy, arch) -> why the FLOPs model may differ from FlopCounterMode by more than TOLERANCE.
# Empty: every strategy and architecture is within it (most to the FLOP). Name a case and its
# reason here rather than widening the tolerance. Within it but not exact: LoRA with DoRA and
# dropout on GPT-2 (0.92: peft's DoRA runs one more base-size matmul per adapted Conv1D layer
# than on a Linear), and the closed-form linear probe (the head's share is left out).
KNOWN_GAPS: dict[tuple[str, str], str] = {}
VARIANT_ARCHS = ENCODERS + DECODER_SUBSET

STRATEGIES = [s.name for s in list_strategies()]
# Variants whose matmuls differ from the defaults' (the defaults run in the grid).
VARIANTS = [
    ("lora", {"use_dora": True}),  # weight norm per pass; the base weight applied twice
    ("lora", {"use_dora": True, "dropout": 0.0}),  # ... once without dropout
    ("lora", {"targets": ("all-linear",)}),  # DeBERTa: position projections adapted too
    ("adapter", {"variant": "houlsby"}),
    ("adapter", {"variant": "parallel"}),
    ("top_k", {"k": 1, "train_embeddings": True}),
    ("ia3", {"targets": ["ffn_out"]}),  # scales the FFN output's input: gradient at the base
    ("prefix_tuning", {"prefix_projection": True, "encoder_hidden_size": 16}),
    ("oft", {"targets": ["all-linear"]}),
    ("adalora", {"targets": ["all-linear"]}),
]


def _model(arch: str, **config) -> torch.nn.Module:
    if config:
        torch.manual_seed(0)
        cfg = tiny_config(arch)
        for k, v in config.items():
            setattr(cfg, k, v)
        model = AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = tiny_model(arch)
    model.set_attn_implementation("eager")
    return model


def _counted_step(model: torch.nn.Module, batch: dict) -> int:
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    return counter.get_total_flops()


def _referee(name: str, params: dict, arch: str, **config) -> None:
    model = _model(arch, **config)
    reason = strategy_class(name).supports(model)
    if reason:
        pytest.skip(reason)
    if (name, arch) in KNOWN_GAPS:
        pytest.skip(f"known gap: {KNOWN_GAPS[name, arch]}")
    strategy = get_strategy(name, **params)
    model = strategy.apply(model)
    parts = find_parts(model)
    fm = flops.flops_model(model, parts=parts)
    batch = tiny_batch(BATCH, WIDTH)
    if getattr(strategy, "trains_by_gradient", True):
        counted = _counted_step(model, batch)
        meter = flops.FlopsMeter(fm, parts)  # what a run records for this step
        meter.on_step_end(TrainState(model, None, batch_positions=BATCH * WIDTH, batch_width=WIDTH))
        charged = meter.total
    else:  # fitted on features of one forward pass (the head's share is left out)
        batch.pop("labels")
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(**batch)
        counted = counter.get_total_flops()
        layers = len(parts.blocks)
        charged = flops.prefix_forward_flops(fm, WIDTH, layers, batch_size=BATCH) * BATCH * WIDTH
    ratio = charged / counted
    assert abs(ratio - 1) <= TOLERANCE, (
        f"{name}{params or ''} on {arch}: FLOPs model {charged:,.0f}, FlopCounterMode "
        f"{counted:,} (ratio {ratio:.3f})"
    )


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", STRATEGIES)
def test_step_flops_match_flop_counter(name, arch):
    _referee(name, {}, arch)


@pytest.mark.parametrize("arch", VARIANT_ARCHS)
@pytest.mark.parametrize("name,params", VARIANTS, ids=lambda v: str(v))
def test_variant_flops_match_flop_counter(name, params, arch):
    _referee(name, params, arch)


@pytest.mark.parametrize("name", ["full", "lora", "loha", "oft", "adalora", "ia3"])
def test_deberta_shared_position_projections(name):
    """DeBERTa-v3 projects relative positions with the block's own query / key weights."""
    _referee(name, {}, "deberta_v2", share_att_key=True)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name,params", [("head_only", {}), ("top_k", {"k": 1})])
def test_cached_flops_match_flop_counter(name, params, arch):
    """The cache's one forward pass, and a training step of the blocks above it."""
    model = _model(arch)
    strategy = get_strategy(name, **params)
    model = strategy.apply(model)
    parts = find_parts(model)
    fm = flops.flops_model(model, parts=parts)
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    plan = plan_cache(parts, trainable, changes_trainable_set=False)
    if isinstance(plan, str):
        pytest.skip(f"no cache: {plan}")
    first = plan.first_trainable_block
    ids = tiny_batch(BATCH, WIDTH)["input_ids"].numpy()
    split = EncodedSplit(list(ids), None, torch.zeros(BATCH).numpy())
    cache = FrozenPrefixCache(parts, plan, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        cache.build({"train": split}, pad_id=0, batch_size=BATCH)
    built = flops.prefix_forward_flops(fm, WIDTH, first, batch_size=BATCH) * BATCH * WIDTH
    # the backbone's pooler runs in the build pass too (BERT): one row per sequence
    assert abs(built / counter.get_total_flops() - 1) <= TOLERANCE, (built, counter)

    cache.install()
    cache.set_batch("train", list(range(BATCH)), WIDTH)
    try:
        counted = _counted_step(model, tiny_batch(BATCH, WIDTH))
    except Exception as e:  # noqa: BLE001 - prepare_cache falls back to the uncached path too
        pytest.skip(f"the cached model does not run ({type(e).__name__}); training runs uncached")
    finally:
        cache.uninstall()
    charged = flops.train_flops_per_step(fm, BATCH, WIDTH, first)
    assert abs(charged / counted - 1) <= TOLERANCE, (name, arch, charged, counted)


# -- causal LMs (generation tasks): the LM head over the vocabulary on every position -----------
GENERATION_STRATEGIES = [
    s for s in STRATEGIES if strategy_class(s).supports_task("generation") is None
]


@pytest.mark.parametrize("arch", DECODER_SUBSET)
@pytest.mark.parametrize("name", GENERATION_STRATEGIES)
def test_causal_lm_step_flops_match_flop_counter(name, arch):
    """A generation step: the target-token loss needs logits over the vocabulary at every
    position, so the LM head's matmul (tied to the embeddings or not) is a large share."""
    from tests.tiny_models import tiny_causal_lm

    model = tiny_causal_lm(arch)
    model.set_attn_implementation("eager")
    reason = strategy_class(name).supports(model)
    if reason:
        pytest.skip(reason)
    strategy = get_strategy(name)
    model = strategy.apply(model)
    parts = find_parts(model)
    assert parts.is_causal_lm
    fm = flops.flops_model(model, parts=parts)
    batch = tiny_batch(BATCH, WIDTH)
    batch["labels"] = batch["input_ids"].clone()
    counted = _counted_step(model, batch)
    meter = flops.FlopsMeter(fm, parts)
    meter.on_step_end(TrainState(model, None, batch_positions=BATCH * WIDTH, batch_width=WIDTH))
    ratio = meter.total / counted
    assert abs(ratio - 1) <= TOLERANCE, (
        f"{name} on causal {arch}: FLOPs model {meter.total:,.0f}, FlopCounterMode {counted:,} "
        f"(ratio {ratio:.3f})"
    )
