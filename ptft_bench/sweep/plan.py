"""Plan: a suite becomes typed run specs with stable ids; shard them; find the pending ones.

The first station of a run's road (plan -> execute -> record -> store -> report). Everything that
can change a run's numbers is in `RunSpec.key`, and the run id is a hash of it, so a run folder
can be resumed: finished runs are found by id and skipped. `--dry-run` prints `Plan.lines()`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ptft_bench.config import StrategyVariant, SuiteConfig
from ptft_bench.errors import UserError
from ptft_bench.models.load import model_pooling
from ptft_bench.records.store import RunStore
from ptft_bench.run.spec import RunSpec
from ptft_bench.strategy.registry import Strategy, get_strategy
from ptft_bench.tuning.space import SearchSpace, TuningConfig
from ptft_bench.tuning.trial import TrialRef


def expand(suite: SuiteConfig) -> list[RunSpec]:
    """tasks x models x strategy variants x learning rates x seeds (validates every variant).

    With `[tuning]`, the variants that train by gradient become studies (`expand_studies`)
    instead: only the others (the linear probe) are listed here, at each seed.
    """
    specs = []
    poolings = {model: _pooling(model, suite.pooling) for model in suite.models}
    for variant in suite.strategies:
        strategy = _strategy(variant)
        if suite.tuning is not None and strategy.trains_by_gradient:
            continue
        lrs = variant.lrs or list(type(strategy).default_lrs)
        if not strategy.trains_by_gradient:
            lrs = [0.0]  # fitted in closed form: a learning rate would only duplicate runs
        for task in suite.tasks:
            for model in suite.models:
                for quant in quantizations(suite, strategy):
                    for lr in lrs:
                        for seed in suite.seeds:
                            spec = _spec(suite, task, model, variant, strategy, lr, seed, poolings)
                            specs.append(replace(spec, quantization=quant))
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(
            f"the suite lists the same run twice ({dup[0]}): remove the duplicate variant"
        )
    return specs


def quantizations(suite: SuiteConfig, strategy: Strategy) -> list[str]:
    """The suite's base storages this strategy can train on (a strategy that trains base
    weights runs on the unquantized base only; `refused` says so before anything runs)."""
    return [q for q in suite.quantization if type(strategy).supports_quantization(q) is None]


def refused(suite: SuiteConfig) -> list[str]:
    """One line per (strategy, quantization) the suite asks for that cannot run."""
    out = []
    for variant in suite.strategies:
        for q in suite.quantization:
            reason = type(_strategy(variant)).supports_quantization(q)
            if reason:
                out.append(f"{variant.label()} on a {q} base: {reason}")
    return out


def _strategy(variant: StrategyVariant, extra: dict[str, Any] | None = None) -> Strategy:
    try:
        return get_strategy(variant.name, **{**variant.params, **(extra or {})})
    except ValueError as e:
        raise UserError(f"strategy {variant.label()}: {e}") from None


def _spec(suite, task, model, variant, strategy, lr, seed, poolings) -> RunSpec:
    return RunSpec(
        suite.name,
        task,
        model,
        variant,
        strategy,
        float(lr),
        int(seed),
        suite.budget,
        suite.data,
        suite.precision,
        poolings[model],
    )


@dataclass(frozen=True)
class StudyPlan:
    """One (task, model, variant) tuned: `trials` trials, then the other seeds at the best."""

    base: RunSpec  # the variant on its task and model, at the middle of its learning-rate range
    space: SearchSpace
    tuning: TuningConfig
    seeds: tuple[int, ...]  # the final seeds besides the trials' own (`tuning.seed`)

    @property
    def name(self) -> str:
        """The study's name: its group, and a hash of everything that shapes its trials."""
        key = {k: v for k, v in self.base.key.items() if k not in ("lr", "seed", "params")}
        key["params"] = {k: v for k, v in self.base.variant.params.items()}
        key["search"], key["tuning"] = self.space.identity(), self.tuning.identity()
        key["trials"] = self.tuning.trials
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.base.task}-{self.base.variant_label}")
        return f"{slug.strip('-')}-{digest}"

    def _at(self, params: dict[str, Any], seed: int, **role: Any) -> RunSpec:
        extra = {k: v for k, v in params.items() if k not in ("lr", "trial", "value")}
        strategy = _strategy(self.base.variant, extra) if extra else self.base.strategy
        return replace(self.base, strategy=strategy, lr=float(params["lr"]), seed=seed, **role)

    def trial_spec(self, ref: TrialRef) -> RunSpec:
        return self._at(ref.params, self.tuning.seed, trial=ref)

    def seed_spec(self, selected: dict[str, Any], seed: int) -> RunSpec:
        return self._at(selected, seed, study=self.name)

    def line(self) -> str:
        seeds = ",".join(map(str, self.seeds)) or "none"
        return (
            f"{self.name}  {self.base.task}  {self.base.model}  {self.base.variant_label}  "
            f"{self.tuning.trials} trials ({self.space.describe()}), then seeds {seeds}"
        )


