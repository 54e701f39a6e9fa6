"""Expand a suite into runs, skip finished ones, train the rest, write one record per run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ptft_bench.config import StrategyVariant, SuiteConfig
from ptft_bench.errors import UserError
from ptft_bench.registry import get_strategy
from ptft_bench.store import RunStore

SCHEMA_VERSION = 1
_NOT_IN_ID = {"log_every", "eval_batch_size", "cache_max_mb"}


@dataclass
class RunSpec:
    """One training run: everything that affects its result, and a stable id derived from it."""

    task: str
    model: str
    variant: StrategyVariant
    resolved_params: dict[str, Any]  # the strategy's full config, defaults included
    lr: float
    seed: int
    suite: str
    budget: dict[str, Any]
    data: dict[str, Any]
    precision: str

    @property
    def key(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "params": self.resolved_params,
            "lr": self.lr,
            "seed": self.seed,
            # settings that change speed or logging but never the numbers stay out of the id
            "budget": {k: v for k, v in self.budget.items() if k not in _NOT_IN_ID},
            "data": {k: v for k, v in self.data.items() if k != "data_dir"},
            "precision": self.precision,
        }

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.task}-{self.variant.name}").strip("-")
        return f"{slug}-{digest}"

    def plan_entry(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "variant": self.variant.label(),
            "strategy_params": self.resolved_params,
            "lr": self.lr,
            "seed": self.seed,
        }


def expand(suite: SuiteConfig) -> list[RunSpec]:
    """tasks x models x strategy variants x learning rates x seeds (validates every variant)."""
    specs = []
    budget = dataclasses.asdict(suite.budget)
    data = dataclasses.asdict(suite.data)
    for variant in suite.strategies:
        try:
            strategy = get_strategy(variant.name, **variant.params)
        except ValueError as e:
            raise UserError(f"strategy {variant.label()}: {e}") from None
        params = strategy.to_dict()["params"]
        lrs = variant.lrs or list(type(strategy).default_lrs)
        for task in suite.tasks:
            for model in suite.models:
                for lr in lrs:
                    for seed in suite.seeds:
                        specs.append(
                            RunSpec(
                                task,
                                model,
                                variant,
                                params,
                                float(lr),
                                int(seed),
                                suite.name,
                                budget,
                                data,
                                suite.precision,
                            )
                        )
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(
            f"the suite lists the same run twice ({dup[0]}): remove the duplicate variant"
        )
    return specs


def shard(specs: list[RunSpec], shard_spec: str | None) -> list[RunSpec]:
    """`i/n`: the i-th of n deterministic slices (0-based), for job arrays on many machines."""
    if not shard_spec:
        return specs
    m = re.fullmatch(r"(\d+)/(\d+)", shard_spec.strip())
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard {shard_spec}: expected i/n with 0 <= i < n, e.g. --shard 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    ordered = sorted(specs, key=lambda s: s.run_id)
    return [s for k, s in enumerate(ordered) if k % n == i]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
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


def environment(accelerator, precision: str) -> dict[str, Any]:
    import accelerate
    import peft
    import torch
    import transformers

    dev = accelerator.device
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine()
    )
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "device": dev.type,
        "device_name": name,
        "num_processes": accelerator.num_processes,
        "threads": torch.get_num_threads(),
        "precision": precision,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def failed_record(
    spec: RunSpec, error: BaseException, env: dict[str, Any], started: str
) -> dict[str, Any]:
    msg = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    return {
        **base_record(spec, env),
        "status": "failed",
        "error": msg[:500],
        "traceback": "".join(traceback.format_exception(error))[-4000:],
        "started_at": started,
        "finished_at": now(),
    }


def base_record(spec: RunSpec, env: dict[str, Any]) -> dict[str, Any]:
    from ptft_bench.registry import strategy_class

    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "suite": spec.suite,
        "task": spec.task,
        "model": spec.model,
        "strategy": spec.variant.name,
        "strategy_family": strategy_class(spec.variant.name).family,
        "variant": spec.variant.label(),
        "strategy_params": spec.resolved_params,
        "lr": spec.lr,
        "seed": spec.seed,
        "budget": spec.budget,
        "data": spec.data,
        "env": {**env, "config_hash": spec.run_id.rsplit("-", 1)[-1]},
    }


def pending(specs: list[RunSpec], store: RunStore, retry_failed: bool) -> list[RunSpec]:
    out = []
    for s in specs:
        status = store.status(s.run_id)
        if status == "ok" or (status == "failed" and not retry_failed):
            continue
        out.append(s)
    return out
