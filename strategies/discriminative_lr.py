"""Discriminative (layer-wise decaying) learning rates over the whole model.

Block l of L (1 = bottom) trains at `lr * decay**(L - l)`, the embeddings at `lr * decay**L`,
the head at `lr * head_lr_multiplier`: lower layers hold general features and should move less
(Howard & Ruder 2018, ULMFiT, divide by 2.6 per layer, i.e. decay ~0.385; Sun et al. 2019,
"How to fine-tune BERT", use 0.95 with lr 2e-5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ptft_bench.strategy.layers import check_range, layerwise_groups
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy


@dataclass
class DiscriminativeLRConfig:
    decay: float = field(
        default=0.95,
        metadata={"help": "Per-layer lr factor going down, in (0, 1]; 1 = one lr everywhere."},
    )
    head_lr_multiplier: float = field(
        default=1.0,
        metadata={"help": "Head lr = lr * this (> 0); a new head often likes 10-100x."},
    )

    def __post_init__(self) -> None:
        check_range("discriminative_lr: decay", self.decay, 0.0, 1.0)
        check_range("discriminative_lr: head_lr_multiplier", self.head_lr_multiplier, 0.0, None)


@register_strategy("discriminative_lr")
class DiscriminativeLR(Strategy):
    description = "Train everything with layer-wise learning-rate decay (lower layers move less)."
    family = "layerwise"
    config_class = DiscriminativeLRConfig
    default_lrs = (2e-5, 5e-5)
    search_lr = (1e-5, 1e-4)  # the top layer's rate: as full fine-tuning
    serving = SAME_MODEL  # every weight trains: a whole new model

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        self.bind(model, context)
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float = 0.01
    ) -> list[dict[str, Any]]:
        return layerwise_groups(
            self.parts_for(model),
            self.trainable_named_parameters(model),
            lr,
            weight_decay,
            self.config.decay,
            self.config.head_lr_multiplier,
        )
