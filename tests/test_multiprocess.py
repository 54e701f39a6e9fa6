"""The multi-process path on CPU: `accelerate launch` with 2 processes (gloo), no GPU, no network.

`accelerate launch --cpu --num_processes 2` does *not* start two processes: with `--cpu` accelerate
takes its simple launcher, which runs one process (or hands over to `mpirun` when a hostfile is
given). Two local CPU processes come from the torchrun-based launcher: `--multi_gpu` with
`ACCELERATE_USE_CPU=true` (and no visible GPU), which gives `DistributedType.MULTI_CPU` over gloo.
That is the command this test runs, through `python -m accelerate.commands.launch` so that it does
not depend on the `accelerate` script being on PATH.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e_fixtures import make_csv_task, make_tiny_model_dir

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # about 30 s on 2 busy cores; a deadlock hangs forever


def _gloo_available() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_gloo_available()
    except Exception:  # noqa: BLE001
        return False


pytestmark = pytest.mark.skipif(
    not _gloo_available(), reason="torch.distributed with gloo is not available"
)


def _run_args(model: Path, csv: Path, out: Path) -> list[str]:
    return [
        "run",
        "--model",
        str(model),
        "--tasks",
        f"csv:{csv}?text=review&label=sentiment",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--strategies",
        "full",
        "--no-report",
        "--quiet",
    ]


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def _keys(d: dict, prefix: str = "") -> set[str]:
    """Every key path of a record, nested dicts included (list contents ignored)."""
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k not in ("strategy_params",):
            out |= _keys(v, prefix + k + ".")
    return out


def test_two_process_cpu_run_matches_single_process(tmp_path, monkeypatch):
    from ptft_bench.cli import main

    model = make_tiny_model_dir(tmp_path)
    csv = make_csv_task(tmp_path)
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PTFT_CACHE": str(cache),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("ACCELERATE_CONFIG_FILE", None)
    multi = tmp_path / "multi"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        "0",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        # An empty config file: a user's ~/.cache/huggingface/accelerate/default_config.yaml
        # must not change what this test launches.
        "--config_file",
        str(_empty_accelerate_config(tmp_path)),
        "-m",
        "ptft_bench",
        *_run_args(model, csv, multi),
    ]
    # Own process group: on a timeout the launcher *and* its two workers are killed.
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:  # a deadlock between the processes
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"2-process run did not finish in {TIMEOUT} s (deadlock?):\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"accelerate launch failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"

    # Only the main process writes: exactly one whole record, no temporaries, one plan entry.
    recs = _records(multi)
    assert len(recs) == 1, [r.get("run_id") for r in recs]
    assert not list((multi / "records").glob(".*.tmp"))
    plan = json.loads((multi / "plan.json").read_text())
    assert len(plan["runs"]) == 1
    m = recs[0]
    assert m["status"] == "ok", m.get("error")
    assert m["env"]["num_processes"] == 2
    assert m["env"]["device"] == "cpu"

    # The same run in one process (in this process, as the CLI would run it).
    monkeypatch.setenv("PTFT_CACHE", str(cache))
    single = tmp_path / "single"
    assert main(_run_args(model, csv, single)) == 0
    (s,) = _records(single)
    assert s["status"] == "ok"
    assert s["env"]["num_processes"] == 1

    assert _keys(m) == _keys(s), _keys(m) ^ _keys(s)
    assert m["run_id"] == s["run_id"]  # the process count is not part of what defines a run
    assert m["task_info"] == s["task_info"]  # every process saw the same data
    assert set(m["metrics"]["test"]) == set(s["metrics"]["test"])
    n_batches = math.ceil(m["task_info"]["num_train"] / m["budget"]["batch_size"])
    assert s["steps"] == n_batches
    assert m["steps"] == max(1, n_batches // 2)  # each process takes every 2nd batch
    # Every test example is scored exactly once across the two processes (gathered, not doubled).
    assert 0.0 <= m["metrics"]["test"]["accuracy"] <= 1.0
    assert m["train_samples_per_second"] and m["train_samples_per_second"] > 0


def _empty_accelerate_config(root: Path) -> Path:
    path = root / "accelerate_config.yaml"
    path.write_text(
        "compute_environment: LOCAL_MACHINE\n"
        "distributed_type: MULTI_GPU\n"
        "num_machines: 1\n"
        "num_processes: 2\n"
        "mixed_precision: 'no'\n"
        "use_cpu: true\n"
        "gpu_ids: all\n"
    )
    return path
