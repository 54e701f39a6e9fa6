"""Equal tuning budgets: every strategy gets exactly the stated trials, pruning and selection see
validation only, collapsed runs are recognised, and concurrent or killed sweeps never run a
trial twice nor lose one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import matthews_corrcoef

from ptft_bench.config import suite_from_dict
from ptft_bench.errors import UserError
from ptft_bench.run import baselines
from ptft_bench.sweep.loop import expected_trial_share
from ptft_bench.tasks import get_spec
from ptft_bench.tuning.space import SearchSpace, TuningConfig
from ptft_bench.tuning.study import Study, TrialOutcome
from tests.e2e_fixtures import cli_env, make_tiny_model_dir

TRIALS = 4


def _task(root: Path, n: int = 120, permute_test: bool = False) -> str:
    """A learnable CSV task with its own test file (labels optionally permuted, same name)."""
    pos, neg = ["great", "superb", "brilliant"], ["awful", "dull", "terrible"]
    rows = [
        {"text": f"a {(pos if i % 2 else neg)[i % 3]} film", "label": "pos" if i % 2 else "neg"}
        for i in range(n)
    ]
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    test = pd.DataFrame(rows[:40])
    if permute_test:
        test["label"] = np.random.default_rng(1).permutation(test["label"].to_numpy())
    test.to_csv(root / "test.csv", index=False)
    return f"csv:{root / 'train.csv'}?text=text&label=label&test={root / 'test.csv'}"


def _suite(root: Path, task: str, strategies: list[dict], trials: int = TRIALS) -> Path:
    lines = [
        f'tasks = ["{task}"]',
        f'models = ["{make_tiny_model_dir(root)}"]',
        "seeds = [0, 1]",
        "[budget]",
        "epochs = 3",
        "batch_size = 4",
        "[tuning]",
        f"trials = {trials}",
    ]
    for s in strategies:
        lines += ["[[strategies]]", f'name = "{s["name"]}"']
        if "search" in s:
            lines.append(f"search = {{ lr = {s['search']} }}")
    path = root / "suite.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


STRATEGIES = [
    {"name": "full", "search": "[1e-3, 3e-2]"},
    {"name": "discriminative_lr", "search": "[3e-3, 1e-1]"},
]


def _run(root: Path, suite: Path, out: str, *extra: str, wait: bool = True, jobs: str = "0"):
    cmd = [sys.executable, "-m", "ptft_bench", "run", "--suite", str(suite), "--out", out]
    cmd += ["--jobs", jobs, "--quiet", "--no-report", *extra]
    env = {**cli_env(), "PTFT_CACHE": str(root / "cache")}
    if not wait:
        return subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))]


def _trials(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        if (r.get("tuning") or {}).get("role") == "trial":
            out.setdefault(r["strategy"], []).append(r)
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tuned sweep, and the same sweep (same task, same ids) with the test labels permuted.

    The task's name and files stay the same, so its validation split does too (it is drawn
    from the training file, seeded by the task name); only what the test file says changes."""
    root = tmp_path_factory.mktemp("tuned")
    suite = _suite(root, _task(root), STRATEGIES)
    _run(root, suite, "runs/a")
    _task(root, permute_test=True)
    _run(root, suite, "runs/b")
    return _records(root / "runs" / "a"), _records(root / "runs" / "b")


def test_every_strategy_gets_exactly_the_stated_trials(tuned):
    records, _ = tuned
    trials = _trials(records)
    assert sorted(trials) == ["discriminative_lr", "full"]
    for strategy, runs in trials.items():
        assert len(runs) == TRIALS, strategy
        assert len({r["run_id"] for r in runs}) == TRIALS
        assert sorted(r["tuning"]["trial"] for r in runs) == list(range(TRIALS))
        # a grid over the range: four distinct learning rates, the range's ends included
        assert len({r["lr"] for r in runs}) == TRIALS


def test_seeds_run_only_at_the_selected_configuration(tuned):
    records, _ = tuned
    for strategy, runs in _trials(records).items():
        complete = [
            r
            for r in runs
            if r["tuning"]["state"] == "complete" and not r["learning_check"]["collapsed"]
        ]
        best = max(complete, key=lambda r: (r["tuning"]["value"], -r["tuning"]["trial"]))
        seeds = [r for r in records if (r.get("tuning") or {}).get("role") == "seed"]
        mine = [r for r in seeds if r["strategy"] == strategy]
        assert [r["seed"] for r in mine] == [1]
        assert mine[0]["lr"] == best["lr"]


