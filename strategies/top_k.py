"""Train the top k transformer blocks and the head; everything below stays frozen.

"Freeze the bottom n layers" is the same strategy seen from below, so it is a config variant
(`freeze_bottom=n`), not a second strategy: on an L-layer model it trains the top L - n blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ptft_bench.models.parts import ModelParts
from ptft_bench.strategy.layers import check_k, set_trainable, top_layers_predicate
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy

DEFAULT_K = 1


@dataclass
class TopKConfig:
    k: int | None = field(
        default=None,
        metadata={
            "help": f"Number of top transformer blocks to train (0 = head only). Left unset it is "
            f"{DEFAULT_K}, unless freeze_bottom is given."
        },
    )
    freeze_bottom: int | None = field(
        default=None,
        metadata={"help": "Alternative to k: freeze the bottom n blocks and train the rest."},
    )
    train_embeddings: bool = field(
        default=False, metadata={"help": "Also train the embeddings (below the frozen blocks)."}
    )
    train_pooler: bool = field(
        default=True, metadata={"help": "Train the pooler with the head (see head_only)."}
    )

    def __post_init__(self) -> None:
        if self.k is not None and self.freeze_bottom is not None:
            raise ValueError(
                f"top_k: give k or freeze_bottom, not both (got k={self.k}, "
                f"freeze_bottom={self.freeze_bottom})"
            )
        for name in ("k", "freeze_bottom"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"top_k: {name} must be >= 0, got {value}")
        if self.k is None and self.freeze_bottom is None:
            # Resolve the default here so that to_dict() shows the k that runs and round-trips.
            self.k = DEFAULT_K


@register_strategy("top_k")
class TopK(Strategy):
    description = "Train the top k transformer blocks plus the head (freeze the bottom ones)."
    family = "layerwise"
    config_class = TopKConfig
    # Between full fine-tuning (2e-5..5e-5) and head-only: fewer, higher layers move further.
    default_lrs = (5e-5, 1e-4)
    search_lr = (3e-5, 1e-3)  # few trainable blocks tolerate larger rates
    serving = SAME_MODEL  # the top blocks' own weights change: one base copy per fine-tune

    def num_trained_blocks(self, parts: ModelParts) -> int:
        """k on this model (resolves freeze_bottom); raises ValueError naming k and the depth."""
        if self.config.freeze_bottom is not None:
            check_k(self.config.freeze_bottom, parts, "freeze_bottom")
            return parts.num_layers - self.config.freeze_bottom
        check_k(self.config.k, parts, "k")
        return self.config.k

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        parts = self.bind(model, context).parts
        k = self.num_trained_blocks(parts)
        set_trainable(
            model,
            top_layers_predicate(
                parts,
                k,
                train_pooler=self.config.train_pooler,
                train_embeddings=self.config.train_embeddings,
            ),
        )
        return model
