"""The training loop's small event interface.

Strategies that act during training (gradual unfreezing) return `TrainCallback`s from
`Strategy.callbacks()`. The loop calls them at fixed events and never asks which strategy runs.
`ptft_bench/strategy/hf.py` adapts them to the Hugging Face `Trainer`'s callback system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class TrainState:
    """What a callback may look at (and change) at an event."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    epoch: int = 0  # 0-based epoch about to start / running
    global_step: int = 0  # optimizer steps done so far
    steps_per_epoch: int = 0
    total_steps: int = 0
    logs: dict[str, Any] | None = None
    batch_positions: int = 0  # positions (tokens + padding) of the step just taken, all processes
    batch_width: int = 0  # padded sequence length of that step's batch
    # Set by a callback to end training after this epoch's validation (e.g. "pruned" by a
    # tuning trial's pruner); the loop keeps the best epoch's weights, as for early stopping.
    stop_reason: str | None = None

    @property
    def is_last_epoch(self) -> bool:
        """The epoch running now is the budget's last."""
        return (self.epoch + 1) * max(self.steps_per_epoch, 1) >= self.total_steps


class TrainCallback:
    """Override the events you need; each gets the live `TrainState`."""

    def on_train_begin(self, state: TrainState) -> None:  # noqa: B027 - optional hook
        pass

    def on_epoch_begin(self, state: TrainState) -> None:  # noqa: B027
        pass

    def on_step_end(self, state: TrainState) -> None:  # noqa: B027
        pass

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:  # noqa: B027
        """After each epoch's validation, with its metrics; may set `state.stop_reason`."""
        pass

    def on_train_end(self, state: TrainState) -> None:  # noqa: B027
        pass

    def changes_trainable_set(self) -> bool:
        """True when the callback freezes/unfreezes parameters during training (disables caching)."""
        return False
