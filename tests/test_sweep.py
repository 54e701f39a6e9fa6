"""End to end on a tiny local model and a CSV task: records, determinism, report, crash-resume,
failed runs and --retry-failed."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_fixtures import cli_env, make_csv_task, make_tiny_model_dir

from ptft_bench.cli import main
from ptft_bench.records.record import RunRecord

# Every field of the run record (its dataclass is the only definition).
RECORD_KEYS = {f.name for f in dataclasses.fields(RunRecord)} - {"extra"}
ENV_KEYS = {"python", "torch", "transformers", "device", "git_commit", "config_hash"}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    make_tiny_model_dir(root)
    make_csv_task(root)
    return root


def base_args(work: Path, out: Path, *strategies: str) -> list[str]:
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
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-length",
        "16",
        "--out",
        str(out),
        "--quiet",
        "--no-report",
        "--jobs",
        "0",  # in this process: parallel workers are tested in test_workers.py
    ]


def records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))}


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(work, tmp_path_factory):
    """The same two-strategy sweep into two fresh folders."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp("e2e") / name
        assert main(base_args(work, out, "full", "head_only")) == 0
        outs.append(out)
    return outs


def test_records_have_every_design_key(two_runs):
    recs = records(two_runs[0])
    assert len(recs) == 2
    plan = json.loads((two_runs[0] / "plan.json").read_text())
    assert sorted(r["run_id"] for r in plan["runs"]) == sorted(recs)
    for run_id, r in recs.items():
        assert set(r) == RECORD_KEYS, set(r) ^ RECORD_KEYS
        assert r["schema_version"] == 2 and r["learning_check"]["first_loss"] > 0
        assert set(r["predictions"]["splits"]) == {"validation", "test"}
        assert (two_runs[0] / r["predictions"]["file"]).is_file()
        assert ENV_KEYS <= set(r["env"]), ENV_KEYS - set(r["env"])
        assert r["run_id"] == run_id and r["status"] == "ok" and r["error"] is None
        assert r["env"]["config_hash"] and r["env"]["device"] in ("cpu", "cuda")
        assert set(r["metrics"]) >= {"validation", "test"}
        for split in ("validation", "test"):
            m = r["metrics"][split]
            assert r["primary_metric"] in m and 0 <= m[r["primary_metric"]] <= 1
        assert r["lr"] == 1e-3 and r["seed"] == 0 and r["task"].startswith("csv:")
        assert isinstance(r["strategy_params"], dict)
        for key in (
            "train_seconds",
            "eval_seconds",
            "train_samples_per_second",
            "train_tokens_per_second",
            "train_flops",
        ):
            assert isinstance(r[key], (int, float)) and r[key] > 0, key
        assert r["peak_memory_bytes"] > 0 and r["checkpoint_bytes"] > 0
        losses = [h["loss"] for h in r["history"] if "loss" in h]
        assert losses and all(math.isfinite(x) for x in losses)
        assert any("validation" in h for h in r["history"])
        assert 0 < r["trainable_params"] <= r["total_params"]
    by_strategy = {r["strategy"]: r for r in recs.values()}
    assert by_strategy["head_only"]["trainable_params"] < by_strategy["head_only"]["total_params"]
    assert by_strategy["full"]["trainable_params"] == by_strategy["full"]["total_params"]
    assert by_strategy["head_only"]["checkpoint_bytes"] < by_strategy["full"]["checkpoint_bytes"]
    assert not list((two_runs[0] / "records").glob(".*.tmp"))


def test_same_seed_same_numbers(two_runs):
    a, b = records(two_runs[0]), records(two_runs[1])
    assert sorted(a) == sorted(b)  # same ids in another folder
    for run_id in a:
        assert a[run_id]["metrics"] == b[run_id]["metrics"], run_id
        la = [h["loss"] for h in a[run_id]["history"] if "loss" in h]
        lb = [h["loss"] for h in b[run_id]["history"] if "loss" in h]
        assert la == lb, run_id
        assert a[run_id]["trainable_params"] == b[run_id]["trainable_params"]


def test_report_on_the_run_folder(two_runs, capsys):
    capsys.readouterr()
    assert main(["report", str(two_runs[0])]) == 0
    out = capsys.readouterr().out
    assert "head_only" in out and "full" in out
    report = two_runs[0] / "report"
    assert report.is_dir() and any(report.glob("*.md")) and any(report.glob("*.html"))


# --- crash, resume, failures -------------------------------------------------------------------


def test_resume_after_kill_failed_runs_and_retry(work, tmp_path, capsys):
    out = tmp_path / "sweep"
    # 4 runs; top_k:k=50 passes validation but fails at apply on the 2-layer model
    args = base_args(work, out, "full", "head_only", "top_k:k=50", "bitfit")
    cmd = [sys.executable, "-m", "ptft_bench", *args]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    try:
        while not list((out / "records").glob("*.json")):
            assert first.poll() is None, "the sweep ended before writing a record"
            assert time.monotonic() < deadline, "no record after 300 s"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    before = {p.name: p.read_bytes() for p in (out / "records").glob("*.json")}
    assert 1 <= len(before) < 4, "the kill came too late to test resuming"

    second = subprocess.run(
        cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    assert f"4 runs planned, {len(before)} already done" in second.stdout, second.stdout

    plan = [r["run_id"] for r in json.loads((out / "plan.json").read_text())["runs"]]
    assert len(plan) == len(set(plan)) == 4
    files = sorted(p.stem for p in (out / "records").glob("*.json"))
    assert files == sorted(plan)  # exactly one record per planned run
    assert not [p for p in (out / "records").iterdir() if not p.name.endswith(".json")]
    for name, data in before.items():
        assert (out / "records" / name).read_bytes() == data, f"{name} was redone"

    recs = records(out)
    status = {r["variant"]: r for r in recs.values()}
    failed = status["top_k(k=50)"]
    assert failed["status"] == "failed"
    assert "k=50" in failed["error"] and "layers" in failed["error"]
    for variant in ("full", "head_only", "bitfit"):
        assert status[variant]["status"] == "ok" and status[variant]["error"] is None

    # --retry-failed re-runs the failed run only; without it nothing is redone
    ok_files = {
        p: p.read_bytes()
        for p in (out / "records").glob("*.json")
        if json.loads(p.read_text())["status"] == "ok"
    }
    failed_path = out / "records" / f"{failed['run_id']}.json"
    inode = failed_path.stat().st_ino
    capsys.readouterr()
    assert main(args) == 0
    assert "4 runs planned, 4 already done, 0 ok, 0 failed" in capsys.readouterr().out
    assert failed_path.stat().st_ino == inode
    assert main([*args, "--retry-failed"]) == 0
    assert "4 runs planned, 3 already done, 0 ok, 1 failed" in capsys.readouterr().out
    assert failed_path.stat().st_ino != inode  # rewritten (atomically: a new file renamed in)
    assert json.loads(failed_path.read_text())["status"] == "failed"
    for p, data in ok_files.items():
        assert p.read_bytes() == data
    assert len(list((out / "records").iterdir())) == 4
