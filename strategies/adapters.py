"""Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2021, He et al. 2022), written here.

peft has no bottleneck adapters and AdapterHub's `adapters` pins an older transformers, so this
module inserts them itself. Each adapter is down-projection -> activation -> up-projection with
biases; the up-projection starts at zero, so the adapted model equals the base model at init.

- `houlsby`: after the attention output projection and after the FFN output projection, each
  before the block's residual + LayerNorm (AdapterHub's `double_seq_bn`).
- `pfeiffer`: after the FFN output projection only (AdapterHub's `seq_bn`; AdapterHub also re-applies
  the block's LayerNorm around it, which we leave out: same parameters, simpler placement).
- `parallel`: a bottleneck beside the FFN, reading the FFN's input and adding `scaling` times its
  output to the FFN's output (He et al. 2022, scaling 4).

Projections are found by structure (`find_projections`), so the same code covers BERT, RoBERTa,
DistilBERT, ELECTRA and DeBERTa-v2. Adapters and the head train; the original LayerNorms stay
frozen unless `train_layer_norms` (AdapterHub's default is frozen; Houlsby's paper trained them).
With reduction factor 16 on all-MiniLM-L6-v2 (6 layers, hidden 384) Pfeiffer adds 113,040
parameters and Houlsby 226,080, as AdapterHub does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ptft_bench.projections import find_projections
from ptft_bench.registry import Strategy, StrategyContext, register_strategy

VARIANTS = ("houlsby", "pfeiffer", "parallel")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """`up(act(down(x)))`: the residual is added by the wrapper that owns the adapter."""

    def __init__(self, hidden: int, bottleneck: int, activation: str) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden)
        # Zero up-projection: the adapter starts as an exact identity (Houlsby et al. use a
        # near-zero init for the same reason). The down-projection gets gradients from step 2.
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class LinearWithAdapter(nn.Module):
    """A frozen Linear followed by a sequential adapter: `h + adapter(h)` with `h = linear(x)`."""

    def __init__(self, linear: nn.Linear, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.linear = linear
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return h + self.adapter(h)


class _Slot:
    """Carries the FFN input from the FFN's first Linear to its last (not an nn.Module)."""

    value: torch.Tensor | None = None


class LinearRecordingInput(nn.Module):
    """The FFN's input Linear, unchanged, also recording its input for the parallel adapter."""

    def __init__(self, linear: nn.Linear, slot: _Slot) -> None:
        super().__init__()
        self.linear = linear
        self.slot = slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.slot.value = x
        return self.linear(x)


class LinearWithParallelAdapter(nn.Module):
    """The FFN's output Linear plus `scaling * adapter(ffn_input)` (He et al. 2022)."""

    def __init__(
        self, linear: nn.Linear, adapter: BottleneckAdapter, slot: _Slot, scaling: float
    ) -> None:
        super().__init__()
        self.linear = linear
        self.adapter = adapter
        self.slot = slot
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ffn_input, self.slot.value = self.slot.value, None  # free it: do not keep activations
        if ffn_input is None:
            raise RuntimeError("parallel adapter: the FFN input Linear did not run first")
        return self.linear(x) + self.scaling * self.adapter(ffn_input)


@dataclass
class AdapterStrategyConfig:
    """Bottleneck adapter parameters (AdapterHub defaults: reduction factor 16)."""

    variant: str = field(default="pfeiffer", metadata={"help": f"one of {', '.join(VARIANTS)}"})
    reduction_factor: float = field(
        default=16.0, metadata={"help": "bottleneck = hidden size / reduction_factor"}
    )
    bottleneck: int | None = field(
        default=None, metadata={"help": "bottleneck width; overrides reduction_factor"}
    )
    # AdapterHub uses swish for Houlsby and ReLU for Pfeiffer / parallel. We default to swish for
    # all: with ReLU a unit whose input has one sign over the batch (common in small bottlenecks)
    # never receives a gradient; activation="relu" gives AdapterHub's Pfeiffer activation.
    activation: str = field(default="swish", metadata={"help": f"one of {', '.join(ACTIVATIONS)}"})
    scaling: float = field(default=4.0, metadata={"help": "output scale of the parallel adapter"})
    train_layer_norms: bool = field(
        default=False, metadata={"help": "also train the blocks' LayerNorms (Houlsby's paper)"}
    )

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"adapter: variant must be one of {list(VARIANTS)}, got {self.variant!r}"
            )
        if self.reduction_factor <= 0:
            raise ValueError(
                f"adapter: reduction_factor must be positive, got {self.reduction_factor}"
            )
        if self.bottleneck is not None and self.bottleneck < 1:
            raise ValueError(
                f"adapter: bottleneck must be a positive integer, got {self.bottleneck}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"adapter: activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )

    def width(self, hidden: int) -> int:
        """The bottleneck width for a model of hidden size `hidden` (AdapterHub: int(h / rf))."""
        return self.bottleneck or max(1, int(hidden / self.reduction_factor))


@register_strategy("adapter")
class AdapterStrategy(Strategy):
    description = "Bottleneck adapters (Houlsby / Pfeiffer / parallel) in every block, + head."
    family = "adapter"
    config_class = AdapterStrategyConfig
    # Houlsby et al. 2019 searched 3e-5..3e-3; AdapterHub recommends 1e-4..1e-3 (1e-4 default).
    default_lrs = (5e-4, 1e-3)

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        cfg = self.config
        parts = self.bind(model, context).parts
        hidden = parts.backbone.config.hidden_size
        width = cfg.width(hidden)
        activation = cfg.activation
        roles = find_projections(parts)
        needed = {"houlsby": ("attn_out", "ffn_out"), "pfeiffer": ("ffn_out",)}.get(
            cfg.variant, ("ffn_in", "ffn_out")
        )
        for role in needed:
            if len(roles[role]) != parts.num_layers:
                raise ValueError(
                    f"adapter: found {len(roles[role])} {role} projections in "
                    f"{parts.num_layers} blocks of {type(model).__name__}; cannot place adapters"
                )
        model.requires_grad_(False)
        if cfg.variant == "parallel":
            for ffn_in, ffn_out in zip(roles["ffn_in"], roles["ffn_out"]):
                slot = _Slot()
                _replace(model, ffn_in, lambda lin, s=slot: LinearRecordingInput(lin, s))
                _replace(
                    model,
                    ffn_out,
                    lambda lin, s=slot: LinearWithParallelAdapter(
                        lin, BottleneckAdapter(hidden, width, activation), s, cfg.scaling
                    ),
                )
        else:
            for role in needed:
                for name in roles[role]:
                    _replace(
                        model,
                        name,
                        lambda lin: LinearWithAdapter(
                            lin, BottleneckAdapter(hidden, width, activation)
                        ),
                    )
        for m in model.modules():
            if isinstance(m, BottleneckAdapter):
                m.requires_grad_(True)
        for head in parts.head.values():
            head.requires_grad_(True)
        if cfg.train_layer_norms:
            for block in parts.blocks:
                for m in block.modules():
                    if isinstance(m, nn.LayerNorm):
                        m.requires_grad_(True)
        return model


def _replace(model: nn.Module, name: str, wrap: Any) -> None:
    """Swap the Linear at qualified `name` for `wrap(linear)`, on the Linear's device and dtype."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    linear = getattr(parent, child)
    setattr(parent, child, wrap(linear).to(linear.weight.device, linear.weight.dtype))
