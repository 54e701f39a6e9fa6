"""The run spec: one training run, everything that affects its result, and its stable id.

`ptft_bench.sweep.plan` expands a suite into run specs; `ptft_bench.run.execute` trains one.
Everything that can change a run's numbers is in `RunSpec.key`, and the run id is a hash of it,
so a run folder can be resumed: finished runs are found by id and skipped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from ptft_bench.config import Budget, DataConfig, StrategyVariant
from ptft_bench.strategy.registry import Strategy


@dataclass(frozen=True)
class RunSpec:
    """One training run: everything that affects its result, and a stable id derived from it."""

    suite: str
    task: str
    model: str
    variant: StrategyVariant
    strategy: Strategy  # validated once, when the suite is expanded
    lr: float
    seed: int
    budget: Budget
    data: DataConfig
    precision: str
    pooling: str = (
        "cls"  # resolved for this model (ptft_bench.models.pooling); "auto" if unresolvable
    )

    @property
    def strategy_params(self) -> dict[str, Any]:
        """The strategy's full config, defaults included."""
        return self.strategy.to_dict()["params"]

    def new_strategy(self) -> Strategy:
        """A fresh copy of the validated strategy for one run (a run binds its model to it)."""
        fresh = copy.copy(self.strategy)
        fresh.context = None
        return fresh

    @property
    def key(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "params": self.strategy_params,
            "lr": self.lr,
            "seed": self.seed,
            "budget": self.budget.identity(),
            # where the data lives does not change it (its fingerprint would; see README)
            "data": {k: v for k, v in asdict(self.data).items() if k != "data_dir"},
            "precision": self.precision,
            # Runs that read the model's own [CLS] head (every run before pooling existed) keep
            # their ids, so old folders resume; any other pooling is a different run.
            **({"pooling": self.pooling} if self.pooling != "cls" else {}),
        }

    @property
    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.task}-{self.variant.name}").strip("-")
        return f"{slug}-{digest}"

    def identity_fields(self) -> dict[str, Any]:
        """The record's identity fields (`ptft_bench.records.record.RunRecord`)."""
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "strategy_family": self.strategy.family,
            "variant": self.variant.label(),
            "strategy_params": self.strategy_params,
            "lr": self.lr,
            "seed": self.seed,
            "budget": asdict(self.budget),
            "data": asdict(self.data),
            "pooling": self.pooling,
        }

    def plan_entry(self) -> dict[str, Any]:
        """What plan.json keeps of a run, so a report can list runs that never finished."""
        return {
            "run_id": self.run_id,
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "variant": self.variant.label(),
            "strategy_params": self.strategy_params,
            "lr": self.lr,
            "seed": self.seed,
        }

    def line(self) -> str:
        return (
            f"{self.run_id}  {self.task}  {self.model}  {self.variant.label()}  "
            f"lr={self.lr:g}  seed={self.seed}"
        )
