"""The roles of a block's Linear layers (query, key, value, attention output, FFN in / out).

LoRA-family methods, IA3 and bottleneck adapters name what they adapt by role, so the same
strategy config means the same thing on every architecture: BERT, RoBERTa, DistilBERT (absent
from peft's own per-architecture table), ELECTRA, DeBERTa-v2, ModernBERT, GPT-2, GPT-NeoX,
Llama / Mistral / SmolLM2, Qwen2 / Qwen3 and OPT. Roles come from the order of a block's
Linear-like layers (`nn.Linear`, GPT-2's `Conv1D`) and their widths, with leaf names only to tell
query, key and value apart; there is no per-architecture table.

In forward (registration) order a block has its attention input projections, the attention
output projection (the last layer writing the hidden size before the FFN), the FFN input
projections and, last, the FFN output projection:

- `ffn_out`: the block's last Linear-like (down_proj, fc2, c_proj, output.dense, ...);
- `attn_out`: the last Linear-like before it that writes the hidden size and is not a q/k/v
  projection (o_proj, out_proj, c_proj, attention.output.dense, dense, Wo);
- `ffn_in`: what lies between the two and reads the hidden size: one layer (c_fc, fc1,
  intermediate.dense) or, in gated MLPs (SwiGLU: Llama, Qwen, Mistral), the gate and the up
  projections;
- `query` / `key` / `value`: the layers before `attn_out` named `q`/`query`, `k`/`key`,
  `v`/`value` (q_proj, q_lin, query_proj, ...). A fused projection (GPT-2's `c_attn`, GPT-NeoX's
  `query_key_value`, ModernBERT's `Wqkv`) serves all three roles: `query`, `key` and `value`
  each resolve to it, so LoRA on ("query", "value") adapts GPT-2's whole `c_attn`, queries and
  keys included. A fused layer is recognised by name (`query_key_value`, `*qkv*`) or, where no
  attention input is named at all (GPT-2), as the block's attention input.
"""

from __future__ import annotations

from torch import nn

from ptft_bench.models.parts import ModelParts, linear_dims

# Roles a `targets` entry may name; anything else is a module-name suffix.
ROLES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
ALL_LINEAR = "all-linear"
# Leaf-name tokens of the q/k/v projections: BERT `query`, DistilBERT `q_lin`, DeBERTa-v2
# `query_proj`, Llama `q_proj`.
_QKV_TOKENS = {"q": {"q", "query"}, "k": {"k", "key"}, "v": {"v", "value"}}
_ROLE_OF = {"q": "query", "k": "key", "v": "value"}


def qkv_of_leaf(leaf: str) -> str:
    """Which of q, k, v a layer with this leaf name projects: "q", "k", "v", "qkv" (fused) or "".

    The first "_"-token names the role (`q_proj`, `query`, `q_lin`; DeBERTa's `pos_key_proj`
    projects positions, not keys); a name with several role tokens or a `qkv` token is fused.
    """
    tokens = leaf.lower().split("_")
    if any(t.endswith("qkv") for t in tokens):
        return "qkv"
    named = [r for t in tokens for r, tok in _QKV_TOKENS.items() if t in tok]
    if len(set(named)) > 1:
        return "".join(r for r in "qkv" if r in named)
    return next((r for r, tok in _QKV_TOKENS.items() if tokens[0] in tok), "")


def block_roles(block: nn.Module, hidden: int) -> dict[str, list[str]]:
    """Names (relative to `block`) of its Linear-like layers by role; see the module docstring."""
    layers = [(n, linear_dims(m)) for n, m in block.named_modules()]
    layers = [(n, dims) for n, dims in layers if dims is not None]
    found: dict[str, list[str]] = {r: [] for r in ROLES}
    if not layers:
        return found
    names = [n for n, _ in layers]
    qkv = {n: qkv_of_leaf(n.rsplit(".", 1)[-1]) for n in names}
    found["ffn_out"] = [names[-1]] if layers[-1][1][1] == hidden else []
    end = len(layers) - 1 if found["ffn_out"] else len(layers)
    out = [i for i in range(end) if layers[i][1][1] == hidden and not qkv[names[i]]]
    if not out:
        return found
    a = out[-1]
    found["attn_out"] = [names[a]]
    found["ffn_in"] = [names[i] for i in range(a + 1, end) if layers[i][1][0] == hidden]
    inputs = [names[i] for i in range(a) if layers[i][1][0] == hidden]
    if not any(qkv[n] for n in inputs):  # GPT-2's c_attn: the unnamed attention input is fused
        qkv.update({n: "qkv" for n in inputs[:1]})
    for n in inputs:
        for r in qkv[n]:
            found[_ROLE_OF[r]].append(n)
    return found


def find_projections(parts: ModelParts) -> dict[str, list[str]]:
    """Qualified names of every block's Linear-like layers by role (see `block_roles`)."""
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    for per_block in projections_by_block(parts):
        for role, names in per_block.items():
            roles[role] += names
    return roles


def projections_by_block(parts: ModelParts) -> list[dict[str, list[str]]]:
    """`block_roles` of each block, with qualified names (bottom block first)."""
    hidden = parts.backbone.config.hidden_size
    names = {id(m): n for n, m in parts.model.named_modules()}
    out = []
    for block in parts.blocks:
        prefix = names[id(block)]
        roles = block_roles(block, hidden)
        out.append({r: [f"{prefix}.{n}" for n in ns] for r, ns in roles.items()})
    return out


def resolve_targets(parts: ModelParts, targets: tuple[str, ...]) -> list[str]:
    """Qualified module names for `targets` (roles, "all-linear" or module-name suffixes)."""
    roles = find_projections(parts)
    model = parts.model
    head = tuple(parts.head)
    out: list[str] = []
    for t in targets:
        if t == ALL_LINEAR:
            # Every Linear-like layer in the blocks: peft's own "all-linear" also catches
            # DistilBERT's `pre_classifier`, which then clashes with modules_to_save.
            hits = [n for r in ROLES for n in roles[r]]
            hits += [
                n
                for n, m in model.named_modules()
                if linear_dims(m) is not None
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
