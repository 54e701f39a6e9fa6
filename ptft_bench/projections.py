"""The roles of a block's Linear layers (query, key, value, attention output, FFN in / out).

LoRA-family methods, IA3 and bottleneck adapters name what they adapt by role, so the same
strategy config means the same thing on BERT, RoBERTa, DistilBERT (absent from peft's own
per-architecture table), ELECTRA and DeBERTa-v2. Roles are found by shape and order, not by
per-architecture tables.
"""

from __future__ import annotations

from torch import nn

from ptft_bench.model_parts import ModelParts

# Roles a `targets` entry may name; anything else is a module-name suffix.
ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
ALL_LINEAR = "all-linear"
# Leaf names of the q/k/v projections: BERT `query`, DistilBERT `q_lin`, DeBERTa-v2 `query_proj`.
_QKV_TOKENS = {"query": {"q", "query"}, "key": {"k", "key"}, "value": {"v", "value"}}
# Every leaf-name token that marks a q/k/v projection (shared with the FLOPs count).
QKV_LEAF_TOKENS = frozenset(t for tokens in _QKV_TOKENS.values() for t in tokens)


def find_projections(parts: ModelParts) -> dict[str, list[str]]:
    """Qualified names of each block's Linear layers by role, found by shape and order.

    `ffn_in` maps hidden -> intermediate, `ffn_out` intermediate -> hidden; `attn_out` is the last
    hidden -> hidden Linear before `ffn_in` (the attention output projection in every encoder
    here); `query` / `key` / `value` are recognised by leaf name (`query`, `q_lin`, `query_proj`).
    """
    hidden = parts.backbone.config.hidden_size
    names = {id(m): n for n, m in parts.model.named_modules()}
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    for block in parts.blocks:
        for role, leaf_names in _block_roles(block, hidden).items():
            roles[role] += [f"{names[id(block)]}.{n}" for n in leaf_names]
    return roles


def _block_roles(block: nn.Module, hidden: int) -> dict[str, list[str]]:
    linears = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]
    square = [(n, m) for n, m in linears if m.in_features == m.out_features == hidden]
    ffn_in = [n for n, m in linears if m.in_features == hidden and m.out_features != hidden]
    ffn_out = [n for n, m in linears if m.out_features == hidden and m.in_features != hidden]
    found = {"ffn_in": ffn_in, "ffn_out": ffn_out}
    for role, tokens in _QKV_TOKENS.items():
        found[role] = [n for n, _ in square if n.split(".")[-1].split("_")[0] in tokens]
    qkv = {n for r in _QKV_TOKENS for n in found[r]}
    order = [n for n, _ in linears]
    cut = order.index(ffn_in[0]) if ffn_in else len(order)
    out = [n for n, _ in square if n not in qkv and order.index(n) < cut]
    found["attn_out"] = out[-1:]
    return found


def resolve_targets(parts: ModelParts, targets: tuple[str, ...]) -> list[str]:
    """Qualified module names for `targets` (roles, "all-linear" or module-name suffixes)."""
    roles = find_projections(parts)
    model = parts.model
    head = tuple(parts.head)
    out: list[str] = []
    for t in targets:
        if t == ALL_LINEAR:
            # Every Linear in the blocks: peft's own "all-linear" also catches DistilBERT's
            # `pre_classifier`, which then clashes with modules_to_save.
            hits = [n for r in ROLES for n in roles[r]]
            hits += [
                n
                for n, m in model.named_modules()
                if isinstance(m, nn.Linear)
                and n.startswith(parts.blocks_prefix + ".")
                and n not in hits
            ]
        elif t in roles:
            hits = roles[t]
        else:
            hits = [
                n
                for n, m in model.named_modules()
                if (n == t or n.endswith("." + t)) and not n.startswith(head)
            ]
        if not hits:
            raise ValueError(
                f"target {t!r} matches no module of {type(model).__name__}; use one of "
                f"{', '.join(ROLES)}, {ALL_LINEAR!r} or a module-name suffix"
            )
        out += [h for h in hits if h not in out]
    return out
