"""FLOPs: a per-step count of training work that matches torch's FlopCounterMode.

Cheap enough to run every step (`FlopsMeter`), structural (read from the model and its peft
config, never from a strategy name), and refereed: tests/test_flops_referee.py compares it with
`torch.utils.flop_counter.FlopCounterMode` for every registered strategy on every tiny
architecture. The model of the count is the comment block below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from ptft_bench.cost.flops_units import (
    Cost,
    Walk,
    in_forward_order,
    is_matmul,
    peft_types,
    penalty_flops,
    unit_cost,
    units,
)
from ptft_bench.models.parts import ModelParts, find_parts, is_norm, unique_named_parameters
from ptft_bench.models.pooling import is_decoder
from ptft_bench.models.projections import qkv_of_leaf
from ptft_bench.strategy.callbacks import TrainCallback, TrainState

# --- FLOPs ------------------------------------------------------------------------------------
#
# One training step of B sequences padded to T positions, counted as torch's FlopCounterMode
# counts: matmuls only, 2 FLOPs per multiply-add. Elementwise work (norms, activations, softmax,
# IA3's scalings, the optimizer step) and embedding lookups are not counted.
#
# Every matmul unit (a Linear, GPT-2's Conv1D, or a peft layer: its frozen base weight plus the
# adapter's matmuls) runs on the rows it sees: the blocks, what runs before them (ELECTRA's
# embeddings_project) and after them (a decoder's final norm, OPT's project_out) see B * S rows,
# S = T + P_in with P_in the virtual tokens that prompt tuning and p-tuning prepend to the input;
# an encoder's head reads one position per sequence (B rows), a decoder's head (`score`) runs on
# every position and its logits are read at the last real token (B * S rows), as a causal LM's
# output projection over the vocabulary does on every position (B * S rows). Units are taken in
# forward order (`ModelParts.order`: Llama registers its norms after the MLP).
# Per row and unit, N being its weight's multiply-adds per row:
#   forward  = 2 N
#   backward = 2 N if its input needs a gradient (a trainable parameter or prompt lies below it
#              in the forward; parallel q/k/v projections do not feed one another)
#            + 2 N if its weight trains (the weight gradient).
# Activation gradients thus flow down to the lowest place a gradient is needed: the input for
# full fine-tuning, prompt tuning and p-tuning, every layer's attention for prefix tuning, the
# lowest trainable weight otherwise. Attention scores (QK^T and AV) cost 4 * S * K * d per
# sequence and block, d the attention width (query heads x head size: grouped-query attention
# repeats its key / value heads for every query head; Qwen3's heads may be wider than the hidden
# size), K = S + P_kv keys (P_kv: prefix tuning's key/value prefixes in every layer); backward,
# dQ, dK, dP and dV cost 2 * S * K * d each, as far as queries, keys and values need a gradient
# (a fused kernel, SDPA on GPU, computes all four at once). DeBERTa's
# disentangled attention adds its content-to-position and position-to-content scores (2 * S * 2k
# * d each per sequence, k relative positions each way) and projects its 2k relative-position
# embeddings once per forward pass. peft layers add their own matmuls: LoRA's and AdaLoRA's A
# and B, VeRA's frozen random projections, LoHa's and LoKr's full-size delta weight applied to
# the input, OFT's block rotation of the input; and once per forward pass their weight products
# (LoHa, LoKr's factors, OFT's Cayley-Neumann series, DoRA's weight norm; while LoRA dropout is
# on, DoRA also applies the base weight a second time). A prompt encoder runs on its virtual
# tokens once per step (p-tuning's MLP) or once per sequence (prefix tuning's projection).
# Blocks served from the frozen-prefix cache do not run per step (the embeddings still do, for
# the positions and masks the model derives from them, `ptft_bench.run.caching`);
# `prefix_forward_flops` counts the cache's one forward pass. Evaluation passes are not counted.
# peft methods modelled nowhere below (reachable through the generic `peft` strategy: BOFT,
# HRA, FourierFT, ...) count their base weights and trainable matrices only.


@dataclass
class StageFlops:
    """The matmul work of one stage (a block, the head, ...) in multiply-adds per row it sees."""

    fwd: int = 0  # forward
    dx: int = 0  # activation gradients (units whose input needs a gradient)
    dw: int = 0  # weight gradients (trainable matmul weights)
    pass_fwd: float = 0.0  # FLOPs once per forward pass, whatever the batch (weight products)
    pass_bwd: float = 0.0
    attention: bool = False  # a block: attention-score matmuls over its sequence
    # backward matmuls of the scores (dQ, dK, dP, dV: each as costly as half the forward), as
    # needed: a fused kernel (SDPA on GPU) computes all four once any of them is
    attention_bwd: int = 0
    rel_keys: int = 0  # DeBERTa: relative positions scored per query (c2p) plus per key (p2c)
    rel_bwd_keys: int = 0  # ... and in the backward (content and position sides as needed)

    def add(self, c: Cost, rows: int = 0) -> None:
        """Add a unit's cost: per row, or (rows > 0) for `rows` rows once per forward pass."""
        self.pass_fwd, self.pass_bwd = self.pass_fwd + c.pass_fwd, self.pass_bwd + c.pass_bwd
        if rows:
            self.pass_fwd += 2 * rows * c.fwd
            self.pass_bwd += 2 * rows * (c.dx + c.dw)
        else:
            self.fwd, self.dx, self.dw = self.fwd + c.fwd, self.dx + c.dx, self.dw + c.dw


