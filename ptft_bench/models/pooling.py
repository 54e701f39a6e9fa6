"""Pooling: which vector of the encoder's output the task head reads.

- `cls`: the first token, through the model's own head (BERT: [CLS] -> pooler -> classifier).
  What transformers builds for every encoder, and today's behaviour for models without metadata.
- `mean`: the masked mean over the tokens. What sentence-transformers models (all-MiniLM-L6-v2,
  the default) were trained to produce; their [CLS] vector and BERT pooler never were.
- `last`: the last non-padding token, what decoder language models use (either padding side).

`auto` reads the model's own metadata: a sentence-transformers folder says its pooling in
`1_Pooling/config.json`; decoders use the last token; other encoders keep their own head (`cls`,
or ModernBERT's `classifier_pooling`).

Decoders: transformers' decoder classifiers (GPT-2, Llama, Qwen, OPT, ...) run their `score`
layer on every position and read the logits at the last token that is not `pad_token_id`. That
is right for either padding side when the input is token ids, but not when the input is
embeddings (prompt tuning and p-tuning feed `inputs_embeds`): transformers then reads the last
position, a pad under right padding. So `last` is installed on decoders too: the hook below
puts the last real token's vector (found from the attention mask) at every position, and the
score is the same whichever position the model's head reads.

How it is installed (`install`): when the chosen pooling is not the model's native one (or is a
decoder's `last`), a hook on
the module that owns the transformer blocks (BERT's `encoder`, Llama's `model`) replaces its
output's hidden states by the pooled vector at every position, so whatever position the model's
own head reads (token 0 for encoders, the last token for decoders) carries the pooled vector; the
attention mask comes from a pre-hook on the backbone. A backbone pooler trained for [CLS] (BERT's
dense + tanh) is bypassed, so the classifier reads the pooled vector itself, as the sentence
encoder's users do. The model stays a plain Hugging Face model: peft, the Trainer, frozen-prefix
caching (which replaces blocks and embeddings but not the hooked modules) and saving all work.
Why hand-written: transformers' sequence classifiers have no pooling option, and
sentence-transformers' `Pooling` module is not a sequence classifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ptft_bench.models.parts import ModelParts, find_parts

POOLINGS = ("cls", "mean", "last")
CHOICES = ("auto", *POOLINGS)
# model_type values of decoder-only language models whose classifiers read the last token
DECODER_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
    "qwen2_moe", "opt", "phi", "phi3", "gemma", "gemma2", "falcon", "bloom", "smollm3", "olmo",
}  # fmt: skip


def is_decoder(config) -> bool:
    return getattr(config, "model_type", "") in DECODER_TYPES or bool(
        getattr(config, "is_decoder", False)
    )


def native_pooling(config) -> str:
    """The pooling the model's own sequence-classification head implements."""
    if is_decoder(config):
        return "last"
    own = getattr(config, "classifier_pooling", None)  # ModernBERT: "cls" or "mean"
    return own if own in POOLINGS else "cls"


def sentence_transformers_pooling(folder: str | Path) -> str | None:
    """The pooling a sentence-transformers folder declares (`1_Pooling/config.json`), if any."""
    path = Path(folder) / "1_Pooling" / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_lasttoken"):
        return "last"
    return None  # max or sqrt-length pooling: not offered, keep the model's own head


def resolve(requested: str, folder: str | Path | None, config) -> tuple[str, str]:
    """(pooling, why) for `requested` in CHOICES on the model in `folder` with `config`."""
    if requested not in CHOICES:
        raise ValueError(f"pooling must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested, "set explicitly"
    declared = sentence_transformers_pooling(folder) if folder else None
    if declared:
        return declared, "declared by the model's sentence-transformers pooling config"
    if is_decoder(config):
        return "last", "decoder: the last non-padding token"
    native = native_pooling(config)
    return native, f"the model's own head ({'first token' if native == 'cls' else native})"


class FirstToken(nn.Module):
    """Stands in for a backbone pooler: returns token 0, which carries the pooled vector."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class _Pooler:
    """The two hooks: capture the attention mask, then pool the blocks' output with it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def capture(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        ref = ids if ids is not None else embeds
        if mask is None and ref is not None:
            mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        self.mask = mask

    def pool_output(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        pooled = pool(hidden, self.mask, self.mode)
        new = pooled[:, None, :].expand_as(hidden)
        if isinstance(output, tuple):
            return (new, *output[1:])
        output.last_hidden_state = new
        return output


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """(B, T, H) hidden states and a (B, T') 0/1 mask -> (B, H) pooled vectors.

    A mask longer than the sequence (prefix tuning prepends virtual keys to the mask, not to the
    hidden states) is cut to its last T columns.
    """
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    mask = mask[:, -hidden.shape[1] :].to(hidden.device)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if mode == "last":  # the last position whose mask is 1, for right or left padding
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        last = (mask.long() * positions).argmax(-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {mode!r}")


def install(model: nn.Module, mode: str, parts: ModelParts | None = None) -> nn.Module:
    """Make `model`'s head read `mode`-pooled vectors (no change for its native pooling)."""
    if mode not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {mode!r}")
    model.ptft_pooling = mode
    if mode == native_pooling(model.config) and not is_decoder(model.config):
        return model
    parts = parts or find_parts(model)
    owner_name = parts.blocks_prefix.rpartition(".")[0]
    owner = parts.model.get_submodule(owner_name)
    pooler = _Pooler(mode)
    parts.backbone.register_forward_pre_hook(pooler.capture, with_kwargs=True)
    owner.register_forward_hook(pooler.pool_output)
    if parts.pooler is not None and any(True for _ in parts.pooler[1].parameters()):
        # A pooler trained for [CLS] (BERT's dense + tanh) is bypassed: the head reads the
        # pooled vector itself.
        parent, _, attr = parts.pooler[0].rpartition(".")
        setattr(parts.model.get_submodule(parent), attr, FirstToken())
    return model
