"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the encoder, plus the head."""

from __future__ import annotations

from torch import nn

from ptft_bench.layers import head_prefixes, in_any, set_trainable
from ptft_bench.registry import Strategy, StrategyContext, register_strategy


@register_strategy("bitfit")
class BitFit(Strategy):
    description = "Train only the bias terms (all of them, LayerNorm's too) plus the task head."
    family = "bias"
    # The paper sweeps 1e-4..1e-3 (biases need larger steps than full fine-tuning).
    default_lrs = (1e-4, 1e-3)

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        # The head (and pooler) is freshly initialised for the task, so it trains in full, as in
        # the paper; in the encoder only tensors named `*.bias` train.
        heads = head_prefixes(self.bind(model, context).parts)
        set_trainable(model, lambda name, _p: in_any(name, heads) or name.endswith(".bias"))
        return model
