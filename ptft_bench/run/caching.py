"""Frozen-prefix caching: compute the frozen bottom of the network once, train the rest.

When a strategy leaves the embeddings and the bottom `f` blocks frozen (head-only: every block;
top-k: all but k), their output never changes during training. We run them once per example, in
eval mode, keep the hidden states leaving block `f - 1`, and during training the first `f`
entries of the block list are stand-ins (`Replay`) that return those states, in the format the
blocks return, whatever they are given. Everything else is the model's own forward: the
embeddings still run (lookups; ELECTRA's small projection) so that whatever the backbone derives from them and from
the inputs before the blocks is computed as always: decoders' causal masks and rotary position
embeddings, GPT-2's learned positions, ModernBERT's local / global masks, DeBERTa's relative
positions. The list keeps its length, so a block's index (Qwen2's per-layer attention type,
`layer_types[i]`) and every parameter name stay as they were; the head, pooling and loss run
unchanged. An architecture whose backbone does something the stand-in cannot reproduce is caught
by the check in `prepare_cache` (cached and uncached logits compared) and trains uncached, with
the reason recorded.

Semantics (explicit, selectable with `budget.frozen_cache`): the cached layers run WITHOUT
dropout, i.e. as in evaluation. Without the cache the frozen layers run in train mode, with
dropout, every epoch. Nothing here knows strategy names: the plan is read off `requires_grad`.

Why hand-written: neither transformers nor peft offers feature caching for partially frozen
models (the Trainer always runs the whole network).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ptft_bench.models.parts import ModelParts
from ptft_bench.tasks import encode as D


@dataclass
class CachePlan:
    first_trainable_block: int  # f: blocks[:f] and the embeddings are frozen
    num_layers: int
    reason: str = ""


def plan_cache(
    parts: ModelParts, trainable: set[str], changes_trainable_set: bool
) -> CachePlan | str:
    """A `CachePlan`, or the reason why caching does not apply."""
    if changes_trainable_set:
        return "the strategy unfreezes layers during training"
    layers = []
    for name in trainable:
        layer = parts.layer_of(name)
        if layer is None:
            return f"trainable parameter {name} is outside the embeddings, blocks and head"
        layers.append(layer)
    if not layers:
        return "nothing is trainable"
    f = min(layers) - 1  # layer numbering: 0 embeddings, 1..L blocks, L+1 head
    if f < 1:
        return "the embeddings or the first block train"
    return CachePlan(min(f, parts.num_layers), parts.num_layers)


class CachedBatch:
    """The cached states of the current batch, shared by the stand-ins (not an nn.Module)."""

    current: torch.Tensor | None = None
    tuple_len = 0  # 0: the blocks return a tensor; n: a tuple of n (attention weights: None)


class Replay(nn.Module):
    """Stands in for one frozen block: returns the cached states of the batch, shaped like the
    blocks' own output, whatever it is given. Attributes the backbone reads off its blocks in the
    loop (ModernBERT's `attention_type`) come from the block it replaces, which is referenced,
    not registered: its parameters are not the stand-in's."""

    def __init__(self, block: nn.Module, batch: CachedBatch) -> None:
        super().__init__()
        self.__dict__["replaced"] = block
        self.__dict__["batch"] = batch

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["replaced"], name)

    def forward(self, *args, **kwargs):
        batch = self.batch
        if batch.current is None:
            raise RuntimeError("cached batch not set")
        if batch.tuple_len:
            return (batch.current, *[None] * (batch.tuple_len - 1))
        return batch.current


def _eval_mode(module: nn.Module, _args) -> None:
    """Forward pre-hook: the module (frozen, its output discarded) runs without dropout."""
    module.train(False)


