"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the encoder, plus the head.

On a backbone without bias terms (Llama, Mistral, SmolLM2, Qwen3, ModernBERT: bias-free linear
layers and RMSNorm / bias-free LayerNorm) BitFit would silently be head-only training, so it is
refused before training, with the reason (`supports`). Qwen2 keeps biases on its q/k/v
projections only: BitFit trains those.
"""

from __future__ import annotations

from torch import nn

from ptft_bench.models.parts import find_parts
from ptft_bench.strategy.layers import head_prefixes, in_any, set_trainable
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy


@register_strategy("bitfit")
class BitFit(Strategy):
    description = "Train only the bias terms (all of them, LayerNorm's too) plus the task head."
    family = "bias"
    # The paper sweeps 1e-4..1e-3 (biases need larger steps than full fine-tuning).
    default_lrs = (1e-4, 1e-3)
    search_lr = (1e-4, 1e-2)  # BitFit (Ben Zaken et al. 2022) used 1e-4..1e-3 on BERT-large
    serving = SAME_MODEL  # the base's own biases change (no overhead, but one copy each)
    decoders = "only with biases"  # GPT-2, GPT-NeoX, OPT, Qwen2; not Llama, Mistral, Qwen3

    @classmethod
    def supports(cls, model: nn.Module) -> str | None:
        backbone = find_parts(model).backbone
        if any(n.endswith("bias") for n, _ in backbone.named_parameters()):
            return None
        return (
            f"{type(backbone).__name__} has no bias terms (bias-free linear layers and norms), "
            "so BitFit would train the head only: use head_only"
        )

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        # The head (and pooler) is freshly initialised for the task, so it trains in full, as in
        # the paper; in the encoder only tensors named `*.bias` train.
        parts = self.bind(model, context).parts
        reason = self.supports(model)
        if reason:
            raise ValueError(f"bitfit: {reason}")
        heads = head_prefixes(parts)
        set_trainable(model, lambda name, _p: in_any(name, heads) or name.endswith(".bias"))
        return model
