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

Projections are found by structure (`ptft_bench.models.projections`), so the same code covers encoders
(BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2, ModernBERT) and decoders (GPT-2, GPT-NeoX, Llama,
Mistral, Qwen2/3, OPT). In a decoder block the Houlsby adapters sit after the attention output
projection (o_proj, c_proj, out_proj, dense) and after the MLP's down projection, before each
residual add; Pfeiffer's after the down projection only; the parallel adapter reads the MLP's
input (what the up and gate projections read) and adds to the down projection's output. GPT-2's
`Conv1D` layers are wrapped like Linear layers (only their output is used). Adapters and the head
train; the original normalisation layers (LayerNorm, and the decoders' RMSNorm) stay frozen
unless `train_layer_norms` (AdapterHub's default is frozen; Houlsby's paper trained them).
With reduction factor 16 on all-MiniLM-L6-v2 (6 layers, hidden 384) Pfeiffer adds 113,040
parameters and Houlsby 226,080, as AdapterHub does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ptft_bench.models.parts import is_norm
from ptft_bench.models.projections import projections_by_block
from ptft_bench.strategy.registry import (
    ADDS_LAYERS,
    Strategy,
    StrategyContext,
    register_strategy,
)

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
        default=False,
        metadata={"help": "also train the blocks' LayerNorms / RMSNorms (Houlsby's paper)"},
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
    trains_on_quantized_base = True
    serving = ADDS_LAYERS  # bottlenecks in every block run at every forward; they never merge
    multi_adapter = True  # the base stays frozen: swap adapters over one base
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)  # Houlsby et al. 2019 searched 1e-4..1e-3

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        cfg = self.config
        parts = self.bind(model, context).parts
        hidden = parts.backbone.config.hidden_size
        width = cfg.width(hidden)

        def adapter() -> BottleneckAdapter:
            return BottleneckAdapter(hidden, width, cfg.activation)

        blocks = _placements(parts, cfg.variant, type(model).__name__)
        model.requires_grad_(False)
        for roles in blocks:
            if cfg.variant == "parallel":
                # a gated MLP has two input projections (gate, up) reading the same input
                slot = _Slot()
                _replace(
                    model, roles["ffn_in"][0], lambda lin, s=slot: LinearRecordingInput(lin, s)
                )
                _replace(
                    model,
                    roles["ffn_out"][0],
                    lambda lin, s=slot: LinearWithParallelAdapter(lin, adapter(), s, cfg.scaling),
                )
                continue
            for role in ("attn_out", "ffn_out") if cfg.variant == "houlsby" else ("ffn_out",):
                _replace(model, roles[role][0], lambda lin: LinearWithAdapter(lin, adapter()))
        for m in model.modules():
            if isinstance(m, BottleneckAdapter):
                m.requires_grad_(True)
        for head in parts.head.values():
            head.requires_grad_(True)
        if cfg.train_layer_norms:
            for block in parts.blocks:
                for m in block.modules():
                    if is_norm(m):
                        m.requires_grad_(True)
        return model


def _placements(parts, variant: str, model_name: str) -> list[dict[str, list[str]]]:
    """Each block's projections by role; raises when a block lacks one the variant needs."""
    needed = {"houlsby": ("attn_out", "ffn_out"), "pfeiffer": ("ffn_out",)}.get(
        variant, ("ffn_in", "ffn_out")
    )
    blocks = projections_by_block(parts)
    for i, roles in enumerate(blocks):
        for role in needed:
            if not roles[role]:
                raise ValueError(
                    f"adapter: block {i} of {model_name} has no {role} projection "
                    "(ptft_bench.models.projections); cannot place adapters"
                )
    return blocks


def _replace(model: nn.Module, name: str, wrap: Any) -> None:
    """Swap the Linear at qualified `name` for `wrap(linear)`, on the Linear's device and dtype."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    linear = getattr(parent, child)
    setattr(parent, child, wrap(linear).to(linear.weight.device, linear.weight.dtype))
