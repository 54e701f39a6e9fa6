"""The matmuls of one unit of a training step: a Linear-like layer or a peft layer.

`ptft_bench.cost.flops` models a step as units run in forward order (see its opening comment); this
module reads the units off a model (`units`, `in_forward_order`) and gives each unit's
multiply-adds per row (`unit_cost`), for plain Linear layers, GPT-2's `Conv1D` and every peft
layer type modelled: LoRA / AdaLoRA (and DoRA), LoHa, LoKr, OFT, VeRA and IA3.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import nn

from ptft_bench.models.parts import linear_dims, param_count


class Cost(NamedTuple):
    """Multiply-adds per row (forward, input gradient, weight gradient) and FLOPs once per pass."""

    fwd: int = 0
    dx: int = 0
    dw: int = 0
    pass_fwd: float = 0.0
    pass_bwd: float = 0.0


class Walk:
    """The trainable parameters, and whether the activations reached so far need a gradient."""

    def __init__(self, trainable: set[int]) -> None:
        self.trainable = trainable
        self.grad = False

    def trains(self, module: nn.Module, recurse: bool = True) -> bool:
        return any(id(p) in self.trainable for p in module.parameters(recurse=recurse))

    def feeds(self, unit: nn.Module) -> bool:
        """Whether a unit of `units` trains: a matmul unit in any part, a holder in its own."""
        return self.trains(unit, recurse=is_matmul(unit))

    def has(self, tensor: torch.Tensor | nn.Module) -> bool:
        t = tensor.weight if isinstance(tensor, nn.Module) else tensor
        return id(t) in self.trainable


def is_matmul(module: nn.Module) -> bool:
    """A matmul unit: a Linear-like layer (`nn.Linear`, `Conv1D`) or a peft layer, taken whole."""
    return linear_dims(module) is not None or isinstance(module, peft_types()["tuner"])


def units(module: nn.Module, prefix: str = "", skip: list[nn.Module] = ()):
    """(name, module) of the matmul units and other parameter holders, in registration order.

    A unit is a Linear-like or a peft layer (taken whole); of a peft `modules_to_save` wrapper
    only the copy that runs. `in_forward_order` puts them in the order they run.
    """
    if any(module is s for s in skip):
        return
    if is_matmul(module):
        yield prefix, module
        return
    if isinstance(module, peft_types()["save"]):
        active = module.active_adapters
        inner = module.modules_to_save[active[0]] if active else module.original_module
        yield from units(inner, prefix, skip)
        return
    if any(True for _ in module.parameters(recurse=False)):
        yield prefix, module  # norms, embeddings: no matmul, but they may train
    for name, child in module.named_children():
        yield from units(child, f"{prefix}.{name}" if prefix else name, skip)


def in_forward_order(
    found: list[tuple[str, nn.Module]], order: dict[int, int]
) -> list[tuple[str, nn.Module]]:
    """`found` sorted by when each unit first ran (`ModelParts.order`; empty: keep as is).

    Registration order is not forward order everywhere: Llama's blocks register their norms after
    the MLP. A peft layer runs when its base layer did; a module added after the order was taken
    (a bottleneck adapter's projections) runs right after the unit before it.
    """
    if not order:
        return found
    keyed, last = [], -1
    for i, (name, module) in enumerate(found):
        pos = order.get(id(module))
        if pos is None and hasattr(module, "get_base_layer"):
            pos = order.get(id(module.get_base_layer()))
        last = last if pos is None else pos
        keyed.append((last, i, name, module))
    return [(name, module) for _, _, name, module in sorted(keyed, key=lambda k: k[:2])]


def unit_cost(module: nn.Module, x_grad: bool, walk: Walk) -> Cost:
    """Multiply-adds per row of a Linear-like or peft layer; its input needs a gradient if `x_grad`."""
    if isinstance(module, peft_types()["tuner"]):
        return tuner_cost(module, x_grad, walk)
    if linear_dims(module) is not None:
        n = param_count(module.weight)
        return Cost(n, n * x_grad, n * walk.has(module.weight))
    return Cost()


def tuner_cost(m: nn.Module, x_grad: bool, walk: Walk) -> Cost:
    """A peft layer: the frozen base weight plus each active adapter's matmuls."""
    peft = peft_types()
    base = m.get_base_layer()
    n = param_count(base.weight)
    # OFT rotates, and feed-forward IA3 scales, the base weight's input with trainable values
    scaled_input = walk.trains(m) and (
        isinstance(m, peft["oft"]) or (isinstance(m, peft["ia3"]) and m.is_feedforward)
    )
    total = Cost(n, n * (x_grad or scaled_input), n * walk.has(base.weight))
    cost_of = next((f for kind, f in _ADAPTER_COSTS if isinstance(m, peft[kind])), None)
    for adapter in m.active_adapters if cost_of else ():
        total = Cost(*(a + b for a, b in zip(total, cost_of(m, adapter, x_grad, walk))))
    if cost_of is None and not isinstance(m, peft["ia3"]):
        # a method modelled nowhere here (via the generic `peft` strategy): its trainable
        # matrices, as if applied to every row like LoRA's factors; its weight products are missed
        own = [p for p in m.parameters() if p.ndim >= 2 and walk.has(p) and p is not base.weight]
        k = sum(p.numel() for p in own)
        total = Cost(total.fwd + k, total.dx + k, total.dw + k)
    return total


def _lora_cost(m: nn.Module, a: str, x_grad: bool, walk: Walk) -> Cost:
    """LoRA / AdaLoRA: B(A x); DoRA adds a weight norm per pass (and a second base matmul)."""
    if a not in m.lora_A:
        return Cost()
    lora_a, lora_b = m.lora_A[a], m.lora_B[a]
    na, nb = _numel(lora_a), _numel(lora_b)
    a_trains = walk.has(lora_a)
    cost = Cost(
        na + nb, na * x_grad + nb * (x_grad or a_trains), na * a_trains + nb * walk.has(lora_b)
    )
    if getattr(m, "use_dora", {}).get(a):
        n, width = param_count(m.get_base_layer().weight), m.in_features
        # the norm of W + BA: B(A I) on an identity of the input width, no gradient (detached)
        cost = cost._replace(pass_fwd=2 * width * (na + nb))
        drop = m.lora_dropout[a]
        if isinstance(drop, nn.Dropout) and drop.p > 0:  # dropped input: base applied again
            cost = cost._replace(fwd=cost.fwd + n, dx=cost.dx + n * x_grad)
    return cost


def _delta_weight_cost(m: nn.Module, a: str, x_grad: bool, walk: Walk) -> Cost:
    """LoHa / LoKr: a full-size delta weight built once per pass, applied to the input."""
    n = param_count(m.get_base_layer().weight)
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
    return Cost(n, n * x_grad, n * trains, once, back)


def _oft_cost(m: nn.Module, a: str, x_grad: bool, walk: Walk) -> Cost:
    """OFT: block-diagonal rotation of the input (Cayley-Neumann series once per pass)."""
    if a not in m.oft_R:
        return Cost()
    rot = m.oft_R[a]
    per_row = m.in_features * rot.block_size
    trains = walk.trains(rot)
    once = 0.0
    if rot.use_cayley_neumann and rot.num_cayley_neumann_terms > 2:
        products = max(2, rot.num_cayley_neumann_terms - 2)
        once = products * 2 * rot.weight.shape[0] * rot.block_size**3
    return Cost(per_row, per_row * x_grad, per_row * trains, once, 2 * once * trains)


def _vera_cost(m: nn.Module, a: str, x_grad: bool, walk: Walk) -> Cost:
    """VeRA: frozen random projections B(d * (A x)); only the scaling vectors train."""
    if a not in m.vera_lambda_d:
        return Cost()
    na, nb = m.r[a] * m.in_features, m.out_features * m.r[a]
    d_trains = walk.has(m.vera_lambda_d[a])
    return Cost(na + nb, na * x_grad + nb * (x_grad or d_trains), 0)


def penalty_flops(model: nn.Module, walk: Walk) -> float:
    """AdaLoRA adds |A A^T - I| + |B^T B - I| of every adapted layer to the loss, every step."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, peft_types()["adalora"]):
            for a in (a for a in m.active_adapters if a in m.lora_A):
                rank = m.lora_A[a].shape[0]
                products = 2 * rank * (m.lora_A[a].numel() + m.lora_B[a].numel())
                total += products * (1 + 2 * walk.trains(m))
    return total


def _numel(t: torch.Tensor | nn.Module) -> int:
    # a 4-bit weight stores two values per byte: the matmul is over its logical shape
    return param_count(t.weight if isinstance(t, nn.Module) else t)


_ADAPTER_COSTS = (  # the first matching kind (AdaLoRA's layer is a LoRA layer)
    ("lora", _lora_cost),
    ("loha", _delta_weight_cost),
    ("lokr", _delta_weight_cost),
    ("oft", _oft_cost),
    ("vera", _vera_cost),
)


@functools.cache
def peft_types() -> dict[str, Any]:
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
