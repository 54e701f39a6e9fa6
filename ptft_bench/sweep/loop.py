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

from ptft_bench.errors import UserError
from ptft_bench.records.record import now
from ptft_bench.records.store import RunStore
from ptft_bench.report import write_report
from ptft_bench.run.execute import SweepContext, release_memory, run_one
from ptft_bench.sweep.estimate import (
    SweepClock,
    Work,
    estimate,
    machine_key,
    record_sample,
    run_work,
    run_work_of,
)
from ptft_bench.sweep.plan import Plan
from ptft_bench.sweep.queue import WorkQueue
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
    retry_failed: bool = False,
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
    if plan.studies and jobs is None and ctx.accelerator.num_processes > 1:
        raise UserError(
            "tuning trials cannot run data-parallel under accelerate launch; run the tuned "
            "suite with --jobs (one run per GPU), or pass --trials 0"
        )
    key, works = calibration_key(jobs, ctx), plan_work(plan, ctx)
    guess = estimate(list(works.values()), key, jobs.jobs if jobs else 1)
    queue = WorkQueue(plan, store, retry_failed)
    queue.keep_time(
        SweepClock(sum(guess.run_seconds), jobs.jobs if jobs else 1),
        dict(zip(works, guess.run_seconds)),
    )
    to_do = queue.remaining()
    if main:  # only the writer cleans its own leftovers
        store.clean_temporaries()
        sweep = {"started_at": now(), "estimate_seconds": guess.seconds, "basis": guess.basis}
        sweep.update(runs_to_do=to_do, workers=jobs.describe() if jobs else "in-process")
        if plan.studies:
            sweep["tuning"] = {"studies": [st.line() for st in plan.studies], **_tuning(plan)}
        store.write_plan(suite.name, [s.plan_entry() for s in plan.specs], sweep)
        if announce:
            layout = jobs.describe() if jobs else "in this process"
            announce(f"{to_do} runs to do, {layout}; {guess.describe()}")
    if jobs is not None:
        counts = run_in_workers(plan, queue, jobs, progress, works, key, ctx)
    else:
        counts = _run_here(queue, ctx, store if main else None, progress and main, works, key)
    seconds = time.perf_counter() - t_start
    if main:
        store.finish_sweep(finished_at=now(), seconds=seconds)
    if write_report_at_end and main:
        write_report([plan.out], plan.out / "report")
    done = counts["ok"] + counts["failed"]
    planned = max(
        len(plan.specs) + sum(st.tuning.trials + len(st.seeds) for st in plan.studies), done
    )
    skipped = max(planned - done, 0)
    return SweepResult(plan.out, planned, skipped, counts["ok"], counts["failed"], seconds)


def _tuning(plan: Plan) -> dict:
    t = plan.suite.tuning
    return {"trials": t.trials, "sampler": t.sampler, "pruner": t.pruner, "seed": t.seed}


def plan_work(plan: Plan, ctx: SweepContext) -> dict[str, Work]:
    """The counted work of every pending run, by run id (for the estimate and calibration).

    A study counts as its trials (each at the share of the epoch budget a successive-halving
    pruner leaves it on average, `expected_trial_share`) and its seeds, keyed by study name. A
    run whose structure cannot be built (e.g. k larger than the model's depth) is left out here;
    it fails, with its reason in its record, when it runs.
    """
    works = {}
    for spec in plan.todo:
        try:
            works[spec.run_id] = run_work(spec, ctx)
        except (ValueError, TypeError, RuntimeError):
            continue
    for st in plan.studies:
        try:
            one = run_work(st.base, ctx)
        except (ValueError, TypeError, RuntimeError):
            continue
        runs = st.tuning.trials * expected_trial_share(st.tuning, st.base.budget.epochs)
        works[st.name] = one.scaled(runs + len(st.seeds), st.tuning.trials + len(st.seeds))
    return works


def expected_trial_share(tuning, epochs: int) -> float:
    """The mean share of the epoch budget one trial trains under the pruner, if each rung keeps
    1 in `reduction_factor` (asynchronous halving keeps more of the first trials: a lower bound)."""
    if tuning.pruner == "none":
        return 1.0
    rungs, r = [], tuning.min_epochs
    while r < epochs:
        rungs.append(r)
        r *= tuning.reduction_factor
    total, last, reach = 0.0, 0, 1.0
    for rung in rungs:
        total += reach * (rung - last)
        last, reach = rung, reach / tuning.reduction_factor
    total += reach * (epochs - last)
    return total / epochs


def calibration_key(jobs: JobLayout | None, ctx: SweepContext) -> str:
    """Where this sweep's speed is remembered: the device, threads per run and worker mode."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = jobs.threads if jobs else torch.get_num_threads()
    return machine_key(threads, device) + ("" if jobs else " | in-process")


def _run_here(queue: WorkQueue, ctx: SweepContext, store, progress: bool, works, key) -> dict:
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(total=queue.remaining(), desc=f"suite {queue.plan.suite.name}", disable=not progress)
    while not queue.exhausted():
        spec = queue.next_spec()
        if spec is None:  # a study waits for trials another process runs
            time.sleep(2.0)
            continue
        label = f"{spec.task} {spec.variant_label} lr={spec.lr:g} seed={spec.seed}"
        bar.set_postfix_str(" | ".join(filter(None, [label, queue.status()])))
        t0 = time.perf_counter()
        record = run_one(spec, ctx, store)
        queue.finished(spec, time.perf_counter() - t0)
        counts[record.status] += 1
        work = run_work_of(spec, record, works, ctx)
        if record.status == "ok" and store is not None and work is not None:
            record_sample(key, work, time.perf_counter() - t0)
        ctx.accelerator.wait_for_everyone()
        ctx.accelerator.free_memory()
        release_memory()
        bar.update(1)
        bar.total = bar.n + queue.remaining()
    bar.close()
    return counts
