"""Cost meters: parameters, peak memory, checkpoint size, and the device's peak FLOP/s.

Training FLOPs are counted in `ptft_bench.cost.flops`.
"""

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
from ptft_bench.models.parts import ModelParts, find_parts, param_count, unique_named_parameters


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
        total += param_count(p)
        is_trainable = p.requires_grad if trainable_names is None else n in trainable_names
        if is_trainable:
            trainable += param_count(p)
            if parts.layer_of(n) == parts.num_layers + 1:
                head += param_count(p)
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