@dataclass
class FlopsModel:
    """What a training step's FLOPs depend on, read once from the (possibly peft-wrapped) model."""

    stages: list[StageFlops]  # 0: the embeddings and what runs before the blocks; 1..L: blocks
    head: StageFlops  # one row per sequence (decoders: one per position)
    prompt: StageFlops  # peft's prompt encoder: `prompt_rows` rows per step or per sequence
    hidden: int  # attention width (query heads x head size)
    head_per_position: bool = False  # a decoder's score layer runs on every position
    prompt_tokens: int = 0  # P_in: virtual tokens prepended to the input
    prefix_tokens: int = 0  # P_kv: key/value prefixes in every attention layer
    prompt_rows: int = 0
    prompt_rows_per_sequence: bool = False
    loss_terms: float = 0.0  # FLOPs of terms added to the loss each step (AdaLoRA's penalty)

    @property
    def per_layer(self) -> list[int]:
        """Forward multiply-adds per token of each block."""
        return [s.fwd for s in self.stages[1:]]


def flops_model(
    model: nn.Module, trainable_names: set[str] | None = None, parts: ModelParts | None = None
) -> FlopsModel:
    """Read the FLOPs model off `model`; `trainable_names` overrides requires_grad."""
    parts = parts or find_parts(model)
    walk = Walk(
        {
            id(p)
            for n, p in model.named_parameters(remove_duplicate=False)
            if (p.requires_grad if trainable_names is None else n in trainable_names)
        }
    )
    fm = _prompt_model(model, walk)  # the prompt encoder, and where its output enters
    prompt_trains = walk.grad
    walk.grad = prompt_trains and fm.prompt_tokens > 0
    fm.stages = [_sequential(parts.embeddings, walk)]
    inside = [parts.embeddings, *parts.blocks, *parts.top.values()]
    inside += [parts.pooler[1]] if parts.pooler else []
    # e.g. ELECTRA's embeddings_project; DeBERTa's relative-position embeddings and their norm
    outside = list(units(parts.backbone, skip=inside))
    rel_grad = any(walk.feeds(m) for _, m in outside)
    for _, module in outside:
        fm.stages[0].add(unit_cost(module, walk.grad, walk))
        walk.grad = walk.grad or walk.feeds(module)
    kv_grad = prompt_trains and fm.prefix_tokens > 0
    config = parts.backbone.config
    # GPT-NeoX (Pythia), GPT-J, Falcon: attention and MLP read the same block input, side by side
    parallel = bool(getattr(config, "use_parallel_residual", False))
    for block in parts.blocks:
        fm.stages.append(_block_stage(block, walk, kv_grad, rel_grad, parts.order, parallel))
    for module in parts.top.values():  # the final norm: with the top block, on every position
        fm.stages[-1] = _sequential(module, walk, fm.stages[-1])
    heads = [*parts.head.values(), *parts.lm_head.values()]  # a causal LM: over the vocabulary
    for module in ([parts.pooler[1]] if parts.pooler else []) + heads:
        fm.head = _sequential(module, walk, fm.head)
    fm.hidden = attention_width(config)
    fm.head_per_position = is_decoder(config) or parts.is_causal_lm
    fm.loss_terms = penalty_flops(model, walk)
    return fm


def attention_width(config) -> int:
    """Query heads x head size (the hidden size unless the config says its own head size)."""
    heads, head_dim = getattr(config, "num_attention_heads", 0), getattr(config, "head_dim", 0)
    if heads and isinstance(head_dim, int) and head_dim > 0:
        return heads * head_dim
    return int(getattr(config, "hidden_size", 0) or 0)


