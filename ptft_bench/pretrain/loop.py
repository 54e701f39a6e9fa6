"""The pretraining loop: AdamW + linear warmup/decay, checkpoints, exact resume, held-out metrics.

Everything random is a function of (seed, step) or restored from the checkpoint, so a run stopped
at step k and resumed trains to bit-identical weights (tested):

- batch order: block ``q = step * batch_size + i`` of the stream of per-epoch permutations, each
  permutation seeded by (seed, epoch), so the data position is just ``step``;
- masking: the collator's generator is reseeded from (seed, step) for every batch;
- dropout: torch / numpy / python RNG states are saved with each checkpoint and restored;
- optimizer and scheduler state are saved whole.

Held-out metrics use one fixed masking seed (``EVAL_MASK_SEED``), so "before" and "after" (and two
runs on the same held-out documents) score the same masked positions.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ptft_bench.atomic import replace_dir
from ptft_bench.errors import UserError
from ptft_bench.pretrain.blocks import Blocks
from ptft_bench.pretrain.collate import MLMCollator, causal_batch, make_mlm_collator, mlm_batch
from ptft_bench.pretrain.heads import HEAD_ATTRIBUTES, lm_loss

EVAL_MASK_SEED = 20240229
CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainConfig:
    """Training budget and optimisation settings (validated in ``__post_init__``)."""

    objective: str = field(default="mlm", metadata={"help": "mlm (masked LM) or clm (causal LM)"})
    batch_size: int = field(default=16, metadata={"help": "blocks per step"})
    max_steps: int | None = field(
        default=None,
        metadata={"help": "optimizer steps (0 = write the initial model, no training)"},
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "budget in tokens (steps = ceil)"}
    )
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on bias/norms)"}
    )
    warmup_ratio: float = field(
        default=0.06, metadata={"help": "share of steps with linear warmup"}
    )
    warmup_steps: int | None = field(default=None, metadata={"help": "overrides warmup_ratio"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient-norm clip (0 = off)"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every n steps (0 = end only)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many checkpoints to keep"})
    seed: int = field(default=0, metadata={"help": "data order, masking and dropout seed"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of tokens selected"})
    whole_word_mask: bool = field(default=False, metadata={"help": "mask whole words"})
    sparse: bool = field(default=True, metadata={"help": "project only where a loss is needed"})
    eval_batch_size: int = field(default=32, metadata={"help": "blocks per held-out batch"})
    max_eval_blocks: int = field(default=128, metadata={"help": "cap on held-out blocks scored"})
    log_every: int = field(default=10, metadata={"help": "history entry every n steps"})
    fit_head_steps: int = field(
        default=0,
        metadata={"help": "first train only a freshly added LM head for n steps (before 'before')"},
    )
    fit_head_lr: float = field(default=1e-3, metadata={"help": "learning rate of the head fit"})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar"})

    def __post_init__(self) -> None:
        if self.objective not in ("mlm", "clm"):
            raise UserError(f"unknown --objective {self.objective!r}: use mlm or clm")
        if self.max_steps is None and self.max_tokens is None:
            raise UserError("no budget: pass --max-steps N or --max-tokens N")
        for name in ("batch_size", "eval_batch_size", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.max_steps is not None and self.max_steps < 0:
            raise UserError(f"--max-steps must be >= 0 (0 = no training), got {self.max_steps}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.fit_head_steps < 0 or self.fit_head_lr <= 0:
            raise UserError(
                f"need --fit-head-steps >= 0 and --fit-head-lr > 0, got {self.fit_head_steps}, "
                f"{self.fit_head_lr}"
            )
        if not 0 < self.mlm_probability < 1:
            raise UserError(f"--mlm-probability must be in (0, 1), got {self.mlm_probability}")
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1:
            raise UserError(
                f"need --lr > 0 and 0 <= --warmup-ratio < 1, got {self.lr}, {self.warmup_ratio}"
            )

    def total_steps(self, block_size: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return math.ceil(self.max_tokens / (self.batch_size * block_size))


@dataclass
class TrainState:
    """What a checkpoint stores besides tensors: the data position is ``step``."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    before: dict[str, float] | None = None
    head_fit: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int) -> list[int]:
    """Block indices of batch ``step``: a deterministic function of (step, seed)."""
    out, perms = [], {}
    for q in range(step * batch_size, (step + 1) * batch_size):
        epoch = q // n_blocks
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n_blocks)
        out.append(int(perms[epoch][q % n_blocks]))
    return out


def make_collator(tokenizer, cfg: TrainConfig, seed: int) -> MLMCollator | None:
    """The masking collator of a masked-LM run (None for causal LM: its labels need no draw)."""
    if cfg.objective != "mlm":
        return None
    return make_mlm_collator(tokenizer, cfg.mlm_probability, cfg.whole_word_mask, seed)


