"""Plan: a suite becomes typed run specs with stable ids; shard them; find the pending ones.

The first station of a run's road (plan -> execute -> record -> store -> report). Everything that
can change a run's numbers is in `RunSpec.key`, and the run id is a hash of it, so a run folder
can be resumed: finished runs are found by id and skipped. `--dry-run` prints `Plan.lines()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ptft_bench.config import SuiteConfig
from ptft_bench.errors import UserError
from ptft_bench.models.load import model_pooling
from ptft_bench.records.store import RunStore
from ptft_bench.run.spec import RunSpec
from ptft_bench.strategy.registry import get_strategy


def expand(suite: SuiteConfig) -> list[RunSpec]:
    """tasks x models x strategy variants x learning rates x seeds (validates every variant)."""
    specs = []
    poolings = {model: _pooling(model, suite.pooling) for model in suite.models}
    for variant in suite.strategies:
        try:
            strategy = get_strategy(variant.name, **variant.params)
        except ValueError as e:
            raise UserError(f"strategy {variant.label()}: {e}") from None
        lrs = variant.lrs or list(type(strategy).default_lrs)
        if not strategy.trains_by_gradient:
            lrs = [0.0]  # fitted in closed form: a learning rate would only duplicate runs
        for task in suite.tasks:
            for model in suite.models:
                for lr in lrs:
                    for seed in suite.seeds:
                        specs.append(
                            RunSpec(
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
                        )
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(
            f"the suite lists the same run twice ({dup[0]}): remove the duplicate variant"
        )
    return specs


def _pooling(model: str, requested: str) -> str:
    """The pooling a run of `model` uses; a hub model that cannot be read offline keeps the
    request (the run itself will say what is missing)."""
    try:
        return model_pooling(model, requested)[0]
    except UserError:
        return requested


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
    specs: list[RunSpec]
    todo: list[RunSpec]

    @property
    def out(self) -> Path:
        return self.suite.out

    def lines(self, estimate: str = "") -> list[str]:
        """The dry run: every run with its state, then a summary line (and the estimate)."""
        todo = {s.run_id for s in self.todo}
        rows = [f"{'todo' if s.run_id in todo else 'done'}  {s.line()}" for s in self.specs]
        summary = f"{len(self.specs)} runs, {len(self.todo)} to do, output {self.out}"
        return [*rows, summary + (f"; {estimate}" if estimate else "")]


def make_plan(
    suite: SuiteConfig, shard_spec: str | None = None, retry_failed: bool = False
) -> Plan:
    specs = shard(expand(suite), shard_spec)
    return Plan(suite, specs, pending(specs, RunStore(suite.out), retry_failed))
