"""Workers: the plan's pending runs in fresh processes, N at a time, each run claimed atomically.

Why a fresh process per run: on CPU a run's memory is the process's resident set, and in a
process that already trained other runs the allocator's history, not the strategy, sets it. A
run in a process that starts clean has a baseline (measured before its model is loaded) and an
increment that belongs to it. Why N at a time: intra-op threading scales poorly on a small
encoder (two 1-thread processes beat one 2-thread process by ~1.3x on 2 cores), and a machine
with several GPUs runs one run per GPU. Why claims: workers, and several `ptft-bench run` on one
folder, never train the same run (`RunStore.claim`).

The standard library's `multiprocessing` (spawn) does the work; across machines, `--shard` with
a job array is the way (no home-made cluster scheduler).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ptft_bench.errors import UserError
from ptft_bench.records.record import RunRecord, now
from ptft_bench.records.store import RunStore
from ptft_bench.run.spec import RunSpec
from ptft_bench.sweep.estimate import record_sample, run_work_of
from ptft_bench.sweep.plan import Plan
from ptft_bench.sweep.queue import WorkQueue

CHILD_CLAIM_LOST = 3  # exit status of a child that found its run claimed by another process
MIN_GIB_PER_JOB = 2.0  # what one small-encoder run needs on CPU, for `auto`


@dataclass(frozen=True)
class JobLayout:
    jobs: int
    threads: int  # intra-op threads per job (CPU)
    gpus: tuple[int, ...] = ()  # one GPU per job (CUDA)

    def describe(self) -> str:
        if self.gpus:
            return f"{self.jobs} worker(s), one per GPU {list(self.gpus)}"
        return f"{self.jobs} worker(s) x {self.threads} thread(s)"


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def layout(jobs: str | int, threads: int | None = None) -> JobLayout:
    """`--jobs N|auto` (and `--threads`) -> workers, threads per worker and GPUs.

    auto: one worker per visible GPU; on CPU one per core (1 thread each: small encoders gain
    little from intra-op threads), at most what the memory allows at ~2 GiB per run.
    """
    import torch

    gpus = torch.cuda.device_count()
    cores = cores_available()
    if jobs == "auto":
        n = gpus or max(1, min(cores, int(_memory_gib() // MIN_GIB_PER_JOB)))
    else:
        try:
            n = int(jobs)
        except ValueError:
            raise UserError(f"--jobs {jobs}: expected a positive number or auto") from None
        if n < 1:
            raise UserError(f"--jobs {jobs}: expected a positive number or auto")
    if gpus:
        return JobLayout(n, threads or max(1, cores // n), tuple(i % gpus for i in range(n)))
    return JobLayout(n, threads or max(1, cores // n))


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


# -- the child: one run in a fresh process -------------------------------------------------------
def _child(spec: RunSpec, out: Path, threads: int, gpu: int | None) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    torch.set_num_threads(threads)
    from ptft_bench.offline import quiet_libraries, set_offline_defaults
    from ptft_bench.run.execute import SweepContext, run_one

    set_offline_defaults()
    quiet_libraries()
    store = RunStore(out)
    if not store.claim(spec.run_id):
        raise SystemExit(CHILD_CLAIM_LOST)
    if store.status(spec.run_id) == "ok":  # another sweep finished it while this worker started
        store.release(spec.run_id)
        raise SystemExit(CHILD_CLAIM_LOST)
    try:
        ctx = SweepContext(spec.data, spec.precision, progress=False, worker="fresh process")
        run_one(spec, ctx, store, announce=False)
    finally:
        store.release(spec.run_id)


# -- the parent: N slots, one progress bar -------------------------------------------------------
def run_in_workers(
    plan: Plan,
    queue: WorkQueue,
    jobs: JobLayout,
    progress: bool,
    works: dict | None = None,
    key: str = "",
    ctx=None,
) -> dict[str, int]:
    """Run what `queue` hands out in fresh processes, `jobs.jobs` at a time.

    A finished run's wall time (start of its process to its end) and counted work calibrate
    this machine's speed for later estimates (`ptft_bench.sweep.estimate.record_sample`).
    """
    store = RunStore(plan.out)
    spawn = mp.get_context("spawn")
    running: dict[int, tuple] = {}  # slot -> (process, spec, started, perf_counter at start)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    shown = ""
    bar = tqdm(
        total=queue.remaining(),
        desc=f"suite {plan.suite.name}",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 60,  # a log file gets a line a minute
    )
    while running or not queue.exhausted():
        for slot in [s for s in range(jobs.jobs) if s not in running]:
            spec = queue.next_spec()
            if spec is None:
                break
            gpu = jobs.gpus[slot] if jobs.gpus else None
            proc = spawn.Process(
                target=_child, args=(spec, plan.out, jobs.threads, gpu), daemon=False
            )
            proc.start()
            running[slot] = (proc, spec, now(), time.perf_counter())
        labels = " | ".join(
            filter(None, [", ".join(_label(e[1]) for e in running.values()), queue.status()])
        )
        if labels != shown:  # refresh only when the running set changes
            bar.set_postfix_str(labels, refresh=sys.stderr.isatty())
            shown = labels
        for slot, (proc, spec, started, t0) in list(running.items()):
            if proc.is_alive():
                continue
            proc.join()
            status = _outcome(proc.exitcode, spec, started, store)
            queue.finished(spec, time.perf_counter() - t0)
            counts[status] += 1
            work = run_work_of(spec, store.read(spec.run_id), works or {}, ctx)
            if status == "ok" and work is not None:
                record_sample(key, work, time.perf_counter() - t0)
            bar.update(1)
            bar.total = bar.n + queue.remaining()
            del running[slot]
        time.sleep(0.2 if running else 1.0)
    bar.close()
    return counts


def _outcome(exitcode: int | None, spec: RunSpec, started: str, store: RunStore) -> str:
    """ok / failed from the record the child wrote; a child that died records a failure."""
    if exitcode == CHILD_CLAIM_LOST:
        return "skipped"
    record = store.read(spec.run_id)
    if record is not None and record.finished_at and record.finished_at >= started:
        return record.status
    if exitcode is not None and exitcode < 0:
        reason = f"the worker process died from signal {-exitcode}"
        if -exitcode == 9:
            reason += " (killed: out of memory?)"
    else:
        reason = f"the worker process exited with status {exitcode} without a record"
    failed = RunRecord.failed(spec, {}, started, RuntimeError(reason))
    store.write(failed)
    store.release(spec.run_id)
    tqdm.write(f"run {spec.run_id} failed: {failed.error}")
    return "failed"


def _label(spec: RunSpec) -> str:
    task = spec.task if len(spec.task) <= 16 else spec.task[:15] + "…"
    return f"{task} {spec.variant_label} s{spec.seed}"
