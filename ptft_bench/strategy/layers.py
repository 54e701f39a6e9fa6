"""Layer numbering, freezing and layer-wise learning-rate groups, shared by the strategies.

Layers are numbered as in `ModelParts.layer_of`: 0 = embeddings, 1..L = transformer blocks
(bottom to top), L + 1 = task head (classifier, and the pooler). A decoder's final norm (GPT-2's
`ln_f`, Llama's `norm`), which runs after the blocks, is layer L: it trains with the top block.
Other backbone parameters outside both the embeddings module and the blocks (ELECTRA's
`embeddings_project`, GPT-2's and OPT's position embeddings, DeBERTa-v2's relative-position
embeddings and their LayerNorm, shared by every block) count as layer 0: they feed the first
block, so they belong with the lowest layer, as in timm's layer-decay grouping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from ptft_bench.models.parts import ModelParts
from ptft_bench.strategy.registry import decay_groups

NamedParams = list[tuple[str, nn.Parameter]]


def layer_index(parts: ModelParts, name: str) -> int:
    """0 (embeddings and other backbone parameters below the blocks) .. L (top block), L+1 head."""
    layer = parts.layer_of(name)
    if layer is not None:
        return layer
    # Not embeddings, not a block, not head: a backbone parameter outside the blocks (see the
    # module docstring). Anything else would be a model this finder does not understand.
    backbone_prefix = parts.embeddings_prefix.rsplit(".", 1)[0]
    if name.startswith(backbone_prefix + "."):
        return 0
    raise ValueError(f"cannot place parameter {name!r} in a layer (not in the backbone or head)")


def head_prefixes(parts: ModelParts, train_pooler: bool = True) -> list[str]:
    """Qualified names of the head modules: classifier modules, plus the pooler(s) if asked.

    A pooler is whichever head-side module has "pool" in its name: BERT's pooler sits in the
    backbone (`parts.pooler`), DeBERTa-v2's `ContextPooler` sits beside the classifier.
    """
    prefixes = [n for n in parts.head if train_pooler or "pool" not in n.rsplit(".", 1)[-1]]
    if train_pooler and parts.pooler is not None:
        prefixes.append(parts.pooler[0])
    return prefixes


def in_any(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def set_trainable(model: nn.Module, predicate: Callable[[str, nn.Parameter], bool]) -> None:
    """requires_grad = predicate(name, param) for every parameter (a tied tensor: any name)."""
    keep: set[int] = set()
    for n, p in model.named_parameters(remove_duplicate=False):
        if predicate(n, p):
            keep.add(id(p))
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def top_layers_predicate(
    parts: ModelParts,
    k: int,
    *,
    train_pooler: bool = True,
    train_embeddings: bool = False,
) -> Callable[[str, nn.Parameter], bool]:
    """Predicate for "head + top k blocks (+ embeddings)"; `k` larger than the depth raises."""
    check_k(k, parts)
    heads = head_prefixes(parts, train_pooler)
    L = parts.num_layers
    names = (n for n, _ in parts.model.named_parameters(remove_duplicate=False))
    layers = {n: layer_index(parts, n) for n in names}
    # Without the pooler the pooler's layer index (L+1) must not switch it on: test head prefixes.
    pooler_names = {n for n in layers if layers[n] == L + 1 and not in_any(n, heads)}

    def predicate(name: str, _p: nn.Parameter) -> bool:
        layer = layers[name]
        if name in pooler_names:
            return False
        if layer == L + 1:
            return True
        if layer == 0:
            return train_embeddings
        return layer > L - k

    return predicate


def check_k(k: int, parts: ModelParts, name: str = "k") -> None:
    if not 0 <= k <= parts.num_layers:
        raise ValueError(
            f"{name}={k} is out of range for this model: it has {parts.num_layers} layers, "
            f"so {name} must be in [0, {parts.num_layers}]"
        )


def layerwise_groups(
    parts: ModelParts,
    named_params: NamedParams,
    lr: float,
    weight_decay: float,
    decay: float,
    head_lr_multiplier: float = 1.0,
) -> list[dict[str, Any]]:
    """One decayed and one non-decayed group per layer with lr scaled by depth.

    Block l (1..L) gets `lr * decay**(L - l)`, the embeddings `lr * decay**L` and the head
    `lr * head_lr_multiplier`. Each group carries `layer` (its index), so that loggers and
    tests can tell them apart; torch optimizers keep unknown group keys untouched.
    """
    L = parts.num_layers
    by_layer: dict[int, NamedParams] = {}
    for n, p in named_params:
        by_layer.setdefault(layer_index(parts, n), []).append((n, p))
    groups: list[dict[str, Any]] = []
    for layer in sorted(by_layer):
        scale = head_lr_multiplier if layer == L + 1 else decay ** (L - layer)
        groups += decay_groups(by_layer[layer], lr * scale, weight_decay, layer=layer)
    return groups


def check_range(name: str, value: float, lo: float, hi: float | None, lo_open: bool = True) -> None:
    """Raise ValueError naming `name`, `value` and the allowed range."""
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = hi is None or value <= hi
    if not (ok_lo and ok_hi):
        left = "(" if lo_open else "["
        right = f"{hi}]" if hi is not None else "inf)"
        raise ValueError(f"{name} must be in {left}{lo}, {right}, got {value!r}")
