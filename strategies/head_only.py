"""Head-only training (linear probing): the encoder stays frozen, only the task head learns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ptft_bench.strategy.layers import head_prefixes, in_any, set_trainable
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy


@dataclass
class HeadOnlyConfig:
    train_pooler: bool = field(
        default=True,
        metadata={
            "help": "Also train the pooler (BERT's pooler, DeBERTa's ContextPooler). On by default: "
            "the classifier reads the pooler's output, and a frozen pooler of a model that was not "
            "pretrained with next-sentence prediction (e.g. sentence encoders) is untrained noise."
        },
    )


@register_strategy("head_only")
class HeadOnly(Strategy):
    description = "Freeze the encoder; train only the classification head (and pooler)."
    family = "head"
    config_class = HeadOnlyConfig
    # A freshly initialised head on frozen features tolerates (and needs) large rates.
    needs_task_head = True
    trains_on_quantized_base = True
    serving = SAME_MODEL  # the base model with its own task head
    multi_adapter = True  # the backbone stays frozen: one base, a head per task
    default_lrs = (1e-3, 5e-3)
    search_lr = (1e-3, 1e-1)  # a linear head on frozen (mean-pooled, small-norm) features

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        heads = head_prefixes(self.bind(model, context).parts, self.config.train_pooler)
        set_trainable(model, lambda name, _p: in_any(name, heads))
        return model
