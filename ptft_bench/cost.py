"""Cost meters: parameters, peak memory, checkpoint size and a strategy-aware FLOPs estimate."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ptft_bench import atomic
from ptft_bench.callbacks import TrainCallback, TrainState
from ptft_bench.model_parts import ModelParts, find_parts, unique_named_parameters


@dataclass
class ParamCounts:
    trainable: int
    total: int
    trainable_head: (
        int  # the task head's share of `trainable` (papers disagree whether to count it)
    )


def count_params(
    model: nn.Module, trainable_names: set[str] | None = None, parts: ModelParts | None = None
) -> ParamCounts:
    """Trainable / total parameters; `trainable_names` overrides requires_grad (gradual unfreezing)."""
    parts = parts or find_parts(model)
    total = trainable = head = 0
    for n, p in unique_named_parameters(model):
        total += p.numel()
        is_trainable = p.requires_grad if trainable_names is None else n in trainable_names
        if is_trainable:
            trainable += p.numel()
            if parts.layer_of(n) == parts.num_layers + 1:
                head += p.numel()
    return ParamCounts(trainable, total, head)


def checkpoint_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the fine-tune as saved (safetensors of the strategy's trainable state)."""
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous().clone() for k, v in state.items()}))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of one run: CUDA allocator peak, or CPU resident memory sampled during the run.

    On CPU the process's lifetime maximum (ru_maxrss) would carry earlier runs' peaks into later
    ones in a sweep, so a background thread samples the resident set while the run is active.
    """

    def __init__(self, device: torch.device, interval: float = 0.05) -> None:
        self.device = device
        self.interval = interval
        self.peak = 0
        self.baseline = 0  # memory in use when measuring started (model loaded, not yet trained)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = int(torch.cuda.memory_allocated(self.device))
        else:
            self.peak = self.baseline = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak = max(self.peak, _rss_bytes())


# --- FLOPs ------------------------------------------------------------------------------------
#
# Estimate per training token, with N_x the parameters of part x that take part in matmuls
# (embedding lookups cost nothing):
#   forward  = 2 * N_run                       parts that run (cached parts do not, after pass 1)
#   backward = 2 * N_above + 2 * N_trainable   activation gradients through every layer above the
#                                              lowest trainable one, plus weight gradients
# The attention score matmuls (2 * 2 * seq * d per layer and token) are added to forward, and
# twice that to backward above the lowest trainable layer. Evaluation passes are not counted.


@dataclass
class FlopsModel:
    per_layer: list[int]  # matmul parameters of each block
    head: int  # matmul parameters of the head (incl. pooler)
    extra: int  # other backbone matmul parameters (e.g. ELECTRA's embeddings_project)
    hidden: int
    trainable_matmul: int  # trainable matmul parameters (weight gradients)
    lowest_trainable_layer: int  # 0 = embeddings, i = block i-1 (1-based), L+1 = head only


def flops_model(
    model: nn.Module, trainable_names: set[str] | None = None, parts: ModelParts | None = None
) -> FlopsModel:
    parts = parts or find_parts(model)
    L = parts.num_layers
    per_layer = [0] * L
    head = extra = trainable = 0
    lowest = L + 1
    emb_ids = {id(p) for p in parts.embeddings.parameters()}
    for n, p in unique_named_parameters(model):
        is_tr = p.requires_grad if trainable_names is None else n in trainable_names
        layer = parts.layer_of(n)
        if is_tr and layer is not None:
            lowest = min(lowest, layer)
        if p.ndim < 2 or id(p) in emb_ids:
            continue  # biases/norm weights: negligible; embeddings: lookups, not matmuls
        if is_tr:
            trainable += p.numel()
        if layer is not None and 1 <= layer <= L:
            per_layer[layer - 1] += p.numel()
        elif layer == L + 1:
            head += p.numel()
        else:
            extra += p.numel()
    hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
    return FlopsModel(per_layer, head, extra, hidden, trainable, lowest)


def train_flops_per_token(fm: FlopsModel, seq_len: float, first_cached_layer: int = 0) -> float:
    """FLOPs per training token; `first_cached_layer` = number of bottom blocks served from cache."""
    attn = 4 * seq_len * fm.hidden  # QK^T and AV, 2 FLOPs per multiply-add
    fwd = 2 * fm.head
    fwd += sum(2 * n + attn for n in fm.per_layer[first_cached_layer:])
    if first_cached_layer == 0:
        fwd += 2 * fm.extra
    # activation gradients flow down to the lowest trainable layer (block index = layer - 1)
    lo_block = max(fm.lowest_trainable_layer - 1, 0)
    bwd = 2 * fm.head + sum(2 * n + 2 * attn for n in fm.per_layer[lo_block:])
    bwd += 2 * fm.trainable_matmul
    return float(fwd + bwd)


def prefix_forward_flops(fm: FlopsModel, seq_len: float, cached_layers: int) -> float:
    """FLOPs per token of one forward pass through the `cached_layers` bottom blocks."""
    attn = 4 * seq_len * fm.hidden
    return float(2 * fm.extra + sum(2 * n + attn for n in fm.per_layer[:cached_layers]))


def peak_flops_per_second(device: torch.device) -> tuple[float | None, str]:
    """The device's peak: datasheet for known GPUs, a cached matmul probe on CPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_BF16_PEAK.items():
            if key in name:
                return peak, f"datasheet ({name}, dense bf16)"
        return None, f"unknown GPU {name}"
    return cpu_peak_flops(), "matmul probe (fp32, this machine)"


# Dense bf16 tensor-core peaks from NVIDIA datasheets (FLOP/s).
GPU_BF16_PEAK = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
    "L4": 121e12,
    "V100": 125e12,
    "T4": 65e12,
}


def cpu_peak_flops(size: int = 1024, repeats: int = 8) -> float:
    """Best-of-n fp32 matmul FLOP/s on this machine, measured once and cached per machine."""
    cache = Path(os.environ.get("PTFT_CACHE", Path.home() / ".cache" / "ptft_bench"))
    key = f"{os.uname().nodename}-{torch.get_num_threads()}threads-{torch.__version__}"
    path = cache / "cpu_peak.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return float(known[key])
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    peak = 2 * size**3 / best
    known[key] = peak
    try:
        atomic.write_json(path, known)
    except OSError:  # a read-only home: measure again next time
        pass
    return peak


class FlopsMeter(TrainCallback):
    """Adds up training FLOPs step by step, with the trainable set in force at each step.

    Strategies that unfreeze layers during training (gradual unfreezing) pay for the backward
    pass through a layer only once it trains; a single estimate from the final trainable set
    would overcount their early steps. Put the meter first among the callbacks, so it sees the
    set that the step used before a strategy's callback changes it.
    """

    def __init__(self, fm: FlopsModel, parts: ModelParts, first_cached_layer: int = 0):
        self.parts = parts
        self.first_cached_layer = first_cached_layer
        self._params = [p for _, p in unique_named_parameters(parts.model)]
        # the set the strategy trains now (gradual unfreezing: its currently unfrozen part)
        self._fm = fm
        self._signature = self._current()
        self.total = 0.0

    def _current(self) -> tuple[bool, ...]:
        return tuple(p.requires_grad for p in self._params)

    def on_step_end(self, state: TrainState) -> None:
        sig = self._current()
        if sig != self._signature:  # only strategies that unfreeze (never with the cache)
            self._fm = flops_model(self.parts.model, parts=self.parts)
            self._signature = sig
        per_token = train_flops_per_token(self._fm, state.batch_width, self.first_cached_layer)
        self.total += per_token * state.batch_positions