def train_flops_per_step(
    fm: FlopsModel,
    batch_size: float,
    seq_len: float,
    first_cached_layer: int = 0,
    per_pass: bool = True,
) -> float:
    """FLOPs of one training step (forward + backward) on `batch_size` sequences of `seq_len`.

    `first_cached_layer`: bottom blocks served from the frozen-prefix cache (they do not run; the
    embeddings do). `per_pass=False` leaves out the work done once per forward pass.
    """
    s = seq_len + fm.prompt_tokens
    total = 0.0
    for i, st in enumerate(fm.stages):
        if 1 <= i <= first_cached_layer:
            continue
        total += _stage_flops(st, batch_size * s, per_pass)
        if st.attention:
            scores = 4 * batch_size * s * (s + fm.prefix_tokens) * fm.hidden
            rel = 2 * batch_size * s * (st.rel_keys + st.rel_bwd_keys) * fm.hidden
            total += scores * (1 + st.attention_bwd / 2) + rel
    total += _stage_flops(fm.head, batch_size * (s if fm.head_per_position else 1), per_pass)
    prompt_rows = fm.prompt_rows * (batch_size if fm.prompt_rows_per_sequence else 1)
    total += _stage_flops(fm.prompt, prompt_rows, per_pass)
    return total + (fm.loss_terms if per_pass else 0.0)


def train_flops_per_token(
    fm: FlopsModel, seq_len: float, first_cached_layer: int = 0, batch_size: float | None = None
) -> float:
    """FLOPs per position of a training step on sequences `seq_len` long.

    Work done once per step or forward pass is spread over `batch_size` sequences; None leaves
    it out (the limit of large batches).
    """
    b = batch_size or 1.0
    step = train_flops_per_step(fm, b, seq_len, first_cached_layer, batch_size is not None)
    return step / (b * seq_len)


def prefix_forward_flops(
    fm: FlopsModel, seq_len: float, cached_layers: int, batch_size: float | None = None
) -> float:
    """FLOPs per position of one forward pass through the embeddings and `cached_layers` blocks.

    Work done once per forward pass is spread over `batch_size` sequences; None leaves it out.
    """
    b, s = batch_size or 1.0, seq_len + fm.prompt_tokens
    total = 0.0
    for st in fm.stages[: cached_layers + 1]:
        total += 2 * b * s * st.fwd + (st.pass_fwd if batch_size is not None else 0.0)
        if st.attention:
            total += 4 * b * s * (s + fm.prefix_tokens) * fm.hidden
            total += 2 * b * s * st.rel_keys * fm.hidden
    return total / (b * seq_len)


def _stage_flops(st: StageFlops, rows: float, per_pass: bool) -> float:
    once = st.pass_fwd + st.pass_bwd if per_pass else 0.0
    return 2 * rows * (st.fwd + st.dx + st.dw) + once


# -- reading the model: units in forward order, and whether their input needs a gradient --------


def _sequential(module: nn.Module, walk: Walk, st: StageFlops | None = None) -> StageFlops:
    st = st or StageFlops()
    for _, unit in units(module):
        st.add(unit_cost(unit, walk.grad, walk))
        walk.grad = walk.grad or walk.feeds(unit)
    return st


def _qkv_roles(found: list[tuple[str, nn.Module]]) -> dict[str, str]:
    """Unit name -> "q", "k", "v" or "qkv" for a block's q/k/v projections (and Qwen3's q/k
    norms), as `ptft_bench.models.projections` names them: by leaf name, or the block's first matmul
    when none is named (GPT-2's fused c_attn). They read the block's input side by side, so a
    trainable query does not make the key's input need a gradient."""
    roles = {n: qkv_of_leaf(n.rsplit(".", 1)[-1]) for n, _ in found}
    matmuls = [n for n, m in found if is_matmul(m)]
    if matmuls and not any(roles[n] for n in matmuls):
        roles[matmuls[0]] = "qkv"
    return roles


