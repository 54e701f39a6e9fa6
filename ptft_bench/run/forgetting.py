"""Forgetting: how much general language ability a fine-tune destroys, as a cost.

The causal-LM loss on a fixed slice of held-out general text (WikiText-2's test set: the first
`BLOCKS` blocks of `BLOCK` tokens) is measured on the base model, before the strategy touches
it, and on the trained model; forgetting is the difference (positive: worse at general text),
so the unchanged base model forgets exactly 0 (the comparison peft's method comparison had to
fix to use the base model). Causal LMs (generation runs) use their own LM head; decoder
classifiers whose output embeddings are tied to the input embeddings (SmolLM2, GPT-2, Qwen) are
scored through those tied embeddings; models without an LM head (encoder classifiers such as
MiniLM's, which ships no masked-LM head) get a reason instead of a number.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptft_bench.models.parts import ModelParts
from ptft_bench.models.pooling import is_decoder

BLOCK, BLOCKS = 128, 16  # 2,048 tokens: a stable mean loss in seconds on a CPU
TEXT = Path("corpora") / "wikitext2.test.tokens"


def general_text_path() -> Path | None:
    """WikiText-2's test file: $PTFT_GENERAL_TEXT, else under $PTFT_SHARED_DATA (../shared/data)."""
    explicit = os.environ.get("PTFT_GENERAL_TEXT")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    root = Path(os.environ.get("PTFT_SHARED_DATA", Path("..") / "shared" / "data"))
    path = root / TEXT
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _blocks(path: str, tokenizer: Any) -> np.ndarray:
    text = Path(path).read_text(encoding="utf-8")[: 40 * BLOCK * BLOCKS]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    n = min(len(ids) // BLOCK, BLOCKS)
    return np.asarray(ids[: n * BLOCK], dtype=np.int64).reshape(n, BLOCK)


def why_not(parts: ModelParts) -> str | None:
    """None when the model's LM loss can be measured, else the reason."""
    config = parts.backbone.config
    if parts.is_causal_lm or (is_decoder(config) and getattr(config, "tie_word_embeddings", False)):
        return None
    if is_decoder(config):
        return "the decoder classifier's output embeddings are not tied: it has no LM head"
    return f"{type(parts.backbone).__name__} has no language-model head (a classifier encoder)"


@torch.no_grad()
def lm_loss(parts: ModelParts, tokenizer: Any, device: torch.device, autocast: Any) -> float | None:
    """The mean next-token loss on the general-text slice, or None where it cannot be measured."""
    path = general_text_path()
    if path is None or why_not(parts):
        return None
    blocks = torch.from_numpy(_blocks(str(path), tokenizer))
    model, was = parts.model, parts.model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(blocks), 4):
            x = blocks[start : start + 4].to(device)
            with autocast():
                logits = _logits(parts, x)
            logits = logits[:, -x.shape[1] :]  # prompt methods prepend virtual positions
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                x[:, 1:].reshape(-1),
                reduction="sum",
            )
            total, count = total + float(loss), count + x[:, 1:].numel()
    finally:
        model.train(was)
    return total / count


def _logits(parts: ModelParts, x: torch.Tensor) -> torch.Tensor:
    if parts.is_causal_lm:
        return parts.model(input_ids=x).logits
    hidden = parts.backbone(input_ids=x).last_hidden_state  # the final norm included
    return hidden @ parts.backbone.get_input_embeddings().weight.T


def forgetting(before: float | None, after: float | None, parts: ModelParts) -> dict[str, Any]:
    """The record's `forgetting`: {"base_loss", "loss", "delta"} or {"omitted": reason}."""
    if before is None or after is None:
        reason = why_not(parts) or "no general text (set PTFT_SHARED_DATA or PTFT_GENERAL_TEXT)"
        return {"omitted": reason}
    return {
        "base_loss": before,
        "loss": after,
        "delta": after - before,
        "text": f"{TEXT.name}: the first {BLOCKS} blocks of {BLOCK} tokens",
    }
