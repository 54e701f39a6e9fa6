"""Sweep: a plan's pending runs, executed one by one, each stored as one record.

The loop of the road plan -> execute -> record -> store -> report: validate every input first
(a bad task or model stops the sweep before any training), then run each pending spec; a run
that fails is recorded as failed with its reason and the sweep goes on. At the end the report
is written (`ptft_bench.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ptft_bench.errors import UserError
from ptft_bench.execute import SweepContext, execute, release_memory
from ptft_bench.plan import Plan, RunSpec
from ptft_bench.record import RunRecord, now
from ptft_bench.report import write_report
from ptft_bench.store import RunStore


@dataclass
class SweepResult:
    out: Path
    planned: int
    skipped: int
    ok: int
    failed: int
    seconds: float


def run_suite(plan: Plan, progress: bool = True, write_report_at_end: bool = True) -> SweepResult:
    """Execute every pending run of `plan` and record it; returns the counts."""
    t_start = time.perf_counter()
    suite, store = plan.suite, RunStore(plan.out)
    ctx = SweepContext(suite.data, suite.precision, progress)
    ctx.check_inputs(suite.tasks, suite.models)
    main = ctx.accelerator.is_main_process
    if main:  # only the writer cleans its own leftovers
        store.clean_temporaries()
        store.write_plan(suite.name, [s.plan_entry() for s in plan.specs])
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(plan.todo, desc=f"suite {suite.name}", disable=not (progress and main))
    for spec in bar:
        bar.set_postfix_str(f"{spec.task} {spec.variant.label()} lr={spec.lr:g} seed={spec.seed}")
        record = _run_one(spec, ctx, store if main else None)
        counts[record.status] += 1
        ctx.accelerator.wait_for_everyone()
        ctx.accelerator.free_memory()
        release_memory()
    if write_report_at_end and main:
        write_report([plan.out], plan.out / "report")
    skipped = len(plan.specs) - len(plan.todo)
    seconds = time.perf_counter() - t_start
    return SweepResult(plan.out, len(plan.specs), skipped, counts["ok"], counts["failed"], seconds)


def _run_one(spec: RunSpec, ctx: SweepContext, store: RunStore | None) -> RunRecord:
    """Execute one run; a failure becomes a failed record (bad input still stops the sweep)."""
    started = now()
    predictions = None
    try:
        result = execute(spec, ctx)
        record, predictions = result.record, result.predictions
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure is recorded and the sweep goes on
        record = RunRecord.failed(spec, ctx.env, started, e)
        if store is not None:
            tqdm.write(f"run {spec.run_id} failed: {record.error}")
    if store is not None:
        store.write(record, predictions)
    return record
