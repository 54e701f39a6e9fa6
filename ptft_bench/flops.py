"""FLOPs: a per-step count of training work that matches torch's FlopCounterMode.

Cheap enough to run every step (`FlopsMeter`), structural (read from the model and its peft
config, never from a strategy name), and refereed: tests/test_flops_referee.py compares it with
`torch.utils.flop_counter.FlopCounterMode` for every registered strategy on every tiny
architecture. The model of the count is the comment block below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ptft_bench.callbacks import TrainCallback, TrainState
from ptft_bench.model_parts import ModelParts, find_parts, unique_named_parameters
from ptft_bench.projections import QKV_LEAF_TOKENS

# --- FLOPs ------------------------------------------------------------------------------------
#
# One training step of B sequences padded to T positions, counted as torch's FlopCounterMode
# counts: matmuls only, 2 FLOPs per multiply-add. Elementwise work (norms, activations, softmax,
# IA3's scalings, the optimizer step) and embedding lookups are not counted.
#
# Every matmul unit (a Linear, or a peft layer: its frozen base weight plus the adapter's
# matmuls) runs on the rows it sees: the blocks, and what runs before them (ELECTRA's
# embeddings_project), see B * S rows, S = T + P_in with P_in the virtual tokens that prompt
# tuning and p-tuning prepend to the input; the head reads one position per sequence (B rows).
# Per row and unit, N being its weight's multiply-adds per row:
#   forward  = 2 N
#   backward = 2 N if its input needs a gradient (a trainable parameter or prompt lies below it
#              in the forward; parallel q/k/v projections do not feed one another)
#            + 2 N if its weight trains (the weight gradient).
# Activation gradients thus flow down to the lowest place a gradient is needed: the input for
# full fine-tuning, prompt tuning and p-tuning, every layer's attention for prefix tuning, the
# lowest trainable weight otherwise. Attention scores (QK^T and AV) cost 4 * S * K * d per
# sequence and block, K = S + P_kv keys (P_kv: prefix tuning's key/value prefixes in every
# layer); backward, dQ, dK, dP and dV cost 2 * S * K * d each, as far as queries, keys and
# values need a gradient (a fused kernel, SDPA on GPU, computes all four at once). DeBERTa's
# disentangled attention adds its content-to-position and position-to-content scores (2 * S * 2k
# * d each per sequence, k relative positions each way) and projects its 2k relative-position
# embeddings once per forward pass. peft layers add their own matmuls: LoRA's and AdaLoRA's A
# and B, VeRA's frozen random projections, LoHa's and LoKr's full-size delta weight applied to
# the input, OFT's block rotation of the input; and once per forward pass their weight products
# (LoHa, LoKr's factors, OFT's Cayley-Neumann series, DoRA's weight norm; while LoRA dropout is
# on, DoRA also applies the base weight a second time). A prompt encoder runs on its virtual
# tokens once per step (p-tuning's MLP) or once per sequence (prefix tuning's projection).
# Blocks served from the frozen-prefix cache, and the embeddings below them, do not run per
# step; `prefix_forward_flops` counts their one forward pass. Evaluation passes are not counted.
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

    def add(self, c: _Cost, rows: int = 0) -> None:
        """Add a unit's cost: per row, or (rows > 0) for `rows` rows once per forward pass."""
        self.pass_fwd, self.pass_bwd = self.pass_fwd + c.pass_fwd, self.pass_bwd + c.pass_bwd
        if rows:
            self.pass_fwd += 2 * rows * c.fwd
            self.pass_bwd += 2 * rows * (c.dx + c.dw)
        else:
            self.fwd, self.dx, self.dw = self.fwd + c.fwd, self.dx + c.dx, self.dw + c.dw


class _Cost(NamedTuple):
    fwd: int = 0
    dx: int = 0
    dw: int = 0
    pass_fwd: float = 0.0
    pass_bwd: float = 0.0


