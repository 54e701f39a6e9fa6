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
from ptft_bench.tuning.trial import TrialRef


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
    # resolved for this model (ptft_bench.models.pooling); "auto" if unresolvable
    pooling: str = "cls"
    # A tuning trial (`ptft_bench.tuning`): its study and trial; its id names the study, since a
    # pruned trial is a run cut short by the study's pruner. A seed run at a study's selected
    # configuration names the study in `study` only: its result does not depend on it.
    trial: TrialRef | None = None
    study: str = ""
    quantization: str = "none"  # how the frozen base is stored (`ptft_bench.models.quantize`)

    @property
    def role(self) -> str:
        """ "trial" (a tuning trial), "seed" (at a study's selected configuration) or "run"."""
        return "trial" if self.trial else ("seed" if self.study else "run")

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
            **({"study": self.trial.study} if self.trial else {}),
            **({"quantization": self.quantization} if self.quantization != "none" else {}),
        }

    @property
    def variant_label(self) -> str:
        """The report's variant: the suite's label, and the base's storage when quantized."""
        label = self.variant.label()
        return label if self.quantization == "none" else f"{label} [{self.quantization}]"

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
            "variant": self.variant_label,
            "strategy_params": self.strategy_params,
            "lr": self.lr,
            "seed": self.seed,
            "budget": asdict(self.budget),
            "data": asdict(self.data),
            "pooling": self.pooling,
            "quantization": self.quantization,
            "tuning": self.tuning_identity(),
        }

    def tuning_identity(self) -> dict[str, Any] | None:
        """The record's `tuning` before the run: its role, study and (trials) trial number."""
        if self.role == "run":
            return None
        out: dict[str, Any] = {"role": self.role, "study": self.study or self.trial.study}
        if self.trial:
            out.update(trial=self.trial.number, params=dict(self.trial.params))
        return out

    def plan_entry(self) -> dict[str, Any]:
        """What plan.json keeps of a run, so a report can list runs that never finished."""
        return {
            "run_id": self.run_id,
            "task": self.task,
            "model": self.model,
            "strategy": self.variant.name,
            "variant": self.variant_label,
            "strategy_params": self.strategy_params,
            "lr": self.lr,
            "seed": self.seed,
        }

    def line(self) -> str:
        return (
            f"{self.run_id}  {self.task}  {self.model}  {self.variant_label}  "
            f"lr={self.lr:g}  seed={self.seed}"
        )
