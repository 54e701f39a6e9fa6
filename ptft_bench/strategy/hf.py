"""Use a ptft-bench strategy with the Hugging Face `Trainer` or with Accelerate, in one line.

    model = strategy.apply(model)
    trainer = Trainer(model=model, args=args, train_dataset=ds, **trainer_kwargs(strategy, model, args))

`trainer_kwargs` returns `optimizers` (AdamW over the strategy's parameter groups, so per-layer
learning rates and the no-decay split survive; the scheduler is left to the Trainer, which builds
`args.lr_scheduler_type` with `args` warmup over those groups once it knows the step count) and
`callbacks` (the strategy's `TrainCallback`s adapted to `transformers.TrainerCallback`).

With Accelerate:

    model, optimizer, loader = accelerate_prepare(accelerator, strategy, model, lr, loader)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainingArguments

from ptft_bench.strategy.callbacks import TrainCallback, TrainState
from ptft_bench.strategy.registry import Strategy


class HFCallbackAdapter(TrainerCallback):
    """Runs one of our `TrainCallback`s at the matching `Trainer` events."""

    def __init__(self, callback: TrainCallback) -> None:
        self.callback = callback

    def _state(self, args: TrainingArguments, state: Any, kwargs: dict[str, Any]) -> TrainState:
        loader = kwargs.get("train_dataloader")
        steps_per_epoch = 0
        if loader is not None and hasattr(loader, "__len__"):
            steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
        # The Trainer's `state.epoch` is fractional (epoch + done/steps) and exactly the epoch
        # number at epoch boundaries; the small epsilon guards float error in between.
        return TrainState(
            model=kwargs["model"],
            optimizer=kwargs.get("optimizer"),
            epoch=int((state.epoch or 0.0) + 1e-6),
            global_step=state.global_step,
            steps_per_epoch=steps_per_epoch,
            total_steps=state.max_steps,
            logs=kwargs.get("logs"),
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.callback.on_train_begin(self._state(args, state, kwargs))

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.callback.on_epoch_begin(self._state(args, state, kwargs))

    def on_optimizer_step(self, args, state, control, **kwargs):
        # Our on_step_end runs after optimizer.step() and before the gradients are zeroed
        # (AdaLoRA's rank allocation reads them); the Trainer's on_step_end comes after
        # zero_grad, so we hook here. The Trainer increments global_step only afterwards.
        st = self._state(args, state, kwargs)
        st.global_step += 1
        self.callback.on_step_end(st)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        st = self._state(args, state, kwargs)
        self.callback.on_evaluate(st, dict(metrics or {}))
        if st.stop_reason:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.callback.on_train_end(self._state(args, state, kwargs))


def make_optimizer(
    strategy: Strategy,
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    **adamw_kwargs: Any,
) -> torch.optim.AdamW:
    """AdamW over `strategy.param_groups` (build it once, after `apply`, before training)."""
    return torch.optim.AdamW(strategy.param_groups(model, lr, weight_decay), lr=lr, **adamw_kwargs)


def check_world_size(strategy: Strategy, world_size: int) -> None:
    """Refuse multi-process training for strategies that change the trainable set mid-run.

    DistributedDataParallel registers its gradient all-reduce only for the parameters that
    require grad when it wraps the model; a layer unfrozen later would be updated with each
    rank's local gradient and the replicas would silently drift apart.
    """
    if world_size > 1 and any(cb.changes_trainable_set() for cb in strategy.callbacks()):
        raise ValueError(
            f"strategy {strategy.name!r} changes which parameters train during the run, which "
            f"DistributedDataParallel does not follow ({world_size} processes); run it in one "
            "process"
        )


def trainer_kwargs(strategy: Strategy, model: nn.Module, args: TrainingArguments) -> dict[str, Any]:
    """`optimizers` and `callbacks` for `transformers.Trainer(...)` (see the module docstring).

    `model` must be the one `strategy.apply` returned. The learning rate, weight decay and Adam
    betas / epsilon come from `args`, exactly as the Trainer's own AdamW would take them.
    """
    check_world_size(strategy, args.world_size)
    optimizer = make_optimizer(
        strategy,
        model,
        args.learning_rate,
        args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    return {
        "optimizers": (optimizer, None),
        "callbacks": [HFCallbackAdapter(cb) for cb in strategy.callbacks()],
    }


def accelerate_prepare(
    accelerator: Any,
    strategy: Strategy,
    model: nn.Module,
    lr: float,
    *objects: Any,
    weight_decay: float = 0.01,
) -> tuple[Any, ...]:
    """`accelerator.prepare(model, optimizer, *objects)` with the strategy's optimizer.

    Returns `(model, optimizer, *objects)` prepared. Run the strategy's callbacks yourself with
    `TrainState(model=accelerator.unwrap_model(model), optimizer=optimizer, ...)`.
    """
    check_world_size(strategy, accelerator.num_processes)
    optimizer = make_optimizer(strategy, model, lr, weight_decay)
    return tuple(accelerator.prepare(model, optimizer, *objects))
