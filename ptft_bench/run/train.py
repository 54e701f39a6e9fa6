"""The training loop: strategy-agnostic, built on Accelerate.

Everything strategy-specific reaches this loop through the contract: the model the strategy
prepared, its parameter groups and its callbacks. There is no strategy name in this file.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ptft_bench.config import Budget, Schedule
from ptft_bench.strategy.callbacks import TrainCallback, TrainState
from ptft_bench.tasks import encode as D
from ptft_bench.tasks.metrics import compute_metrics, predictions


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite loss, ...); recorded as failed, the sweep continues."""


@dataclass
class FitResult:
    validation: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps: int = 0
    train_samples: int = 0
    train_tokens: int = 0  # non-padding tokens seen in training
    padded_positions: int = 0  # positions fed to the model in training (tokens + padding)
    # split -> metrics and predicted class ids (or values) of the best state, in split order:
    # "validation", "test" and further test splits by name ("test_mismatched")
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    # why training ended: {"reason": "budget" | "early_stopping" | "pruned", "epochs_run",
    # "epochs_budget", "still_improving": the best epoch was the last of a full budget}
    stop: dict[str, Any] = field(default_factory=dict)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) for k, v in batch.items()}


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    split: D.EncodedSplit,
    pad_id: int,
    batch_size: int,
    accelerator: Accelerator,
    cache: Any = None,
    split_name: str = "",
) -> np.ndarray:
    """Logits for every example of `split`, in the split's order (sharded across processes)."""
    # The bare model, not the DDP wrapper: DDP's forward broadcasts buffers (a collective), and
    # the processes hold different numbers of evaluation batches (a split of 12 rows is one
    # batch: rank 0 runs it, rank 1 none), so the wrapped forward deadlocks multi-process runs.
    model = accelerator.unwrap_model(model)
    model.eval()
    batches = D.eval_batches(split.lengths, batch_size)
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for b in mine:
        batch = _to_device(D.collate(split, b, pad_id), accelerator.device)
        batch.pop("labels")
        if cache is not None:
            cache.set_batch(split_name, b, batch["input_ids"].shape[1])
        with accelerator.autocast():
            logits = model(**batch).logits
        out.append((b, logits.float().cpu().numpy()))
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        out = gather_object(out)
    if not out:
        return np.zeros((0, 1), dtype=np.float32)
    idx = np.concatenate([i for i, _ in out])
    logits = np.concatenate([lg for _, lg in out])
    result = np.empty_like(logits)
    result[idx] = logits
    return result


LM_EVAL_BATCH = 16  # logits over a vocabulary of ~50k: 16 x 100 positions x 50k floats = 320 MB


@torch.no_grad()
def lm_losses(
    model: torch.nn.Module, split: D.EncodedSplit, pad_id: int, batch_size: int, accelerator
) -> np.ndarray:
    """Each example's mean next-token loss on its target tokens (generation pairs)."""
    model = accelerator.unwrap_model(model)
    model.eval()
    out = np.zeros(len(split), dtype=np.float64)
    for b in D.eval_batches(split.lengths, min(batch_size, LM_EVAL_BATCH)):
        batch = _to_device(D.collate(split, b, pad_id), accelerator.device)
        labels = batch.pop("labels")
        with accelerator.autocast():
            logits = model(**batch).logits
        # prompt methods prepend virtual positions; position t predicts token t + 1; -100
        # (prompt, padding) carries no loss
        logits = logits[:, -labels.shape[1] :]
        logits, labels = logits[:, :-1].float(), labels[:, 1:]
        tok = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        counted = (labels != -100).sum(dim=1).clamp(min=1)
        out[b] = (tok.sum(dim=1) / counted).cpu().numpy()
    return out