def expand_studies(suite: SuiteConfig) -> list[StudyPlan]:
    """One study per (task, model, variant that trains by gradient) of a tuned suite."""
    if suite.tuning is None:
        return []
    poolings = {model: _pooling(model, suite.pooling) for model in suite.models}
    seeds = tuple(s for s in suite.seeds if s != suite.tuning.seed)
    out = []
    for task in suite.tasks:  # task-major: a task's comparison completes before the next starts
        for model in suite.models:
            for variant in suite.strategies:
                strategy = _strategy(variant)
                if not strategy.trains_by_gradient:
                    continue
                try:
                    space = SearchSpace.parse(variant.search or {}, type(strategy).lr_range())
                    if space.sampler_kind(suite.tuning.sampler) == "grid":
                        space.grid(suite.tuning.trials)
                except ValueError as e:
                    raise UserError(f"strategy {variant.label()}: {e}") from None
                lr = math.sqrt(space.lr[0] * space.lr[1])
                base = _spec(suite, task, model, variant, strategy, lr, suite.tuning.seed, poolings)
                for quant in quantizations(suite, strategy):
                    out.append(
                        StudyPlan(replace(base, quantization=quant), space, suite.tuning, seeds)
                    )
    return out


def _pooling(model: str, requested: str) -> str:
    """The pooling a run of `model` uses; a hub model that cannot be read offline keeps the
    request (the run itself will say what is missing)."""
    try:
        return model_pooling(model, requested)[0]
    except UserError:
        return requested


def shard(items: list, shard_spec: str | None, key=lambda s: s.run_id) -> list:
    """`i/n`: the i-th of n deterministic slices (0-based), for job arrays on many machines.

    Runs are sliced by run id, studies by name (a study's trials and seeds stay together)."""
    if not shard_spec:
        return items
    m = re.fullmatch(r"(\d+)/(\d+)", shard_spec.strip())
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise UserError(f"--shard {shard_spec}: expected i/n with 0 <= i < n, e.g. --shard 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    return [s for k, s in enumerate(sorted(items, key=key)) if k % n == i]


def pending(specs: list[RunSpec], store: RunStore, retry_failed: bool) -> list[RunSpec]:
    """The runs without a record (or with a failed one, when retrying failures)."""
    out = []
    for s in specs:
        status = store.status(s.run_id)
        if status == "ok" or (status == "failed" and not retry_failed):
            continue
        out.append(s)
    return out


@dataclass
class Plan:
    """A sweep's runs (after sharding) and which of them still need to run."""

    suite: SuiteConfig
    specs: list[RunSpec]  # the fixed runs (every run, without tuning)
    todo: list[RunSpec]
    studies: list[StudyPlan] = field(default_factory=list)  # with [tuning]

    @property
    def out(self) -> Path:
        return self.suite.out

    def lines(self, estimate: str = "") -> list[str]:
        """The dry run: every run with its state, then a summary line (and the estimate)."""
        todo = {s.run_id for s in self.todo}
        rows = [f"{'todo' if s.run_id in todo else 'done'}  {s.line()}" for s in self.specs]
        rows += [f"study {st.line()}" for st in self.studies]
        summary = f"{len(self.specs)} runs, {len(self.todo)} to do"
        if self.studies:
            t = self.suite.tuning
            summary += (
                f", {len(self.studies)} studies of {t.trials} trials each (pruner: {t.pruner}; "
                "their seeds run once a study is done)"
            )
        summary += f", output {self.out}"
        return [*rows, summary + (f"; {estimate}" if estimate else "")]


def make_plan(
    suite: SuiteConfig, shard_spec: str | None = None, retry_failed: bool = False
) -> Plan:
    specs = shard(expand(suite), shard_spec)
    studies = shard(expand_studies(suite), shard_spec, key=lambda st: st.name)
    if not specs and not studies:
        raise UserError(
            "nothing can run: " + "; ".join(refused(suite))
            if refused(suite)
            else "the suite expands to no runs"
        )
    return Plan(suite, specs, pending(specs, RunStore(suite.out), retry_failed), studies)