def test_pruning_and_selection_never_see_test_labels(tuned):
    """Permuting the test labels changes test scores, never a trial, a pruning or a selection."""
    a, b = tuned

    def trace(records):
        return {
            s: sorted(
                (
                    r["lr"],
                    r["tuning"]["state"],
                    r["tuning"]["value"],
                    r["training_stop"]["epochs_run"],
                )
                for r in runs
            )
            for s, runs in _trials(records).items()
        }

    def chosen(records):
        return sorted(
            (r["strategy"], r["lr"])
            for r in records
            if (r.get("tuning") or {}).get("role") == "seed"
        )

    assert trace(a) == trace(b)
    assert chosen(a) == chosen(b)
    test_a = sorted(r["metrics"]["test"]["accuracy"] for r in a)
    test_b = sorted(r["metrics"]["test"]["accuracy"] for r in b)
    assert test_a != test_b  # the permutation did change what test measures


def test_two_processes_on_one_study_run_every_trial_once(tmp_path):
    suite = _suite(tmp_path, _task(tmp_path), [STRATEGIES[0]])
    procs = [_run(tmp_path, suite, "runs/shared", wait=False) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    records = _records(tmp_path / "runs" / "shared")
    trials = _trials(records)["full"]
    assert len(trials) == TRIALS
    assert sorted(r["tuning"]["trial"] for r in trials) == list(range(TRIALS))
    seeds = [r for r in records if (r.get("tuning") or {}).get("role") == "seed"]
    assert len(seeds) == 1
    # the storage agrees: exactly TRIALS counted trials, all finished
    study = _study_of(tmp_path / "runs" / "shared", trials[0]["tuning"]["study"])
    assert len(study.counted()) == TRIALS and study.done()


def test_a_tuned_sweep_runs_in_worker_processes(tmp_path):
    """The default (--jobs N): trials in fresh processes, told to the study by the parent."""
    suite = _suite(tmp_path, _task(tmp_path), [STRATEGIES[0]], trials=2)
    _run(tmp_path, suite, "runs/w", jobs="2")
    records = _records(tmp_path / "runs" / "w")
    assert len(_trials(records)["full"]) == 2
    assert [r["seed"] for r in records if (r.get("tuning") or {}).get("role") == "seed"] == [1]
    assert all(r["env"]["worker"] == "fresh process" for r in records)


def _study_of(run_dir: Path, name: str) -> Study:
    return Study(
        name,
        str(run_dir / "tuning" / "studies.journal"),
        TuningConfig(trials=TRIALS, seed=0),
        SearchSpace((1e-3, 3e-2)),
        3,
    )


def test_a_rerun_continues_a_study_and_does_nothing_twice(tmp_path):
    suite = _suite(tmp_path, _task(tmp_path), [STRATEGIES[0]], trials=2)
    _run(tmp_path, suite, "runs/r")
    first = {r["run_id"]: r["finished_at"] for r in _records(tmp_path / "runs" / "r")}
    res = _run(tmp_path, suite, "runs/r")
    again = {r["run_id"]: r["finished_at"] for r in _records(tmp_path / "runs" / "r")}
    assert again == first, res.stdout


# -- the study on its own (no training) ------------------------------------------------------------
def _bare_study(tmp_path, trials=3) -> Study:
    return Study("s", str(tmp_path / "j.journal"), TuningConfig(trials=trials, seed=0),
                 SearchSpace((1e-4, 1e-2)), 3)  # fmt: skip


def test_a_stale_trial_is_requeued_with_its_configuration(tmp_path):
    study = _bare_study(tmp_path)
    ref = study.ask()
    study.assign(ref, "run-x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    storage = study.study._storage
    storage.set_trial_user_attr(ref.trial_id, "owner", {"pid": int(dead), "host": os.uname()[1]})
    study.sync(lambda run_id: None, lambda run_id: False)  # no record, no claim: stale
    again = study.ask()
    assert again is not None and again.params == ref.params and again.number != ref.number
    assert len(study.counted()) == 1  # the stale one no longer counts


def test_the_budget_holds_whoever_asks(tmp_path):
    a, b = _bare_study(tmp_path, trials=2), _bare_study(tmp_path, trials=2)
    refs = [a.ask(), b.ask()]
    assert all(refs) and b.ask() is None and a.ask() is None
    for r in refs:
        a.tell(r.number, TrialOutcome("complete", 0.5))
    assert b.done() and a.selected()["value"] == 0.5


def test_a_collapsed_trial_is_a_failed_configuration_never_selected(tmp_path):
    study = _bare_study(tmp_path, trials=2)
    r1, r2 = study.ask(), study.ask()
    study.tell(r1.number, TrialOutcome("failed", reason="collapsed", collapsed=True))
    study.tell(r2.number, TrialOutcome("complete", 0.3))
    assert study.selected()["trial"] == r2.number


# -- collapse and the learning check -------------------------------------------------------------
def test_constant_predictions_are_a_collapse():
    spec = get_spec("sst2")
    labels = np.array([0, 1] * 50)
    check = baselines.learning_check(spec, [], np.ones(100, dtype=int), labels)
    assert check["collapsed"] and not check["learned"]
    ok = baselines.learning_check(spec, [], labels.copy(), labels)
    assert not ok["collapsed"] and ok["learned"] and ok["gain"]["value"] == pytest.approx(1.0)
    reg = get_spec("stsb")
    assert baselines.collapsed(reg, np.full(10, 2.5)) and not baselines.collapsed(
        reg, np.arange(10.0)
    )


def test_the_gain_interval_is_matthews_with_a_bootstrap_that_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    preds = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 3, size=300))
    w = np.ones((1, 300))
    assert baselines._weighted_mcc(w, preds, labels)[0] == pytest.approx(
        matthews_corrcoef(labels, preds)
    )
    idx = rng.integers(0, 300, size=300)
    counts = np.bincount(idx, minlength=300)[None, :].astype(float)
    assert baselines._weighted_mcc(counts, preds, labels)[0] == pytest.approx(
        matthews_corrcoef(labels[idx], preds[idx])
    )
    gain = baselines.gain_over_constant(get_spec("cola"), preds, labels)
    assert gain["interval"][0] < gain["value"] < gain["interval"][1]


