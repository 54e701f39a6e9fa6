"""Sweep: a plan's pending runs, executed and stored one record each, then the report.

The loop of the road plan -> execute -> record -> store -> report: validate every input first
(a bad task or model stops the sweep before any training), then run each pending spec, either in
fresh worker processes (`--jobs`, `ptft_bench.sweep.workers`: the default, so that each run's memory
is its own) or in this process (`--jobs 0`, and always under `accelerate launch`, where the
processes train one run together). A run that fails is recorded as failed with its reason and
the sweep goes on. At the end the report is written (`ptft_bench.report`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ptft_bench.records.record import now
from ptft_bench.records.store import RunStore
from ptft_bench.report import write_report
from ptft_bench.run.execute import SweepContext, release_memory, run_one
from ptft_bench.sweep.estimate import Work, estimate, machine_key, record_sample, run_work
from ptft_bench.sweep.plan import Plan
from ptft_bench.sweep.workers import JobLayout, run_in_workers


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
    announce: Callable[[str], None] | None = None,
) -> SweepResult:
    """Execute every pending run of `plan` and record it; `jobs=None` runs in this process.

    `announce` receives one line before training starts: the runs to do, the workers and the
    estimated wall time (`ptft_bench.sweep.estimate`).
    """
    t_start = time.perf_counter()
    suite, store = plan.suite, RunStore(plan.out)
    ctx = SweepContext(suite.data, suite.precision, progress)
    ctx.check_inputs(suite.tasks, suite.models)
    main = jobs is not None or ctx.accelerator.is_main_process
    key, works = calibration_key(jobs, ctx), plan_work(plan, ctx)
    guess = estimate(list(works.values()), key, jobs.jobs if jobs else 1)
    if main:  # only the writer cleans its own leftovers
        store.clean_temporaries()
        sweep = {"started_at": now(), "estimate_seconds": guess.seconds, "basis": guess.basis}
        sweep.update(runs_to_do=len(plan.todo), workers=jobs.describe() if jobs else "in-process")
        store.write_plan(suite.name, [s.plan_entry() for s in plan.specs], sweep)
        if announce:
            layout = jobs.describe() if jobs else "in this process"
            announce(f"{len(plan.todo)} runs to do, {layout}; {guess.describe()}")
    if jobs is not None:
        counts = run_in_workers(plan, jobs, progress, works, key)
    else:
        counts = _run_here(plan, ctx, store if main else None, progress and main, works, key)
    seconds = time.perf_counter() - t_start
    if main:
        store.finish_sweep(finished_at=now(), seconds=seconds)
    if write_report_at_end and main:
        write_report([plan.out], plan.out / "report")
    skipped = len(plan.specs) - len(plan.todo) + counts.get("skipped", 0)
    return SweepResult(plan.out, len(plan.specs), skipped, counts["ok"], counts["failed"], seconds)


def plan_work(plan: Plan, ctx: SweepContext) -> dict[str, Work]:
    """The counted work of every pending run, by run id (for the estimate and calibration).

    A run whose structure cannot be built (e.g. k larger than the model's depth) is left out
    here; it fails, with its reason in its record, when it runs.
    """
    works = {}
    for spec in plan.todo:
        try:
            works[spec.run_id] = run_work(spec, ctx)
        except (ValueError, TypeError, RuntimeError):
            continue
    return works


def calibration_key(jobs: JobLayout | None, ctx: SweepContext) -> str:
    """Where this sweep's speed is remembered: the device, threads per run and worker mode."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = jobs.threads if jobs else torch.get_num_threads()
    return machine_key(threads, device) + ("" if jobs else " | in-process")


def _run_here(plan: Plan, ctx: SweepContext, store, progress: bool, works, key) -> dict:
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(plan.todo, desc=f"suite {plan.suite.name}", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.task} {spec.variant.label()} lr={spec.lr:g} seed={spec.seed}")
        t0 = time.perf_counter()
        record = run_one(spec, ctx, store)
        counts[record.status] += 1
        if record.status == "ok" and store is not None:
            record_sample(key, works[spec.run_id], time.perf_counter() - t0)
        ctx.accelerator.wait_for_everyone()
        ctx.accelerator.free_memory()
        release_memory()
    return counts
