"""LoRA (Hu et al. 2021) through peft: low-rank updates of chosen projections, + the head.

Variants are parameters: rank `r`, scaling `alpha`, `dropout`, `targets` (roles found by structure:
query, key, value, attn_out, ffn_in, ffn_out, or "all-linear" = every Linear in the blocks, never
the head), rank-stabilised scaling (`use_rslora`, Kalajdzievski 2023: alpha / sqrt(r)) and
weight-decomposed LoRA (`use_dora`, Liu et al. 2024).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ptft_bench.models.projections import ALL_LINEAR, ROLES
from ptft_bench.strategy.registry import register_strategy
from strategies.peft_methods import PeftStrategy, PeftStrategyConfig


@dataclass
class LoraStrategyConfig:
    """LoRA's parameters (defaults: r=8, alpha=16 on query/value, as in most GLUE setups)."""

    r: int = field(default=8, metadata={"help": "rank of the update"})
    alpha: int = field(default=16, metadata={"help": "scaling numerator: alpha / r"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA input"})
    targets: tuple[str, ...] = field(
        default=("query", "value"),
        metadata={"help": f"roles ({', '.join(ROLES)}), '{ALL_LINEAR}' or module-name suffixes"},
    )
    use_rslora: bool = field(default=False, metadata={"help": "scale by alpha / sqrt(r)"})
    use_dora: bool = field(default=False, metadata={"help": "weight-decomposed LoRA (DoRA)"})

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"lora: r must be a positive integer, got {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora: alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora: dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ValueError("lora: targets must not be empty (e.g. query,value or all-linear)")


@register_strategy("lora")
class LoraStrategy(PeftStrategy):
    description = "LoRA: low-rank updates of the attention query/value projections, + head."
    family = "lora"
    config_class = LoraStrategyConfig
    # Hu et al. 2021 (RoBERTa-base GLUE) used 4e-4..5e-4; peft's examples 1e-3.
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)  # LoRA (Hu et al. 2021): 4e-4..5e-4 on RoBERTa
    method = "lora"
    mergeable = True  # W + BA (DoRA: rescaled) folds into W: peft's merge_and_unload

    @classmethod
    def normalise_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return params  # LoRA's own small, named config: no flat peft options

    @property
    def peft_params(self) -> PeftStrategyConfig:
        c = self.config
        return PeftStrategyConfig(
            method="lora",
            targets=c.targets,
            options={
                "r": c.r,
                "lora_alpha": c.alpha,
                "lora_dropout": c.dropout,
                "use_rslora": c.use_rslora,
                "use_dora": c.use_dora,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        params = dataclasses.asdict(self.config)
        params["targets"] = list(params["targets"])
        return {"name": self.name, "params": params}
