"""Parallel sweeps: runs in fresh worker processes, claimed exclusively, recorded exactly once;
a killed worker's run is recorded as failed (and retried), a killed sweep's claims are taken
over; results equal a serial sweep; each run's memory is its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_fixtures import cli_env, tiny_workspace

from ptft_bench.cli import main
from ptft_bench.records.store import RunStore

STRATEGIES = ["full", "head_only", "bitfit", "lora"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tiny_workspace(tmp_path_factory.mktemp("workers"))


def args(work: Path, out: Path, *extra: str, strategies=STRATEGIES) -> list[str]:
    return [
        "run",
        "--tasks",
        f"csv:{work / 'reviews.csv'}?text=review&label=sentiment",
        "--model",
        str(work / "tiny-bert"),
        "--strategies",
        *strategies,
        "--lrs",
        "1e-3",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-length",
        "16",
        "--out",
        str(out),
        "--no-report",
        "--quiet",
        *extra,
    ]


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}


def start(work: Path, out: Path, *extra: str, strategies=STRATEGIES) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ptft_bench", *args(work, out, *extra, strategies=strategies)]
    return subprocess.Popen(
        cmd, cwd=work, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_parallel_equals_serial(work, tmp_path):
    assert main(args(work, tmp_path / "serial", "--jobs", "0")) == 0
    assert main(args(work, tmp_path / "parallel", "--jobs", "2")) == 0
    serial, parallel = records(tmp_path / "serial"), records(tmp_path / "parallel")
    assert sorted(serial) == sorted(parallel)  # same run ids
    for run_id, r in serial.items():
        p = parallel[run_id]
        assert p["status"] == r["status"] == "ok"
        assert p["metrics"] == r["metrics"], run_id
        assert p["env"]["worker"] == "fresh process" and r["env"]["worker"] == "in-process"


def test_two_sweeps_on_one_folder_train_each_run_once(work, tmp_path):
    out = tmp_path / "shared"
    a, b = start(work, out, "--jobs", "1"), start(work, out, "--jobs", "1")
    outs = [p.communicate(timeout=600) for p in (a, b)]
    assert a.returncode == b.returncode == 0, outs
    trained = 0
    for stdout, _ in outs:
        line = next(x for x in stdout.splitlines() if "runs planned" in x)
        trained += int(line.split(" ok,")[0].rsplit(" ", 1)[-1])
    assert trained == len(STRATEGIES), outs  # together they trained each run exactly once
    recs = records(out)
    assert len(recs) == len(STRATEGIES) and all(r["status"] == "ok" for r in recs.values())
    assert not list((out / "claims").glob("*.claim"))  # every claim released


def _wait_for_claim(out: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        claims = list((out / "claims").glob("*.claim")) if (out / "claims").is_dir() else []
        ready = [c for c in claims if c.read_text().strip().endswith("}")]
        if ready:
            return ready[0]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run was claimed"
        time.sleep(0.05)


def test_a_killed_worker_is_recorded_and_retried(work, tmp_path):
    out = tmp_path / "killed-worker"
    proc = start(work, out, "--jobs", "1", strategies=["full", "bitfit"])
    claim = _wait_for_claim(out, proc)
    os.kill(json.loads(claim.read_text())["pid"], signal.SIGKILL)  # the worker, mid-run
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    recs = records(out)
    assert len(recs) == 2
    failed = [r for r in recs.values() if r["status"] == "failed"]
    assert len(failed) == 1 and "signal 9" in failed[0]["error"]
    assert (
        main(args(work, out, "--jobs", "1", "--retry-failed", strategies=["full", "bitfit"])) == 0
    )
    recs = records(out)
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs.values())


def test_a_killed_sweep_leaves_a_claim_that_the_next_start_takes_over(work, tmp_path):
    out = tmp_path / "killed-sweep"
    proc = start(work, out, "--jobs", "1", strategies=["full"])
    claim = _wait_for_claim(out, proc)
    worker = json.loads(claim.read_text())["pid"]
    proc.send_signal(signal.SIGKILL)  # the whole sweep: scheduler and worker
    os.kill(worker, signal.SIGKILL)
    proc.communicate()
    assert claim.exists() and not records(out)
    assert main(args(work, out, "--jobs", "1", strategies=["full"])) == 0
    recs = records(out)
    assert len(recs) == 1 and next(iter(recs.values()))["status"] == "ok"
    assert not claim.exists()


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path):
    store = RunStore(tmp_path)
    assert store.claim("r1")
    assert not store.claim("r1")  # this process holds it: a second claim fails
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    store.release("r1")
    assert store.claim("r1", pid=int(dead.stdout))  # recorded for a process that has exited
    assert not store.claimed_by_other("r1")  # stale
    assert store.claim("r1")  # taken over
    assert json.loads(store.claim_path("r1").read_text())["pid"] == os.getpid()