def make_batch(
    blocks: Blocks, index: list[int], cfg: TrainConfig, collator, mask_seed: int
) -> dict:
    if cfg.objective == "clm":
        return causal_batch(blocks.input_ids[index])
    collator.reseed(mask_seed)
    return mlm_batch(collator, blocks.features(index))


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def evaluate(
    model, batches: list[dict], device: torch.device, cfg: TrainConfig
) -> dict[str, float]:
    """Token-weighted held-out loss, perplexity and (masked LM) masked-token accuracy."""
    if not batches:
        return {}
    was_training = model.training
    model.eval()
    total, n, correct = 0.0, 0, 0
    with torch.no_grad():
        for batch in batches:
            out = lm_loss(model, _to(batch, device), sparse=cfg.sparse)
            total += float(out.loss) * out.num_targets
            n += out.num_targets
            correct += out.num_correct
    model.train(was_training)
    loss = total / max(n, 1)
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "target_tokens": n}
    if cfg.objective == "mlm":
        metrics["masked_accuracy"] = correct / max(n, 1)
    return metrics


def eval_batches(blocks: Blocks, tokenizer, cfg: TrainConfig) -> list[dict]:
    """Held-out batches, masked once with the fixed ``EVAL_MASK_SEED``."""
    n = min(len(blocks), cfg.max_eval_blocks)
    collator = make_collator(tokenizer, cfg, EVAL_MASK_SEED)
    batches = []
    for start in range(0, n, cfg.eval_batch_size):
        index = list(range(start, min(n, start + cfg.eval_batch_size)))
        batches.append(make_batch(blocks, index, cfg, collator, EVAL_MASK_SEED + start))
    return batches


def _optimizer_and_scheduler(model, cfg: TrainConfig, total: int):
    """AdamW (weight decay on matrices only) and a linear warmup / decay over ``total`` steps."""
    from transformers import get_scheduler

    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # Biases and norm weights are offsets and scales: decaying them only hurts.
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_ratio * total)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=warmup, num_training_steps=total
    )
    return optimizer, scheduler


def _rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Finished checkpoints, oldest first (unfinished ones are temporary folders, never listed)."""
    root = out_dir / CHECKPOINT_DIR
    return sorted(root.glob("step-*")) if root.is_dir() else []


def save_checkpoint(
    out_dir: Path, model, optimizer, scheduler, state: TrainState, keep: int, meta: dict
) -> Path:
    """Write a checkpoint atomically (temporary folder, then rename) and prune old ones."""
    root = out_dir / CHECKPOINT_DIR
    final = root / f"step-{state.step:07d}"
    tmp = root / f".tmp-step-{state.step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"state": asdict(state), "meta": meta}, indent=1))
    replace_dir(tmp, final)
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model, optimizer, scheduler, meta: dict) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states; the settings must match ``meta``."""
    saved = json.loads((path / "state.json").read_text())
    diff = sorted(k for k in set(meta) | set(saved["meta"]) if meta.get(k) != saved["meta"].get(k))
    if diff:
        raise UserError(
            f"cannot resume from {path}: settings differ ({', '.join(diff)}); use the original "
            "flags or a new --out"
        )
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return TrainState(**saved["state"])


def head_only_parameters(model) -> list[torch.nn.Parameter]:
    """Parameters of the LM head that are not shared with the input embeddings (a tied decoder)."""
    head = next(
        (
            getattr(model, a)
            for a in HEAD_ATTRIBUTES
            if isinstance(getattr(model, a, None), torch.nn.Module)
        ),
        None,
    )
    if head is None:
        return []
    shared = {id(p) for p in model.get_input_embeddings().parameters()}
    return [p for p in head.parameters() if id(p) not in shared]


def fit_head(
    model, train_blocks: Blocks, held: list[dict], tokenizer, cfg: TrainConfig, device
) -> dict[str, Any]:
    """Train only the (fresh) LM head for ``cfg.fit_head_steps`` steps, everything else frozen.

    A model that ships without an LM head (MiniLM) scores near-chance on held-out MLM with a
    random head, so "before" would measure the head, not the encoder. Fitting the head first on
    the same training blocks (its own data order and masking seeds, constant learning rate) makes
    "before" the frozen encoder's score and the before/after gap the encoder's adaptation.
    """
    params = head_only_parameters(model)
    if not params:
        raise UserError("--fit-head-steps: the model has no separate LM head to fit")
    frozen = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in frozen)
    fresh = evaluate(model, held, device, cfg)
    optimizer = torch.optim.AdamW(params, lr=cfg.fit_head_lr, weight_decay=0.0)
    collator = make_collator(tokenizer, cfg, cfg.seed)
    tokens, t0, losses = 0, time.perf_counter(), []
    model.train()
    for step in range(cfg.fit_head_steps):
        index = batch_indices(step, len(train_blocks), cfg.batch_size, cfg.seed + 1_000_003)
        seed = (cfg.seed << 32) + (1 << 31) + step  # never a main-loop masking seed
        batch = _to(make_batch(train_blocks, index, cfg, collator, seed), device)
        out = lm_loss(model, batch, sparse=cfg.sparse)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
        tokens += int(batch["input_ids"].numel())
    for p, flag in flags:
        p.requires_grad_(flag)
    return {
        "steps": cfg.fit_head_steps,
        "lr": cfg.fit_head_lr,
        "tokens": tokens,
        "seconds": round(time.perf_counter() - t0, 3),
        "last_loss": losses[-1] if losses else None,
        "fresh_head": fresh,
    }


