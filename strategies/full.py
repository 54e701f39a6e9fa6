"""Full fine-tuning: every parameter trains at one learning rate (the reference point)."""

from torch import nn

from ptft_bench.registry import Strategy, register_strategy


@register_strategy("full")
class FullFineTuning(Strategy):
    description = "Train every parameter (the baseline every other strategy is compared with)."
    family = "full"
    default_lrs = (2e-5, 5e-5)

    def apply(self, model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
