"""The sweep estimate: computed from the cost model (no timing in tests), calibrated by
earlier runs on the machine, printed by --dry-run and kept in plan.json for the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from e2e_fixtures import tiny_workspace

from ptft_bench.cli import main
from ptft_bench.config import suite_from_dict
from ptft_bench.run.execute import SweepContext
from ptft_bench.sweep import estimate as E
from ptft_bench.sweep.plan import make_plan


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tiny_workspace(tmp_path_factory.mktemp("estimate"))


def _plan(work: Path, out: Path, strategies: list[str]):
    raw = {
        "name": "est",
        "tasks": [f"csv:{work / 'reviews.csv'}?text=review&label=sentiment"],
        "models": [str(work / "tiny-bert")],
        "strategies": [{"name": s, "lrs": [1e-3]} for s in strategies],
        "budget": {"epochs": 2, "batch_size": 16, "max_length": 16},
        "output_dir": str(out),
    }
    suite = suite_from_dict(raw, {})
    return make_plan(suite), SweepContext(suite.data, suite.precision, progress=False)


def test_work_follows_the_cost_model(work, tmp_path):
    plan, ctx = _plan(
        work, tmp_path, ["full", "lora", "head_only", "linear_probe", "prompt_tuning"]
    )
    works = {s.variant.name: E.run_work(s, ctx) for s in plan.todo}
    # full trains more than LoRA, which back-propagates through the blocks, than a cached head
    assert works["full"].train_flops > works["lora"].train_flops > works["head_only"].train_flops
    # prompt tuning's virtual tokens make it cost more than full fine-tuning per step
    assert works["prompt_tuning"].train_flops > works["full"].train_flops
    # the probe runs one forward pass over train + validation: no backward, no epochs
    assert works["linear_probe"].train_flops < works["lora"].train_flops / 2
    # LoRA's merged copy is measured too: more evaluation work than full fine-tuning's
    assert works["lora"].eval_flops > works["full"].eval_flops > 0


def test_calibration_recovers_the_machine_speed(tmp_path, monkeypatch):
    monkeypatch.setenv("PTFT_CACHE", str(tmp_path))
    key = "cpu|test machine|1 threads"
    rng = np.random.default_rng(0)
    truth = np.array([2e-10, 5e-11, 7.0])  # seconds per train FLOP, per eval FLOP, per run
    for _ in range(12):
        w = E.Work(float(rng.uniform(1e10, 1e12)), float(rng.uniform(1e9, 1e11)), "m")
        E.record_sample(key, w, float(truth @ [w.train_flops, w.eval_flops, 1.0]))
    tiny = E.Work(1e6, 1e6, "tiny")  # another model: dominated by start-up
    for _ in range(3):
        E.record_sample(key, tiny, 30.0)
    coef, basis = E.rates(key, "m")
    np.testing.assert_allclose(coef, truth, rtol=1e-6)
    assert "calibrated on 12" in basis and "m's" in basis
    works = [E.Work(1e11, 1e10, "m")] * 4
    est = E.estimate(works, key, jobs=2)
    assert est.seconds == pytest.approx(4 * (20 + 0.5 + 7) / 2)
    # a model never run here borrows every model's runs
    assert "all models'" in E.rates(key, "new model")[1]


def test_uncalibrated_estimate_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PTFT_CACHE", str(tmp_path))
    est = E.estimate([E.Work(1e12, 1e11)], "cpu|never seen|1 threads", jobs=1)
    assert est.seconds > 0 and "uncalibrated" in est.basis


def test_dry_run_prints_the_estimate_and_the_sweep_keeps_it(work, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PTFT_CACHE", str(tmp_path / "cache"))
    args = [
        "run",
        "--tasks",
        f"csv:{work / 'reviews.csv'}?text=review&label=sentiment",
        "--model",
        str(work / "tiny-bert"),
        "--strategies",
        "full",
        "head_only",
        "--lrs",
        "1e-3",
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--out",
        str(tmp_path / "run"),
        "--jobs",
        "0",
        "--quiet",
    ]
    assert main([*args, "--dry-run"]) == 0
    assert "estimated" in capsys.readouterr().out.splitlines()[-1]
    assert main(args) == 0
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    (sweep,) = plan["sweeps"]
    assert sweep["estimate_seconds"] > 0 and sweep["seconds"] > 0 and sweep["finished_at"]
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "estimate / actual" in report
    # the finished runs calibrated this machine for the next estimate
    samples = json.loads((tmp_path / "cache" / "speed.json").read_text())
    assert sum(len(v) for k, v in samples.items() if k != "probes") == 2
    assert len(samples["probes"]) == 1  # the timed step that stood in before them


def test_the_clock_rescales_what_is_left_by_how_the_first_runs_went():
    """The first finished run calibrates the rest: predicted 10 s, took 25 s, so the 90 s of
    predicted work left over two workers is 90 x 2.5 / 2."""
    clock = E.SweepClock(predicted_total=100.0, jobs=2)
    assert clock.describe() == "" and clock.remaining_seconds() == 50.0
    clock.finished(10.0, 25.0)
    assert clock.ratio == 2.5
    assert clock.remaining_seconds() == pytest.approx(90 * 2.5 / 2)
    clock.finished(30.0, 30.0)  # the ratio is over every run so far: 55 / 40
    assert clock.remaining_seconds() == pytest.approx(60 * 55 / 40 / 2)
    assert "after 2" in clock.describe()


def test_a_timed_step_stands_in_before_any_run_and_is_measured_once(tmp_path, monkeypatch):
    from ptft_bench.sweep import probe

    monkeypatch.setenv("PTFT_CACHE", str(tmp_path))
    calls = []

    def fake(model, threads):
        calls.append((model, threads))
        return np.array([1e-10, 2e-11, 9.0]), "fake"

    monkeypatch.setattr(probe, "measure", fake)
    key = "cpu|fresh machine|1 threads"
    coef, basis = E.rates(key, "some-model")
    np.testing.assert_allclose(coef, [1e-10, 2e-11, 9.0])
    assert "timed training step of some-model" in basis
    E.rates(key, "some-model")
    assert calls == [("some-model", 1)]  # cached per machine key and model
    est = E.estimate([E.Work(1e11, 1e11, "some-model")], key, jobs=1)
    assert est.seconds == pytest.approx(10 + 2 + 9)