def _checkpoint_meta(meta: dict | None, cfg: TrainConfig) -> dict:
    """Settings that must not change across a resume, in the form ``state.json`` holds them."""
    meta = {**(meta or {}), "train": {k: v for k, v in asdict(cfg).items() if k != "progress"}}
    return json.loads(json.dumps(meta))  # what state.json will hold, so comparisons are exact


def _fresh_state(
    model, train_blocks: Blocks, held: list[dict], tokenizer, cfg: TrainConfig, device
) -> TrainState:
    """Seed every RNG, fit a fresh head if asked, and score the model "before" training."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    head_fit = None
    if cfg.fit_head_steps:
        head_fit = fit_head(model, train_blocks, held, tokenizer, cfg, device)
        torch.manual_seed(cfg.seed)  # the main run's dropout does not depend on the head fit
    return TrainState(before=evaluate(model, held, device, cfg), head_fit=head_fit)


def _train_step(
    model,
    blocks: Blocks,
    collator,
    optimizer,
    scheduler,
    cfg: TrainConfig,
    state: TrainState,
    device,
) -> float:
    """One optimizer step on batch ``state.step``; advances ``state`` and returns the loss."""
    t0 = time.perf_counter()
    index = batch_indices(state.step, len(blocks), cfg.batch_size, cfg.seed)
    batch = _to(make_batch(blocks, index, cfg, collator, (cfg.seed << 32) + state.step), device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = lm_loss(model, batch, sparse=cfg.sparse)
    if not torch.isfinite(out.loss):
        raise FloatingPointError(f"loss is {float(out.loss)} at step {state.step}: lower --lr")
    out.loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    loss = float(out.loss.detach())
    state.step += 1
    state.tokens += int(batch["input_ids"].numel())
    state.seconds += time.perf_counter() - t0
    return loss


def train(
    model,
    tokenizer,
    train_blocks: Blocks,
    heldout_blocks: Blocks,
    cfg: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    meta: dict | None = None,
    stop_after: int | None = None,
) -> tuple[TrainState, dict[str, float]]:
    """Train ``model`` on ``train_blocks``; returns (final state, held-out metrics after).

    ``meta`` (settings that must not change across a resume) is stored with each checkpoint.
    ``stop_after`` ends the run early after that many steps (after checkpointing): the test of
    resume uses it to simulate an interrupted run.
    """
    if len(train_blocks) == 0:
        raise UserError("the corpus gives no full training block: add text or lower --block-size")
    meta = _checkpoint_meta(meta, cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    total = cfg.total_steps(block_size=int(train_blocks.input_ids.shape[1]))
    optimizer, scheduler = _optimizer_and_scheduler(model, cfg, total)
    collator = make_collator(tokenizer, cfg, cfg.seed)
    held = eval_batches(heldout_blocks, tokenizer, cfg)
    checkpoints = list_checkpoints(out_dir)
    if resume and checkpoints:
        state = load_checkpoint(checkpoints[-1], model, optimizer, scheduler, meta)
    else:
        state = _fresh_state(model, train_blocks, held, tokenizer, cfg, device)

    model.train()
    bar = tqdm(
        total=total, initial=state.step, desc=f"pretrain {cfg.objective}", disable=not cfg.progress
    )
    end = total if stop_after is None else min(total, stop_after)
    while state.step < end:
        loss = _train_step(model, train_blocks, collator, optimizer, scheduler, cfg, state, device)
        if state.step % cfg.log_every == 0 or state.step == total:
            state.history.append(
                {"step": state.step, "loss": loss, "lr": scheduler.get_last_lr()[0]}
            )
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if (cfg.save_every and state.step % cfg.save_every == 0) or state.step == end:
            save_checkpoint(out_dir, model, optimizer, scheduler, state, cfg.keep_checkpoints, meta)
    bar.close()
    after = evaluate(model, held, device, cfg) if state.step >= total else {}
    return state, after
