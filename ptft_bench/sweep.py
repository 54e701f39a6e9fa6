"""Sweep: a plan's pending runs, executed and stored one record each, then the report.

The loop of the road plan -> execute -> record -> store -> report: validate every input first
(a bad task or model stops the sweep before any training), then run each pending spec, either in
fresh worker processes (`--jobs`, `ptft_bench.workers`: the default, so that each run's memory
is its own) or in this process (`--jobs 0`, and always under `accelerate launch`, where the
processes train one run together). A run that fails is recorded as failed with its reason and
the sweep goes on. At the end the report is written (`ptft_bench.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ptft_bench.execute import SweepContext, release_memory, run_one
from ptft_bench.plan import Plan
from ptft_bench.report import write_report
from ptft_bench.store import RunStore
from ptft_bench.workers import JobLayout, run_in_workers


@dataclass
class SweepResult:
    out: Path
    planned: int
    skipped: int
    ok: int
    failed: int
    seconds: float


def run_suite(
    plan: Plan,
    progress: bool = True,
    write_report_at_end: bool = True,
    jobs: JobLayout | None = None,
) -> SweepResult:
    """Execute every pending run of `plan` and record it; `jobs=None` runs in this process."""
    t_start = time.perf_counter()
    suite, store = plan.suite, RunStore(plan.out)
    ctx = SweepContext(suite.data, suite.precision, progress)
    ctx.check_inputs(suite.tasks, suite.models)
    main = jobs is not None or ctx.accelerator.is_main_process
    if main:  # only the writer cleans its own leftovers
        store.clean_temporaries()
        store.write_plan(suite.name, [s.plan_entry() for s in plan.specs])
    if jobs is not None:
        counts = run_in_workers(plan, jobs, progress)
    else:
        counts = _run_here(plan, ctx, store if main else None, progress and main)
    if write_report_at_end and main:
        write_report([plan.out], plan.out / "report")
    skipped = len(plan.specs) - len(plan.todo) + counts.get("skipped", 0)
    seconds = time.perf_counter() - t_start
    return SweepResult(plan.out, len(plan.specs), skipped, counts["ok"], counts["failed"], seconds)


def _run_here(plan: Plan, ctx: SweepContext, store: RunStore | None, progress: bool) -> dict:
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(plan.todo, desc=f"suite {plan.suite.name}", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.task} {spec.variant.label()} lr={spec.lr:g} seed={spec.seed}")
        record = run_one(spec, ctx, store)
        counts[record.status] += 1
        ctx.accelerator.wait_for_everyone()
        ctx.accelerator.free_memory()
        release_memory()
    return counts
