"""Gradual unfreezing (Howard & Ruder 2018, ULMFiT): start with the head, then every `every`
epochs (or steps) unfreeze the next transformer block from the top; the embeddings come last.

This is the one strategy whose `param_groups` include parameters that are frozen right now: the
optimizer is built once, before training, over every parameter the strategy will *ever* train.
Frozen ones have no gradient, and AdamW skips a parameter whose `.grad` is None (no update, no
weight decay, no state); the moment the callback sets `requires_grad`, the next backward gives
it a gradient and the next step updates it. The alternatives are worse: an optimizer built over
the initially trainable parameters never updates the layers unfrozen later (the classic silent
pitfall), and `optimizer.add_param_group` mid-run leaves LR schedulers (which captured
`base_lrs` per group at construction) out of step with the new groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ptft_bench.models.parts import unique_named_parameters
from ptft_bench.strategy.callbacks import TrainCallback, TrainState
from ptft_bench.strategy.layers import (
    check_range,
    layerwise_groups,
    set_trainable,
    top_layers_predicate,
)
from ptft_bench.strategy.registry import SAME_MODEL, Strategy, StrategyContext, register_strategy


@dataclass
class GradualUnfreezingConfig:
    every: int = field(
        default=1, metadata={"help": "Unfreeze one more block every this many units (>= 1)."}
    )
    unit: Literal["epoch", "step"] = field(
        default="epoch", metadata={"help": "What `every` counts: epochs or optimizer steps."}
    )
    decay: float = field(
        default=1.0,
        metadata={
            "help": "Discriminative lr factor per layer going down, in (0, 1]; 1 = one lr "
            "(ULMFiT: 1/2.6 ~ 0.385)."
        },
    )
    unfreeze_embeddings: bool = field(
        default=True,
        metadata={"help": "After the bottom block, unfreeze the embeddings as a last stage."},
    )

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"gradual_unfreezing: every must be >= 1, got {self.every}")
        if self.unit not in ("epoch", "step"):
            raise ValueError(
                f"gradual_unfreezing: unit must be 'epoch' or 'step', got {self.unit!r}"
            )
        check_range("gradual_unfreezing: decay", self.decay, 0.0, 1.0)


@register_strategy("gradual_unfreezing")
class GradualUnfreezing(Strategy):
    description = "ULMFiT: train the head, then unfreeze one more block from the top per stage."
    family = "layerwise"
    config_class = GradualUnfreezingConfig
    default_lrs = (5e-5, 1e-4)
    search_lr = (2e-5, 3e-4)  # ULMFiT-style schedules train fewer layers at a time
    serving = SAME_MODEL  # by its last stage every block trains: a whole new model

    # -- stages --------------------------------------------------------------------------------
    def num_stages(self, model: nn.Module) -> int:
        """Stages after the head-only one: one per block, plus one for the embeddings."""
        return self.parts_for(model).num_layers + int(self.config.unfreeze_embeddings)

    def _stage_predicate(self, model: nn.Module, stage: int) -> Callable[[str, nn.Parameter], bool]:
        parts = self.parts_for(model)
        L = parts.num_layers
        # A causal LM (a generation task) has no task head to train alone: its first stage is
        # the top block, the LM head staying as pretrained.
        stage += 0 if parts.head else 1
        return top_layers_predicate(
            parts,
            min(stage, L),
            train_embeddings=self.config.unfreeze_embeddings and stage > L,
        )

    def set_stage(self, model: nn.Module, stage: int) -> None:
        """Trainable = head + top `stage` blocks (+ embeddings past the last block)."""
        set_trainable(model, self._stage_predicate(model, min(stage, self.num_stages(model))))

    def stage_at(self, state: TrainState) -> int:
        """The stage for the current position in training (also right after a resume)."""
        position = state.epoch if self.config.unit == "epoch" else state.global_step
        return position // self.config.every

    # -- the contract --------------------------------------------------------------------------
    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        self.bind(model, context)
        self.set_stage(model, 0)
        return model

    def trainable_named_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """Everything this strategy will train by the last stage (frozen now or not)."""
        final = self._stage_predicate(model, self.num_stages(model))
        return [(n, p) for n, p in unique_named_parameters(model) if final(n, p)]

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float = 0.01
    ) -> list[dict[str, Any]]:
        # Includes currently frozen parameters on purpose: see the module docstring.
        return layerwise_groups(
            self.parts_for(model),
            self.trainable_named_parameters(model),
            lr,
            weight_decay,
            self.config.decay,
        )

    def callbacks(self) -> list[TrainCallback]:
        return [UnfreezeCallback(self)]


class UnfreezeCallback(TrainCallback):
    """Moves the model to the stage its epoch / step calls for, at the matching events."""

    def __init__(self, strategy: GradualUnfreezing) -> None:
        self.strategy = strategy
        self.stage: int | None = None

    def changes_trainable_set(self) -> bool:
        return True

    def _update(self, state: TrainState) -> None:
        stage = self.strategy.stage_at(state)
        if stage != self.stage:
            self.strategy.set_stage(state.model, stage)
            self.stage = stage

    def on_train_begin(self, state: TrainState) -> None:
        self._update(state)

    def on_epoch_begin(self, state: TrainState) -> None:
        if self.strategy.config.unit == "epoch":
            self._update(state)

    def on_step_end(self, state: TrainState) -> None:
        if self.strategy.config.unit == "step":
            self._update(state)