@dataclass
class FlopsModel:
    """What a training step's FLOPs depend on, read once from the (possibly peft-wrapped) model."""

    stages: list[StageFlops]  # 0: the embeddings and what runs before the blocks; 1..L: blocks
    head: StageFlops  # one row per sequence
    prompt: StageFlops  # peft's prompt encoder: `prompt_rows` rows per step or per sequence
    hidden: int  # attention width
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
    walk = _Walk(
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
    inside = [parts.embeddings, *parts.blocks] + ([parts.pooler[1]] if parts.pooler else [])
    # e.g. ELECTRA's embeddings_project; DeBERTa's relative-position embeddings and their norm
    outside = list(_units(parts.backbone, skip=inside))
    rel_grad = any(walk.feeds(m) for _, m in outside)
    for _, module in outside:
        fm.stages[0].add(_unit_cost(module, walk.grad, walk))
        walk.grad = walk.grad or walk.feeds(module)
    kv_grad = prompt_trains and fm.prefix_tokens > 0
    fm.stages += [_block_stage(block, walk, kv_grad, rel_grad) for block in parts.blocks]
    for module in ([parts.pooler[1]] if parts.pooler else []) + list(parts.head.values()):
        fm.head = _sequential(module, walk, fm.head)
    fm.hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
    fm.loss_terms = _penalty_flops(model, walk)
    return fm


def train_flops_per_step(
    fm: FlopsModel,
    batch_size: float,
    seq_len: float,
    first_cached_layer: int = 0,
    per_pass: bool = True,
) -> float:
    """FLOPs of one training step (forward + backward) on `batch_size` sequences of `seq_len`.

    `first_cached_layer`: bottom blocks served from the frozen-prefix cache (they and the
    embeddings do not run). `per_pass=False` leaves out the work done once per forward pass.
    """
    s = seq_len + fm.prompt_tokens
    total = 0.0
    for i, st in enumerate(fm.stages):
        if first_cached_layer and i <= first_cached_layer:
            continue
        total += _stage_flops(st, batch_size * s, per_pass)
        if st.attention:
            scores = 4 * batch_size * s * (s + fm.prefix_tokens) * fm.hidden
            rel = 2 * batch_size * s * (st.rel_keys + st.rel_bwd_keys) * fm.hidden
            total += scores * (1 + st.attention_bwd / 2) + rel
    total += _stage_flops(fm.head, batch_size, per_pass)
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


class _Walk:
    """The trainable parameters, and whether the activations reached so far need a gradient."""

    def __init__(self, trainable: set[int]) -> None:
        self.trainable = trainable
        self.grad = False

    def trains(self, module: nn.Module, recurse: bool = True) -> bool:
        return any(id(p) in self.trainable for p in module.parameters(recurse=recurse))

    def feeds(self, unit: nn.Module) -> bool:
        """Whether a unit of `_units` trains: a matmul unit in any part, a holder in its own."""
        return self.trains(unit, recurse=isinstance(unit, (nn.Linear, _peft_types()["tuner"])))

    def has(self, tensor: torch.Tensor | nn.Module) -> bool:
        t = tensor.weight if isinstance(tensor, nn.Module) else tensor
        return id(t) in self.trainable


def _units(module: nn.Module, prefix: str = "", skip: list[nn.Module] = ()):
    """(name, module) of the matmul units and other parameter holders in forward order.

    A unit is a Linear or a peft layer (taken whole); of a peft `modules_to_save` wrapper only
    the copy that runs. Registration order is forward order in the encoders here.
    """
    if any(module is s for s in skip):
        return
    peft = _peft_types()
    if isinstance(module, (nn.Linear, peft["tuner"])):
        yield prefix, module
        return
    if isinstance(module, peft["save"]):
        active = module.active_adapters
        inner = module.modules_to_save[active[0]] if active else module.original_module
        yield from _units(inner, prefix, skip)
        return
    if any(True for _ in module.parameters(recurse=False)):
        yield prefix, module  # norms, embeddings: no matmul, but they may train
    for name, child in module.named_children():
        yield from _units(child, f"{prefix}.{name}" if prefix else name, skip)


def _sequential(module: nn.Module, walk: _Walk, st: StageFlops | None = None) -> StageFlops:
    st = st or StageFlops()
    for _, unit in _units(module):
        st.add(_unit_cost(unit, walk.grad, walk))
        walk.grad = walk.grad or walk.feeds(unit)
    return st


# Leaf names of q/k/v projections (BERT `query`, DistilBERT `q_lin`, DeBERTa `query_proj`,
# Llama `q_proj`), as `ptft_bench.projections` recognises them: they read the block's input side
# by side, so a trainable query does not make the key's input need a gradient.
_QKV = QKV_LEAF_TOKENS


def _role_token(name: str) -> str:
    """The role (q, k or v) of a unit inside a q/k/v projection; empty for other units."""
    token = next((s.split("_")[0] for s in name.split(".") if s.split("_")[0] in _QKV), "")
    return token[:1]


def _block_stage(block: nn.Module, walk: _Walk, kv_grad: bool, rel_grad: bool) -> StageFlops:
    """A block: q/k/v projections side by side on its input, attention, then the rest in order."""
    st = StageFlops(attention=True)
    rel = _relative_attention(block)
    block_in: bool | None = None  # whether the q/k/v projections' input needs a gradient
    grads = {"q": False, "k": kv_grad, "v": kv_grad}  # ... and their outputs (prefix: keys/values)
    # whether DeBERTa's relative positions projected as queries / keys need a gradient
    pos = {"q": rel_grad, "k": rel_grad}
    for name, module in _units(block):
        role = _role_token(name)
        if rel is not None and not role and any(module is m for m in rel.module.children()):
            # DeBERTa's pos_key_proj / pos_query_proj: once per pass, on the 2k positions
            st.add(_unit_cost(module, rel_grad, walk), rows=rel.rows)
            side = _role_token(name.rsplit(".", 1)[-1].replace("_", "."))  # pos.key.proj: "k"
            pos[side] = pos.get(side, False) or walk.feeds(module)
            continue
        if not role:
            st.add(_unit_cost(module, walk.grad, walk))
            walk.grad = walk.grad or walk.feeds(module)
            continue
        block_in = walk.grad if block_in is None else block_in
        st.add(_unit_cost(module, block_in, walk))
        if rel is not None and rel.share_att_key and role != "v":
            st.add(_unit_cost(module, rel_grad, walk), rel.rows)  # weights built again
            pos[role] = pos[role] or walk.feeds(module)
        grads[role] = grads[role] or block_in or walk.feeds(module)
        walk.grad = any(grads.values())
    if block_in is None:  # no q/k/v projection recognised: as if they all needed a gradient
        grads = dict.fromkeys(grads, walk.grad)
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


def _prompt_model(model: nn.Module, walk: _Walk) -> FlopsModel:
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
    if cfg.peft_type == _peft_types()["prefix"]:
        fm.prefix_tokens, fm.prompt_rows_per_sequence = tokens, True
    else:
        fm.prompt_tokens = tokens
    return fm


# -- the matmuls of one unit ---------------------------------------------------------------------


def _unit_cost(module: nn.Module, x_grad: bool, walk: _Walk) -> _Cost:
    """Multiply-adds per row of a Linear or peft layer whose input needs a gradient if `x_grad`."""
    peft = _peft_types()
    if isinstance(module, peft["tuner"]):
        return _tuner_cost(module, x_grad, walk)
    if isinstance(module, nn.Linear):
        n = module.weight.numel()
        return _Cost(n, n * x_grad, n * walk.has(module.weight))
    return _Cost()


def _tuner_cost(m: nn.Module, x_grad: bool, walk: _Walk) -> _Cost:
    """A peft layer: the frozen base weight plus each active adapter's matmuls."""
    peft = _peft_types()
    base = m.get_base_layer()
    n = base.weight.numel()
    # OFT rotates, and feed-forward IA3 scales, the base weight's input with trainable values
    scaled_input = walk.trains(m) and (
        isinstance(m, peft["oft"]) or (isinstance(m, peft["ia3"]) and m.is_feedforward)
    )
    total = _Cost(n, n * (x_grad or scaled_input), n * walk.has(base.weight))
    cost_of = next((f for kind, f in _ADAPTER_COSTS if isinstance(m, peft[kind])), None)
    for adapter in m.active_adapters if cost_of else ():
        total = _Cost(*(a + b for a, b in zip(total, cost_of(m, adapter, x_grad, walk))))
    if cost_of is None and not isinstance(m, peft["ia3"]):
        # a method modelled nowhere here (via the generic `peft` strategy): its trainable
        # matrices, as if applied to every row like LoRA's factors; its weight products are missed
        own = [p for p in m.parameters() if p.ndim >= 2 and walk.has(p) and p is not base.weight]
        k = sum(p.numel() for p in own)
        total = _Cost(total.fwd + k, total.dx + k, total.dw + k)
    return total


def _lora_cost(m: nn.Module, a: str, x_grad: bool, walk: _Walk) -> _Cost:
    """LoRA / AdaLoRA: B(A x); DoRA adds a weight norm per pass (and a second base matmul)."""
    if a not in m.lora_A:
        return _Cost()
    lora_a, lora_b = m.lora_A[a], m.lora_B[a]
    na, nb = _numel(lora_a), _numel(lora_b)
    a_trains = walk.has(lora_a)
    cost = _Cost(
        na + nb, na * x_grad + nb * (x_grad or a_trains), na * a_trains + nb * walk.has(lora_b)
    )
    if getattr(m, "use_dora", {}).get(a):
        n, width = m.get_base_layer().weight.numel(), m.in_features
        # the norm of W + BA: B(A I) on an identity of the input width, no gradient (detached)
        cost = cost._replace(pass_fwd=2 * width * (na + nb))
        drop = m.lora_dropout[a]
        if isinstance(drop, nn.Dropout) and drop.p > 0:  # dropped input: base applied again
            cost = cost._replace(fwd=cost.fwd + n, dx=cost.dx + n * x_grad)
    return cost


def _delta_weight_cost(m: nn.Module, a: str, x_grad: bool, walk: _Walk) -> _Cost:
    """LoHa / LoKr: a full-size delta weight built once per pass, applied to the input."""
    n = m.get_base_layer().weight.numel()
    pairs = [("hada_w1_a", "hada_w1_b"), ("hada_w2_a", "hada_w2_b")]
    pairs += [("lokr_w1_a", "lokr_w1_b"), ("lokr_w2_a", "lokr_w2_b")]
    once = 0.0
    for left, right in pairs:
        if a in getattr(m, left, {}) and a in getattr(m, right, {}):
            lw, rw = getattr(m, left)[a], getattr(m, right)[a]
            once += 2 * lw.shape[0] * lw.shape[1] * rw.shape[1]
    trains = walk.trains(m)
    # LoHa's backward recomputes both products beside the four factor gradients: 3x forward
    back = (3 if hasattr(m, "hada_w1_a") else 2) * once * trains
    return _Cost(n, n * x_grad, n * trains, once, back)


def _oft_cost(m: nn.Module, a: str, x_grad: bool, walk: _Walk) -> _Cost:
    """OFT: block-diagonal rotation of the input (Cayley-Neumann series once per pass)."""
    if a not in m.oft_R:
        return _Cost()
    rot = m.oft_R[a]
    per_row = m.in_features * rot.block_size
    trains = walk.trains(rot)
    once = 0.0
    if rot.use_cayley_neumann and rot.num_cayley_neumann_terms > 2:
        products = max(2, rot.num_cayley_neumann_terms - 2)
        once = products * 2 * rot.weight.shape[0] * rot.block_size**3
    return _Cost(per_row, per_row * x_grad, per_row * trains, once, 2 * once * trains)


def _vera_cost(m: nn.Module, a: str, x_grad: bool, walk: _Walk) -> _Cost:
    """VeRA: frozen random projections B(d * (A x)); only the scaling vectors train."""
    if a not in m.vera_lambda_d:
        return _Cost()
    na, nb = m.r[a] * m.in_features, m.out_features * m.r[a]
    d_trains = walk.has(m.vera_lambda_d[a])
    return _Cost(na + nb, na * x_grad + nb * (x_grad or d_trains), 0)


def _penalty_flops(model: nn.Module, walk: _Walk) -> float:
    """AdaLoRA adds |A A^T - I| + |B^T B - I| of every adapted layer to the loss, every step."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, _peft_types()["adalora"]):
            for a in (a for a in m.active_adapters if a in m.lora_A):
                rank = m.lora_A[a].shape[0]
                products = 2 * rank * (m.lora_A[a].numel() + m.lora_B[a].numel())
                total += products * (1 + 2 * walk.trains(m))
    return total


def _numel(t: torch.Tensor | nn.Module) -> int:
    return (t.weight if isinstance(t, nn.Module) else t).numel()


_ADAPTER_COSTS = (  # the first matching kind (AdaLoRA's layer is a LoRA layer)
    ("lora", _lora_cost),
    ("loha", _delta_weight_cost),
    ("lokr", _delta_weight_cost),
    ("oft", _oft_cost),
    ("vera", _vera_cost),
)


@functools.cache
def _peft_types() -> dict[str, Any]:
    """peft's layer classes (imported on first use: peft is slow to import)."""
    from peft import PeftType
    from peft.tuners.adalora import AdaLoraLayer
    from peft.tuners.ia3 import IA3Layer
    from peft.tuners.loha import LoHaLayer
    from peft.tuners.lokr import LoKrLayer
    from peft.tuners.lora import LoraLayer
    from peft.tuners.oft import OFTLayer
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.tuners.vera import VeraLayer
    from peft.utils.other import ModulesToSaveWrapper

    return {
        "tuner": BaseTunerLayer,
        "save": ModulesToSaveWrapper,
        "prefix": PeftType.PREFIX_TUNING,
        "lora": LoraLayer,
        "adalora": AdaLoraLayer,
        "loha": LoHaLayer,
        "lokr": LoKrLayer,
        "oft": OFTLayer,
        "vera": VeraLayer,
        "ia3": IA3Layer,
    }


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
