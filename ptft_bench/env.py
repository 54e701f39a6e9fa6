"""What a number was measured on: library versions, device, CPU model, threads, git commit.

One description for fine-tuning runs, pretraining runs and the benchmarks, so that every
timing in the project names the machine it came from (timings differ 2x between 2-core CPUs).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout the code runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name (what `lscpu` shows as "Model name")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def library_versions() -> dict[str, str | None]:
    import accelerate
    import peft
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def describe(device: Any = None, **extra: Any) -> dict[str, Any]:
    """Versions, device, CPU, threads, cores, platform and git commit, plus `extra` fields."""
    import torch

    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {
        **library_versions(),
        "device": getattr(device, "type", str(device)),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "cores_available": cores,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        **extra,
    }
