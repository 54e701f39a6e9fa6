"""The report at the size of a real sweep, and on the old reference folder without predictions.

17 variants x 5 tasks (four classification tasks of GLUE dev-set size, one STS-B-like regression
task of 1,500 examples) x 3 seeds, all with per-example predictions: the statistics (2,000
bootstrap resamples per task, every comparison) must take seconds, not minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ptft_bench.records.record import RunRecord
from ptft_bench.records.store import RunStore
from ptft_bench.report import build, write_report

REPO = Path(__file__).resolve().parents[1]
TASKS = {"cola": 1043, "mrpc": 408, "rte": 277, "sst2": 872, "stsb": 1500}
N_VARIANTS = 17
SEEDS = (0, 1, 2)
# Seconds for the statistics of the whole sweep (measured ~2 s on 2 shared cores).
STATISTICS_BUDGET_S = 30.0


def variant_name(i: int) -> str:
    return "full" if i == 0 else f"v{i:02d}"


def write_big_sweep(out: Path) -> None:
    store = RunStore(out)
    for t, (task, n) in enumerate(TASKS.items()):
        rng = np.random.default_rng(t)
        regression = task == "stsb"
        labels = rng.normal(size=n) if regression else rng.integers(0, 2, n)
        for i in range(N_VARIANTS):
            for seed in SEEDS:
                noise = np.random.default_rng([t, i, seed])
                if regression:
                    preds = labels + (0.5 + 0.05 * i) * noise.normal(size=n)
                else:
                    wrong = noise.random(n) < 0.1 + 0.01 * i
                    preds = np.where(wrong, 1 - labels, labels)
                primary = "pearson" if regression else "accuracy"
                value = (
                    float(np.corrcoef(preds, labels)[0, 1])
                    if regression
                    else float((preds == labels).mean())
                )
                rec = RunRecord.from_dict(
                    {
                        "run_id": f"{task}-{variant_name(i)}-s{seed}",
                        "task": task,
                        "model": "m",
                        "strategy": "full" if i == 0 else f"s{i % 6}",
                        "variant": variant_name(i),
                        "lr": 1e-3,
                        "seed": seed,
                        "status": "ok",
                        "primary_metric": primary,
                        "metrics": {"validation": {primary: value}, "test": {primary: value}},
                        "trainable_params": 10_000_000 // (i + 1),
                        "total_params": 10_000_000,
                        "train_seconds": 100.0 / (1 + i / 4),
                        "peak_memory_bytes": 2**31 // (1 + i // 4),
                        "learning_check": {"learned": True, "reasons": []},
                    }
                )
                store.write(rec, predictions={"test": {"pred": preds, "label": labels}})


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    out = tmp_path_factory.mktemp("big") / "run"
    write_big_sweep(out)
    return out


def test_statistics_of_a_17_variant_5_task_3_seed_sweep_take_seconds(big):
    start = time.perf_counter()
    data = build([big])
    seconds = time.perf_counter() - start
    assert seconds < STATISTICS_BUDGET_S, f"statistics took {seconds:.1f} s"
    assert len(data.evidence.tasks) == len(TASKS)
    for ev in data.evidence.tasks.values():
        assert ev.comparison is not None and not ev.missing
        assert len(ev.samples.runs) == N_VARIANTS
        assert all(len(r) == len(SEEDS) for r in ev.samples.runs.values())
    assert "m" in data.evidence.ranks  # 5 tasks: Friedman and a CD diagram


def test_old_reference_without_predictions_still_loads(tmp_path):
    """reports/dapt (schema 1, one seed, no predictions) says which comparisons lack evidence."""
    folder = REPO / "reports" / "dapt"
    if not (folder / "records").is_dir():
        pytest.skip("reports/dapt is not in this checkout")
    paths = write_report([folder], tmp_path / "dapt", formats={"md", "csv"})
    md = paths["md"].read_text()
    assert md.index("## 1. Answer") < md.index("## 2. Setup")
    assert "no per-example predictions: rerun to compare" in md
    assert "1 seed: no test possible" in md
    assert "ties unknown" in md