class FrozenPrefixCache:
    """Hidden states entering block f for every example of every split, and the model surgery."""

    def __init__(self, parts: ModelParts, plan: CachePlan, device: torch.device) -> None:
        self.model = parts.model
        self.plan = plan
        self.device = device
        self.parts = parts
        self.states: dict[str, list[torch.Tensor]] = {}
        self.batch = CachedBatch()
        parent, _, attr = self.parts.blocks_prefix.rpartition(".")
        self._blocks_owner = self.model.get_submodule(parent)
        self._blocks_attr = attr
        self._blocks_full = getattr(self._blocks_owner, attr)
        self.installed = False
        self._eval_hook = None
        self.nbytes = 0

    @torch.no_grad()
    def build(
        self,
        encoded: dict[str, D.EncodedSplit],
        pad_id: int,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Run embeddings + blocks[:f] once per example in eval mode.

        The state entering block f is read from block f-1's output by a hook, not from the
        backbone's `hidden_states`: those may carry what the backbone does after its blocks (a
        decoder's final norm, or a pooling hook on the blocks' owner, `ptft_bench.models.pooling`).
        """
        f = self.plan.first_trainable_block
        was_training = self.model.training
        self.model.eval()
        seen: list[torch.Tensor] = []

        def keep(_module, _args, output) -> None:
            self.batch.tuple_len = len(output) if isinstance(output, tuple) else 0
            seen.append(output[0] if isinstance(output, tuple) else output)

        hook = self._blocks_full[f - 1].register_forward_hook(keep)
        setattr(self._blocks_owner, self._blocks_attr, nn.ModuleList(list(self._blocks_full)[:f]))
        try:
            for name, split in encoded.items():
                self.states[name] = self._run_split(split, pad_id, batch_size, dtype, seen)
        finally:
            hook.remove()
            setattr(self._blocks_owner, self._blocks_attr, self._blocks_full)
            self.model.train(was_training)

    def _run_split(self, split, pad_id, batch_size, dtype, seen) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(split)
        for idx in D.eval_batches(split.lengths, batch_size):
            batch = D.collate(split, idx, pad_id)
            batch.pop("labels")
            seen.clear()
            self.parts.backbone(**{k: v.to(self.device) for k, v in batch.items()})
            hs = seen[-1]
            for row, i in enumerate(idx):
                n = len(split.input_ids[i])
                out[i] = hs[row, :n].to(dtype).clone()
                self.nbytes += out[i].numel() * out[i].element_size()
        return out  # type: ignore[return-value]

    def install(self) -> None:
        f = self.plan.first_trainable_block
        blocks = list(self._blocks_full)
        replayed = [Replay(b, self.batch) for b in blocks[:f]] + blocks[f:]
        setattr(self._blocks_owner, self._blocks_attr, nn.ModuleList(replayed))
        # The embeddings still run (see above) but their output is replaced by the cached
        # states: in train mode their dropout would only draw random numbers, which shifts the
        # RNG stream of the trainable layers' dropout (the cached top-k run of
        # benchmarks/results/before-after scored 73.5 instead of 73.8 for that reason alone).
        self._eval_hook = self.parts.embeddings.register_forward_pre_hook(_eval_mode)
        self.installed = True

    def uninstall(self) -> None:
        setattr(self._blocks_owner, self._blocks_attr, self._blocks_full)
        if self._eval_hook is not None:
            self._eval_hook.remove()
            self._eval_hook = None
        self.installed = False

    @contextlib.contextmanager
    def original(self) -> Iterator[None]:
        """The untouched model (what saving and loading the strategy's state see)."""
        was = self.installed
        if was:
            self.uninstall()
        try:
            yield
        finally:
            if was:
                self.install()

    def wrap(self, fn: Callable) -> Callable:
        def inner(*args, **kwargs):
            with self.original():
                return fn(*args, **kwargs)

        return inner

    def set_batch(self, split: str, idx: np.ndarray, width: int) -> None:
        rows = [self.states[split][i] for i in idx]
        hidden = rows[0].shape[-1]
        out = torch.zeros(len(rows), width, hidden, dtype=torch.float32)
        for r, t in enumerate(rows):
            out[r, : t.shape[0]] = t.float()
        self.batch.current = out.to(self.device, non_blocking=True)


def estimate_bytes(encoded: dict[str, D.EncodedSplit], hidden: int, itemsize: int = 4) -> int:
    return sum(int(s.lengths.sum()) for s in encoded.values()) * hidden * itemsize


@torch.no_grad()
def max_logit_difference(
    cache: FrozenPrefixCache, split: D.EncodedSplit, name: str, pad_id: int, n: int = 16
) -> float:
    """Eval-mode logits with and without the cache on the first `n` examples of a split.

    Infinite when the cached forward fails (an architecture the stand-in does not fit).
    """
    model = cache.model
    was = model.training
    model.eval()
    idx = np.arange(min(n, len(split)))
    batch = D.collate(split, idx, pad_id)
    batch.pop("labels")
    batch = {k: v.to(cache.device) for k, v in batch.items()}
    try:
        with cache.original():
            ref = model(**batch).logits
        cache.install()
        cache.set_batch(name, idx, batch["input_ids"].shape[1])
        got = model(**batch).logits
    except Exception:  # noqa: BLE001 - an architecture the stand-in does not fit
        return float("inf")
    finally:
        cache.uninstall()
        model.train(was)
    return float((ref.float() - got.float()).abs().max())


def prepare_cache(
    parts: ModelParts,
    trainable: set[str],
    changes_trainable_set: bool,
    encoded: dict[str, D.EncodedSplit],
    budget: Any,
    pad_id: int,
    device: torch.device,
) -> tuple[FrozenPrefixCache | None, dict[str, Any]]:
    """A built, verified cache when the frozen set allows it, and what to record about it.

    The cache is checked against the full model on validation examples (eval mode); when the
    logits differ (an architecture the surgery does not fit) training runs uncached.
    """
    if budget.frozen_cache == "off":
        return None, {"used": False, "reason": "disabled (budget.frozen_cache = off)"}
    plan = plan_cache(parts, trainable, changes_trainable_set)
    if isinstance(plan, str):
        return None, {"used": False, "reason": plan}
    config = parts.model.config
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "dim", 0))
    need = estimate_bytes(encoded, hidden)
    if need > budget.cache_max_mb * 2**20:
        return None, {"used": False, "reason": f"needs {need / 2**20:.0f} MiB > cache_max_mb"}
    t0 = time.perf_counter()
    parts.model.to(device)
    cache = FrozenPrefixCache(parts, plan, device)
    try:
        cache.build(encoded, pad_id, budget.eval_batch_size)
    except Exception as e:  # noqa: BLE001 - fall back to the uncached path, say why
        cache.uninstall()
        return None, {"used": False, "reason": f"cache build failed: {type(e).__name__}: {e}"[:300]}
    diff = max_logit_difference(cache, encoded["validation"], "validation", pad_id)
    if not diff <= 1e-4:
        return None, {"used": False, "reason": f"cached logits differ by {diff:.2e}"}
    return cache, {
        "used": True,
        "first_trainable_block": plan.first_trainable_block,
        "bytes": cache.nbytes,
        "build_seconds": time.perf_counter() - t0,
        "semantics": "frozen layers computed once in eval mode (no dropout)",
    }