def _block_stage(
    block: nn.Module,
    walk: Walk,
    kv_grad: bool,
    rel_grad: bool,
    order: dict[int, int],
    parallel: bool = False,
) -> StageFlops:
    """A block: q/k/v projections side by side on its input, attention, then the rest in order.

    With a parallel residual (GPT-NeoX) the MLP reads the block's input, not the attention's
    output: its branch starts at the first norm after the attention output projection.
    """
    st = StageFlops(attention=True)
    block_grad, attn_grad = walk.grad, None  # the input's and (parallel) the attention's
    attn_out = False  # the attention's output projection has run
    rel = _relative_attention(block)
    block_in: bool | None = None  # whether the q/k/v projections' input needs a gradient
    grads = {"q": False, "k": kv_grad, "v": kv_grad}  # ... and their outputs (prefix: keys/values)
    # whether DeBERTa's relative positions projected as queries / keys need a gradient
    pos = {"q": rel_grad, "k": rel_grad}
    found = in_forward_order(list(units(block)), order)
    roles = _qkv_roles(found)
    for name, module in found:
        role = roles[name]
        if rel is not None and not role and any(module is m for m in rel.module.children()):
            # DeBERTa's pos_key_proj / pos_query_proj: once per pass, on the 2k positions
            st.add(unit_cost(module, rel_grad, walk), rows=rel.rows)
            side = "k" if "key" in name.rsplit(".", 1)[-1] else "q"  # pos_key_proj: "k"
            pos[side] = pos[side] or walk.feeds(module)
            continue
        if not role:
            if parallel and attn_out and attn_grad is None and is_norm(module):
                attn_grad, walk.grad = walk.grad, block_grad  # the MLP branch's own norm
            st.add(unit_cost(module, walk.grad, walk))
            walk.grad = walk.grad or walk.feeds(module)
            attn_out = attn_out or (block_in is not None and is_matmul(module))
            continue
        block_in = walk.grad if block_in is None else block_in
        st.add(unit_cost(module, block_in, walk))
        if rel is not None and rel.share_att_key and role != "v":
            st.add(unit_cost(module, rel_grad, walk), rel.rows)  # weights built again
            pos[role] = pos[role] or walk.feeds(module)
        for r in role:
            grads[r] = grads[r] or block_in or walk.feeds(module)
        walk.grad = any(grads.values())
    if block_in is None:  # no q/k/v projection recognised: as if they all needed a gradient
        grads = dict.fromkeys(grads, walk.grad)
    walk.grad = walk.grad or bool(attn_grad)
    q, k, v = grads["q"], grads["k"], grads["v"]
    st.attention_bwd = q + k + (q or k) + v
    if rel is not None:
        st.rel_keys = rel.rows * (rel.c2p + rel.p2c)
        st.rel_bwd_keys = rel.rows * (rel.c2p * (q + pos["k"]) + rel.p2c * (k + pos["q"]))
    return st


class _Relative(NamedTuple):
    module: nn.Module
    rows: int  # relative-position embeddings projected per forward pass (2k)
    c2p: bool  # content-to-position scores (queries against relative positions)
    p2c: bool  # position-to-content scores (keys against relative positions)
    share_att_key: bool  # projected by the block's own query / key projections


def _relative_attention(block: nn.Module) -> _Relative | None:
    """DeBERTa's disentangled self-attention, read off its attributes (None elsewhere)."""
    for m in block.modules():
        if getattr(m, "relative_attention", False) and hasattr(m, "pos_ebd_size"):
            kinds = m.pos_att_type or ()
            share = bool(getattr(m, "share_att_key", False))
            return _Relative(m, 2 * m.pos_ebd_size, "c2p" in kinds, "p2c" in kinds, share)
    return None


def _prompt_model(model: nn.Module, walk: Walk) -> FlopsModel:
    """A FlopsModel holding only peft's prompt encoder and its virtual tokens (if any)."""
    fm = FlopsModel([], StageFlops(), StageFlops(), 0)
    configs = getattr(model, "peft_config", None)
    cfg = configs.get(getattr(model, "active_adapter", "default")) if configs else None
    if cfg is None or not getattr(cfg, "is_prompt_learning", False):
        return fm
    encoder = model.prompt_encoder[model.active_adapter]
    fm.prompt = _sequential(encoder, walk)
    tokens = cfg.num_virtual_tokens * (getattr(cfg, "num_transformer_submodules", 1) or 1)
    fm.prompt_rows = cfg.num_virtual_tokens
    walk.grad = walk.trains(encoder)
    # peft runs a prefix encoder for every sequence of the batch, other prompt encoders once.
    if cfg.peft_type == peft_types()["prefix"]:
        fm.prefix_tokens, fm.prompt_rows_per_sequence = tokens, True
    else:
        fm.prompt_tokens = tokens
    return fm


class FlopsMeter(TrainCallback):
    """Adds up training FLOPs step by step, with the trainable set in force at each step.

    Strategies that unfreeze layers during training (gradual unfreezing) pay for the backward
    pass through a layer only once it trains; a single estimate from the final trainable set
    would overcount their early steps. Put the meter first among the callbacks, so it sees the
    set that the step used before a strategy's callback changes it. A step is
    `train_flops_per_step` on the batch the loop reports (all processes together: work done once
    per forward pass is counted once per step).
    """

    def __init__(self, fm: FlopsModel, parts: ModelParts, first_cached_layer: int = 0):
        self.parts = parts
        self.first_cached_layer = first_cached_layer
        self._params = [p for _, p in unique_named_parameters(parts.model)]
        # the set the strategy trains now (gradual unfreezing: its currently unfrozen part)
        self._fm = fm
        self._signature = self._current()
        self.total = 0.0

    def _current(self) -> tuple[bool, ...]:
        return tuple(p.requires_grad for p in self._params)

    def on_step_end(self, state: TrainState) -> None:
        sig = self._current()
        if sig != self._signature:  # only strategies that unfreeze (never with the cache)
            self._fm = flops_model(self.parts.model, parts=self.parts)
            self._signature = sig
        if state.batch_width:
            batch = state.batch_positions / state.batch_width
            self.total += train_flops_per_step(
                self._fm, batch, state.batch_width, self.first_cached_layer
            )