# -- the search space and the suite ----------------------------------------------------------------
def test_the_grid_spans_the_range_in_log_steps():
    grid = SearchSpace((1e-5, 1e-4)).lr_grid(6)
    assert grid[0] == 1e-5 and grid[-1] == 1e-4 and len(grid) == 6
    assert np.allclose(np.diff(np.log(grid)), np.log(10) / 5, rtol=0.01)
    with pytest.raises(ValueError, match="multiple"):
        SearchSpace((1e-4, 1e-3), (("r", (4, 8, 16)),)).grid(4)
    assert SearchSpace((1e-4, 1e-3), (("r", (4, 8)),)).sampler_kind("auto") == "tpe"


def test_successive_halving_share_of_the_epoch_budget():
    t = TuningConfig(trials=6, min_epochs=1, reduction_factor=3)
    # rungs at 1 and 3 of 4 epochs: 1 + 2/3 + 1/9 epochs of 4 on average
    assert expected_trial_share(t, 4) == pytest.approx((1 + 2 / 3 + 1 / 9) / 4)
    assert expected_trial_share(TuningConfig(pruner="none"), 4) == 1.0


def test_a_tuned_suite_refuses_fixed_learning_rates():
    raw = {"name": "x", "tasks": ["sst2"], "tuning": {"trials": 4},
           "strategies": [{"name": "full", "lrs": [1e-5]}]}  # fmt: skip
    with pytest.raises(UserError, match="give a range"):
        suite_from_dict(raw, {})
    raw["strategies"] = ["full"]
    with pytest.raises(UserError, match="--trials 0"):
        suite_from_dict(raw, {"lrs": [1e-5]})
    assert suite_from_dict(raw, {"tuning.trials": 0}).tuning is None
    assert suite_from_dict(raw, {}).tuning.seed == 0