def evaluate(
    model, split, spec, pad_id, batch_size, accelerator, cache=None, name=""
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of `split` and the predictions (class ids or values) they were computed from.

    Generation pairs: the mean target-token loss ({"loss", "neg_loss"}; per-example losses as
    predictions). Decoded text is scored after training (`ptft_bench.run.generation`)."""
    if getattr(spec, "is_generation", False):
        losses = lm_losses(model, split, pad_id, batch_size, accelerator)
        weights = np.array([max(int((t != -100).sum()), 1) for t in split.token_labels])
        loss = float((losses * weights).sum() / weights.sum()) if len(losses) else math.nan
        return {"loss": loss, "neg_loss": -loss}, losses
    logits = predict(model, split, pad_id, batch_size, accelerator, cache, name)
    return compute_metrics(spec, logits, split.labels), predictions(spec, logits)


def score(
    model: torch.nn.Module,
    encoded: dict[str, D.EncodedSplit],
    spec: Any,
    budget: Budget,
    accelerator: Accelerator,
    pad_id: int,
) -> FitResult:
    """Validation and test metrics (and predictions) of a model fitted without this loop."""
    result = FitResult({}, {}, 0)
    t0 = time.perf_counter()
    for name in ["validation", *sorted(k for k in encoded if k.startswith("test"))]:
        metrics, preds = evaluate(
            model, encoded[name], spec, pad_id, budget.eval_batch_size, accelerator
        )
        result.metrics[name], result.predictions[name] = metrics, preds
    result.validation, result.test = result.metrics["validation"], result.metrics["test"]
    result.eval_seconds = time.perf_counter() - t0
    return result


def fit(
    model: torch.nn.Module,
    param_groups: list[dict[str, Any]],
    encoded: dict[str, D.EncodedSplit],
    spec: Any,
    budget: Budget,
    seed: int,
    accelerator: Accelerator,
    pad_id: int,
    callbacks: list[TrainCallback] = (),
    get_state: Any = None,
    set_state: Any = None,
    progress: bool = True,
    desc: str = "train",
    cache: Any = None,
) -> FitResult:
    """Train, evaluate on validation each epoch, keep the best state, score test with it.

    `get_state()` / `set_state(state)` snapshot and restore what the strategy trains (the best
    epoch's weights); by default the whole state dict. With a `FrozenPrefixCache`, the frozen
    bottom of the model is replaced by cached hidden states for training and evaluation.
    """
    schedule = budget.schedule(len(encoded["train"]), accelerator.num_processes)
    if accelerator.num_processes > 1 and any(cb.changes_trainable_set() for cb in callbacks):
        # DDP only synchronises parameters that required grad when it wrapped the model: a layer
        # unfrozen later would drift apart between processes.
        raise TrainingError(
            "this strategy changes which parameters train during training, which DDP cannot "
            "follow; run it with a single process"
        )
    optimizer, scheduler = _optimizer(param_groups, budget, schedule, accelerator.device)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    base = accelerator.unwrap_model(model)
    get_state = get_state or (lambda: {k: v.detach().clone() for k, v in base.state_dict().items()})
    set_state = set_state or base.load_state_dict
    if cache is not None:  # the strategy's state uses the model's original parameter names
        get_state, set_state = cache.wrap(get_state), cache.wrap(set_state)
        cache.install()
    loop = _Loop(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        base=base,
        encoded=encoded,
        spec=spec,
        budget=budget,
        schedule=schedule,
        seed=seed,
        accelerator=accelerator,
        pad_id=pad_id,
        callbacks=list(callbacks),
        get_state=get_state,
        set_state=set_state,
        cache=cache,
    )
    try:
        return loop.run(progress, desc)
    finally:
        if cache is not None:
            cache.uninstall()


@dataclass
class _Loop:
    """The state of one `fit`: epochs of training, validation with best-state keeping, test."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    base: torch.nn.Module  # the unwrapped model callbacks see
    encoded: dict[str, D.EncodedSplit]
    spec: Any
    budget: Budget
    schedule: Schedule
    seed: int
    accelerator: Accelerator
    pad_id: int
    callbacks: list[TrainCallback]
    get_state: Any
    set_state: Any
    cache: Any

    def run(self, progress: bool, desc: str) -> FitResult:
        self.result = FitResult({}, {}, 0, [])
        self.state = TrainState(
            self.base,
            self.optimizer,
            0,
            0,
            self.schedule.steps_per_epoch,
            self.schedule.total_steps,
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.step, self.t_train = 0, 0.0
        self.bar = tqdm(
            total=self.schedule.total_steps,
            desc=desc,
            leave=False,
            dynamic_ncols=True,
            disable=not (progress and self.accelerator.is_main_process),
        )
        for cb in self.callbacks:
            cb.on_train_begin(self.state)
        best_state = self._train_and_select()
        self.bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self.state)

        self.set_state(best_state)  # the best epoch's weights score the test split(s)
        for name in sorted(k for k in self.encoded if k.startswith("test")):
            self.result.metrics[name], self.result.predictions[name] = self._evaluate(name)
        self.result.test = self.result.metrics.get("test", {})  # generation: scored on decoding
        self.result.train_seconds = self.t_train
        self.result.steps = self.step
        return self.result

    def _train_and_select(self) -> Any:
        """Epochs of training; after each, validation. Returns the best epoch's state."""
        best_score, best_state, bad_epochs, reason = -math.inf, None, 0, "budget"
        epoch = 0
        for epoch in range(self.schedule.epochs):
            self._train_epoch(epoch)
            val_metrics, val_preds = self._evaluate("validation")
            self.result.history.append(
                {"step": self.step, "epoch": epoch + 1, "validation": val_metrics}
            )
            score = val_metrics[selection_metric(self.spec)]
            score = score if math.isfinite(score) else -math.inf
            if score > best_score or best_state is None:
                best_score, best_state, bad_epochs = score, self.get_state(), 0
                self.result.validation, self.result.best_epoch = val_metrics, epoch + 1
                self.result.metrics["validation"] = val_metrics
                self.result.predictions["validation"] = val_preds
            else:
                bad_epochs += 1
            for cb in self.callbacks:
                cb.on_evaluate(self.state, val_metrics)
            patience = self.budget.early_stopping_patience
            if self.state.stop_reason:
                reason = self.state.stop_reason
            elif patience is not None and bad_epochs >= patience:
                reason = "early_stopping"
            if reason != "budget" or self.step >= self.schedule.total_steps:
                break
        run = epoch + 1
        self.result.stop = {
            "reason": reason,
            "epochs_run": run,
            "epochs_budget": self.schedule.epochs,
            "still_improving": reason == "budget" and run >= 2 and self.result.best_epoch == run,
        }
        return best_state

    def _evaluate(self, name: str) -> tuple[dict[str, float], np.ndarray]:
        t0 = time.perf_counter()
        out = evaluate(
            self.model,
            self.encoded[name],
            self.spec,
            self.pad_id,
            self.budget.eval_batch_size,
            self.accelerator,
            self.cache,
            name,
        )
        self.result.eval_seconds += time.perf_counter() - t0
        return out

    def _train_epoch(self, epoch: int) -> None:
        acc, budget, train, res = self.accelerator, self.budget, self.encoded["train"], self.result
        world, lengths = acc.num_processes, train.lengths
        self.state.epoch = epoch
        for cb in self.callbacks:
            cb.on_epoch_begin(self.state)
        if budget.length_grouping:
            batches = D.length_grouped_batches(lengths, budget.batch_size, self.seed, epoch)
        else:
            batches = D.random_batches(len(train), budget.batch_size, self.seed, epoch)
        # Each process takes every world-th batch; equal counts keep DDP's collectives in step.
        batches = batches[: self.schedule.steps_per_epoch * world][acc.process_index :: world]
        self.model.train()
        t0 = time.perf_counter()
        running, running_n = 0.0, 0
        for b in batches:
            if self.step >= self.schedule.total_steps:
                break
            batch = _to_device(D.collate(train, b, self.pad_id), acc.device)
            if self.cache is not None:
                self.cache.set_batch("train", b, batch["input_ids"].shape[1])
            with acc.autocast():
                loss = self.model(**batch).loss
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss.item()}) at step {self.step}")
            acc.backward(loss)
            if budget.grad_clip:
                acc.clip_grad_norm_(self.params, budget.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            width = int(lengths[b].max())
            self.state.global_step = self.step
            self.state.batch_width, self.state.batch_positions = width, width * len(b) * world
            for cb in self.callbacks:  # before zero_grad: AdaLoRA's rank allocation reads grads
                cb.on_step_end(self.state)
            self.optimizer.zero_grad(set_to_none=True)
            res.train_samples += len(b) * world
            res.train_tokens += int(lengths[b].sum()) * world
            res.padded_positions += width * len(b) * world
            running, running_n = running + loss.item(), running_n + 1
            if self.step % budget.log_every == 0 or self.step == self.schedule.total_steps:
                res.history.append(
                    {
                        "step": self.step,
                        "epoch": round(self.step / self.schedule.steps_per_epoch, 3),
                        "loss": running / running_n,
                        "lr": self.scheduler.get_last_lr()[0],
                    }
                )
                elapsed = self.t_train + time.perf_counter() - t0
                self.bar.set_postfix(
                    loss=f"{running / running_n:.4f}",
                    samples_s=f"{res.train_samples / elapsed:.1f}",
                )
                running, running_n = 0.0, 0
            self.bar.update(1)
        self.t_train += time.perf_counter() - t0


def selection_metric(spec) -> str:
    """What picks the best epoch: the primary metric, or (generation) the negated val loss."""
    return getattr(spec, "selection_metric", None) or spec.primary_metric


def _optimizer(param_groups, budget: Budget, schedule: Schedule, device: torch.device):
    """AdamW over the strategy's groups, with linear warmup and decay."""
    # The fused kernel beats the multi-tensor loop on GPU and on CPU too: measured here on
    # MiniLM-L6 full fine-tuning, 0.024 s vs 0.095 s per optimizer step (2 cores).
    optimizer = torch.optim.AdamW(param_groups, fused=True)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(budget.warmup_ratio * schedule.total_steps), schedule.total_steps
    )
    return optimizer, scheduler
