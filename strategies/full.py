"""Full fine-tuning: every parameter trains at one learning rate (the reference point)."""

from torch import nn

from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy


@register_strategy("full")
class FullFineTuning(Strategy):
    description = "Train every parameter (the baseline every other strategy is compared with)."
    family = "full"
    default_lrs = (2e-5, 5e-5)
    search_lr = (1e-5, 1e-4)  # BERT (Devlin et al. 2019) searched 2e-5..5e-5
    serving = SAME_MODEL  # a whole new model: nothing to merge, no overhead, one base each

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        self.bind(model, context)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
