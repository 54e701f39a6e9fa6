"""The report of a tuned sweep: a variant's runs are the configuration its study selected, found
from the records by the study's own rule, and nothing else of the study (pruned, failed,
collapsed or other trials) reaches a leaderboard, a gap, the answer or a cost; the tuning
section reports the budget, the selection, what to change, the expected best score after n
trials (checked against brute force) and the cost of the search.

The sweep is synthetic (records with known values, no training), written as a run folder with
the plan a tuned sweep writes.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import statistics
from pathlib import Path

import pytest

from ptft_bench.records.record import RunRecord
from ptft_bench.report import build, write_report
from ptft_bench.report.aggregate import pick_tuned, tuning_trials, with_tuning
from ptft_bench.report.load import load_runs
from ptft_bench.report.sections.tuning import UNTUNED, tuning_sentence
from ptft_bench.report.stats.tuning import expected_max, trial_score
from ptft_bench.tuning.space import SearchSpace, TuningConfig
from ptft_bench.tuning.study import Study, outcome_of

try:  # the untuned sweep builder lives with the report's unit tests
    from test_report import make_records, write_sweep
except ImportError:  # tests/ imported as a package
    from tests.test_report import make_records, write_sweep

MODEL = "base"
TRIALS = 4
SEEDS = (1, 2)  # the seeds besides the trials' own (0)
FULL_SEARCH = "lr log-uniform [1e-05, 0.0003]"
LORA_SEARCH = "lr log-uniform [0.0001, 0.001], r in {4, 8}"

# (task, variant) -> trials: (number, lr, r or None, state, value, collapsed, status, test)
STUDIES = {
    ("sst2", "full"): [
        (0, 1e-5, None, "complete", 0.80, False, "ok", 0.79),
        (1, 3e-5, None, "complete", 0.85, False, "ok", 0.84),
        # ties with trial 1 and tests far better: the lower number wins, its test never counts
        (2, 1e-4, None, "complete", 0.85, False, "ok", 0.99),
        (3, 3e-4, None, "pruned", 0.60, False, "ok", 0.60),
    ],
    ("sst2", "lora"): [
        (0, 1e-4, 4, "complete", 0.70, False, "ok", 0.70),
        (1, 3e-4, 8, "complete", 0.90, True, "ok", 0.95),  # collapsed: never selected
        (2, 1e-3, 8, "complete", None, False, "failed", None),  # failed
        (3, 1e-4, 8, "complete", 0.82, False, "ok", 0.80),  # selected, at the low edge
    ],
    ("rte", "full"): [  # one trial short of the budget
        (0, 1e-5, None, "complete", 0.60, False, "ok", 0.58),
        (1, 4e-5, None, "complete", 0.66, False, "ok", 0.64),
        (2, 1e-4, None, "pruned", 0.55, False, "ok", 0.55),
    ],
    ("rte", "lora"): [
        (0, 1e-4, 4, "complete", 0.61, False, "ok", 0.60),
        (1, 3e-4, 8, "complete", 0.63, False, "ok", 0.62),
        (2, 5e-4, 4, "complete", 0.64, False, "ok", 0.63),
        (3, 1e-3, 8, "pruned", 0.50, False, "ok", 0.50),
    ],
}
# the seed runs' test scores at the selected configuration, by (task, variant)
SEED_TESTS = {
    ("sst2", "full"): (0.83, 0.85),
    ("sst2", "lora"): (0.81, 0.79),
    ("rte", "full"): (0.65, 0.63),
    ("rte", "lora"): (0.62, 0.64),
}
TRIAL_SECONDS, SEED_SECONDS = 10.0, 12.0


def study_name(task: str, variant: str) -> str:
    return f"{task}-{variant}-0123456789"


def record(task, variant, seed, lr, r=None, test=0.8, val=0.8, status="ok", **extra) -> dict:
    """A run record as a tuned sweep writes it (the fields the report reads)."""
    params = {"r": r, "alpha": 16} if variant == "lora" else {}
    seconds = extra.get("seconds", SEED_SECONDS)
    stop = {"reason": "budget", "epochs_run": 3, "epochs_budget": 3, "still_improving": False}
    collapsed = bool(extra.get("collapsed"))
    metrics = {"validation": {"accuracy": val}, "test": {"accuracy": test}}
    return {
        "run_id": f"{task}-{variant}-lr{lr:g}-r{r}-s{seed}-{extra.get('tag', '')}",
        "suite": "tuned-unit",
        "task": task,
        "model": MODEL,
        "strategy": variant,
        "strategy_family": variant,
        "variant": variant,
        "strategy_params": params,
        "lr": lr,
        "seed": seed,
        "status": status,
        "error": None if status == "ok" else "RuntimeError: loss is nan",
        "primary_metric": "accuracy",
        "task_info": {"primary_metric": "accuracy", "metrics": ["accuracy"], "num_test": 100},
        "metrics": metrics if status == "ok" else {},
        "budget": {"epochs": 3, "batch_size": 16},
        "trainable_params": 1000 if variant == "lora" else 100_000,
        "total_params": 100_000,
        "train_seconds": seconds,
        "train_flops": 1e12 * seconds,
        "learning_check": {"learned": not collapsed, "collapsed": collapsed},
        "training_stop": extra.get("stop", stop),
        "tuning": extra.get("tuning"),
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:10:00+00:00",
    }


def trial_record(task, variant, trial) -> dict:
    number, lr, r, state, value, collapsed, status, test = trial
    pruned = state == "pruned"
    info = {
        "role": "trial",
        "study": study_name(task, variant),
        "trial": number,
        "params": {"lr": lr, **({"r": r} if r else {})},
        "state": state,
        "value": value,
        "pruned_at_epoch": 1 if pruned else None,
    }
    stop = {"reason": "pruned" if pruned else "budget", "epochs_run": 1 if pruned else 3}
    stop.update(epochs_budget=3, still_improving=False)
    return record(
        task, variant, 0, lr, r, test=test, val=value, status=status, tuning=info, stop=stop,
        collapsed=collapsed, seconds=TRIAL_SECONDS, tag=f"t{number}",
    )  # fmt: skip


def selected_by_hand(trials) -> tuple:
    ok = [t for t in trials if t[3] == "complete" and not t[5] and t[6] == "ok"]
    return max(ok, key=lambda t: (t[4], -t[0]))


def tuned_records() -> list[dict]:
    out = []
    for (task, variant), trials in STUDIES.items():
        recs = [trial_record(task, variant, t) for t in trials]
        best = selected_by_hand(trials)
        # sst2 / lora's final runs (the selected trial and its seeds) are still improving
        stop = {"reason": "budget", "epochs_run": 3, "epochs_budget": 3}
        stop["still_improving"] = (task, variant) == ("sst2", "lora")
        recs[trials.index(best)]["training_stop"] = dict(stop)
        info = {"role": "seed", "study": study_name(task, variant)}
        for seed, test in zip(SEEDS, SEED_TESTS[(task, variant)]):
            recs.append(
                record(task, variant, seed, best[1], best[2], test=test, val=best[4] - 0.01,
                       tuning=info, stop=dict(stop))
            )  # fmt: skip
        out += recs
    # a seed run at another configuration (the other r) with a huge score: never the variant's
    out.append(
        record("sst2", "lora", 1, 1e-4, 4, test=0.99, val=0.99, tag="decoy",
               tuning={"role": "seed", "study": study_name("sst2", "lora")})
    )  # fmt: skip
    for task in ("sst2", "rte"):  # the linear probe is fitted in closed form: not tuned
        for seed in (0, 1, 2):
            out.append(record(task, "linear_probe", seed, 0.0, test=0.55, val=0.56))
    return out


def plan_json() -> dict:
    lines = []
    for task in ("sst2", "rte"):
        for variant, space in (("full", FULL_SEARCH), ("lora", LORA_SEARCH)):
            lines.append(
                f"{study_name(task, variant)}  {task}  {MODEL}  {variant}  {TRIALS} trials "
                f"({space}), then seeds 1,2"
            )
    tuning = {"studies": lines, "trials": TRIALS, "sampler": "auto"}
    tuning.update(pruner="successive_halving", seed=0)
    return {"suite": "tuned-unit", "runs": [], "sweeps": [{"started_at": "x", "tuning": tuning}]}


def write_folder(root: Path, records: list[dict]) -> Path:
    (root / "records").mkdir(parents=True)
    (root / "plan.json").write_text(json.dumps(plan_json()))
    for r in records:
        (root / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return root


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    folder = write_folder(root / "runs", tuned_records())
    paths = write_report([folder], root / "report")
    return {"folder": folder, "paths": paths, "data": build([folder])}


def _row(data, task, variant):
    lb = data.leaderboard
    return lb[(lb["task"] == task) & (lb["variant"] == variant)].iloc[0]


# ---- selection: the study's rule, from the records alone ----------------------------------------


def _study_selected(tmp_path: Path, records: list[RunRecord], n: int) -> int | None:
    """What an Optuna study told these records' outcomes selects (`Study.selected`)."""
    study = Study(
        "study",
        str(tmp_path / "studies.journal"),
        TuningConfig(trials=n, sampler="random", pruner="none", seed=0),
        SearchSpace((1e-5, 1e-3)),
        3,
    )
    for rec in records:
        ref = study.ask()
        assert ref is not None and ref.number == rec.tuning["trial"]
        study.tell(ref.number, outcome_of(rec))
    chosen = study.selected()
    return None if chosen is None else chosen["trial"]


def _random_trials(rng: random.Random, n: int) -> list[tuple]:
    """Trials with few distinct values (ties), some pruned, collapsed or failed."""
    out = []
    for number in range(n):
        state = rng.choice(["complete", "complete", "pruned"])
        value = rng.choice([0.5, 0.6, 0.7, None if rng.random() < 0.15 else 0.7])
        collapsed, status = rng.random() < 0.2, "failed" if rng.random() < 0.1 else "ok"
        out.append((number, 1e-4 * (number + 1), None, state, value, collapsed, status, 0.5))
    return out


def test_selection_from_records_equals_the_studys_rule(tmp_path):
    rng = random.Random(3)
    for case in range(25):
        trials = _random_trials(rng, rng.randint(1, 6))
        recs = [trial_record("sst2", "full", t) for t in trials]
        folder = tmp_path / f"case{case}"
        (folder / "records").mkdir(parents=True)
        for r in recs:
            (folder / "records" / f"{r['run_id']}.json").write_text(json.dumps(r))
        runs = with_tuning(load_runs([folder]).runs)
        pick = pick_tuned(runs)
        mine = None if pick.selected is None else int(runs.loc[pick.selected, "trial"])
        expected = _study_selected(folder, [RunRecord.from_dict(r) for r in recs], len(recs))
        assert mine == expected, trials


def test_ties_go_to_the_lower_trial_and_collapsed_trials_are_never_selected(tuned):
    trials = tuned["data"].tuning
    chosen = trials[trials["selected"]].set_index(["task", "variant"])["trial"]
    assert chosen.to_dict() == {
        ("rte", "full"): 1,
        ("rte", "lora"): 2,
        ("sst2", "full"): 1,  # tied with trial 2 at 0.85
        ("sst2", "lora"): 3,  # trial 1 scored 0.90 but collapsed, trial 2 failed
    }


def test_only_the_selected_configuration_reaches_the_leaderboard(tuned):
    data = tuned["data"]
    for (task, variant), trials in STUDIES.items():
        r = _row(data, task, variant)
        best = selected_by_hand(trials)
        tests = [best[7], *SEED_TESTS[(task, variant)]]
        assert r["lr"] == best[1]
        assert r["seed_scores"] == pytest.approx({s: 100 * t for s, t in zip((0, *SEEDS), tests)})
        assert r["test_mean"] == pytest.approx(100 * statistics.mean(tests))
        assert r["n_seeds"] == r["n_runs_ok"] == 1 + len(SEEDS)
        assert r["n_runs_failed"] == 0
        # costs are the final runs' means: every trial ran 10 s, every seed 12 s
        want = statistics.mean([TRIAL_SECONDS] + [SEED_SECONDS] * len(SEEDS))
        assert r["train_seconds"] == pytest.approx(want)
        ids = {rec.run_id for _, rec, _ in r["selected_runs"]}
        assert not any("decoy" in i for i in ids)
        assert len(ids) == 1 + len(SEEDS)
    # the tied trial with a test score of 0.99 and the decoy seed never count
    assert _row(data, "sst2", "full")["test_mean"] < 90
    assert _row(data, "sst2", "lora")["test_mean"] < 90
    probe = _row(data, "sst2", "linear_probe")
    assert probe["tuning"] == {} and probe["n_seeds"] == 3


def test_trials_stay_out_of_the_other_sections(tuned):
    md = tuned["paths"]["md"].read_text()
    failures = md[md.index("Failures and missing runs") :]
    failures = failures[: failures.index("\n## ")] if "\n## " in failures else failures
    assert "No failed runs." in failures  # the failed trial is in the tuning section only
    tuning = _section(md, "Tuning")
    assert "RuntimeError: loss is nan" in tuning


# ---- expected best after n trials ----------------------------------------------------------------


def brute_force(scores: list[float], n: int) -> float:
    tuples = list(itertools.product(scores, repeat=n))
    return sum(max(t) for t in tuples) / len(tuples)


@pytest.mark.parametrize("seed", range(6))
def test_expected_max_equals_brute_force(seed):
    rng = random.Random(seed)
    n_trials = rng.randint(1, 5)
    scores = [rng.choice([50.0, 60.0, 61.5, 70.0, 90.0]) for _ in range(n_trials)]
    curve = expected_max(scores)
    assert len(curve) == n_trials
    for n in range(1, n_trials + 1):
        assert curve[n - 1] == pytest.approx(brute_force(scores, n))
    assert curve[0] == pytest.approx(statistics.mean(scores))
    assert all(a <= b + 1e-12 for a, b in zip(curve, curve[1:]))
    assert expected_max([]) == []


def test_which_score_a_trial_counts_with():
    assert trial_score("complete", 0.8, 0.7) == 0.8
    assert trial_score("pruned", 0.6, 0.5) == 0.6  # the best it reached before it was stopped
    assert trial_score("failed", None, 0.52) == 0.52  # collapsed or failed: its validation score
    assert trial_score("failed", None, math.nan) is None  # nothing finite: left out


def test_the_curve_in_the_leaderboard_follows_the_rule(tuned):
    t = _row(tuned["data"], "sst2", "lora")["tuning"]
    # complete 0.70, collapsed (its validation score 0.90), failed (no score: left out), 0.82
    assert t["expected_best"] == pytest.approx(expected_max([70.0, 90.0, 82.0]))
    assert (t["trials"], t["complete"], t["pruned"], t["failed"], t["collapsed"]) == (4, 2, 0, 2, 1)
    assert t["selected_params"] == {"r": 8} and t["selected_value"] == pytest.approx(82.0)


# ---- the section, its figures and the answer's sentence ------------------------------------------


def _section(md: str, title: str) -> str:
    start = re.search(rf"^## \d+\. {title}$", md, re.M)
    assert start, f"no section {title}"
    rest = md[start.end() :]
    end = re.search(r"^## \d+\. ", rest, re.M)
    return rest[: end.start()] if end else rest


def test_the_tuning_section_renders_after_the_leaderboards(tuned):
    md = tuned["paths"]["md"].read_text()
    titles = re.findall(r"^## \d+\. (.+)$", md, re.M)
    assert titles.index("Tuning") == titles.index("Per-task leaderboards") + 1
    text = _section(md, "Tuning")
    assert f"**{TRIALS} trials**" in text and "successive_halving" in text
    assert FULL_SEARCH in text and LORA_SEARCH in text
    assert "selected lr at the low edge of the searched range: widen the range" in text
    assert "still improving at the last epoch (3 of 3 final runs): give it more epochs" in text
    html = tuned["paths"]["html"].read_text()
    assert "Tuning" in html and "Expected best validation score (points) after n trials" in html


def test_the_tuning_figures_are_written(tuned):
    figures = tuned["paths"]["figures"]
    for kind in ("tuning_curve", "tuning_lr"):
        drawn = sorted(p.name for p in figures.glob(f"{kind}_*.png"))
        assert len(drawn) == 2, kind  # one per task
        assert all((figures / name).stat().st_size > 5_000 for name in drawn)
    md = tuned["paths"]["md"].read_text()
    assert md.count("figures/tuning_lr_") >= 2


def test_the_check_names_a_group_with_fewer_trials(tuned):
    text = _section(tuned["paths"]["md"].read_text(), "Tuning")
    assert "**Equal budgets: no.**" in text
    assert "`full` on `rte` (3 of 4)" in text
    assert "`lora` on `rte`" not in text.split("**Equal budgets: no.**")[1].split("\n")[0]


def test_tuning_cost_is_the_trials_sum_over_a_final_run(tuned):
    text = _section(tuned["paths"]["md"].read_text(), "Tuning")
    # sst2 / full: 4 trials of 10 s against final runs of (10 + 12 + 12) / 3 s
    ratio = 4 * TRIAL_SECONDS / statistics.mean([TRIAL_SECONDS, SEED_SECONDS, SEED_SECONDS])
    assert f"| full | 40 s | 11.3 s | {ratio:.2g}× |" in text


def test_the_answer_says_which_strategy_tuning_helped_most(tuned):
    lb = tuned["data"].leaderboard
    sentence = tuning_sentence(lb)
    # gains in expected best from 1 to N trials, mean over the two tasks, by hand
    gains = {}
    for (_, variant), trials in STUDIES.items():
        scores = [100 * t[4] for t in trials if t[4] is not None]
        curve = expected_max(scores)
        gains.setdefault(variant, []).append(curve[-1] - curve[0])
    mean = {v: statistics.mean(g) for v, g in gains.items()}
    top, low = sorted(mean, key=mean.get, reverse=True)
    assert sentence == (
        f"Tuning mattered most for `{top}` (+{mean[top]:.1f} points of validation score from 1 "
        f"to 4 trials, mean over 2 tasks) and least for `{low}` (+{mean[low]:.1f})."
    )
    answer = _section(
        tuned["paths"]["md"].read_text(), re.escape("Answer: which strategy for which budget")
    )
    assert sentence in answer
    assert UNTUNED not in tuned["paths"]["md"].read_text()


def test_an_untuned_report_says_so_once_and_has_no_tuning_section(tmp_path):
    shards = write_sweep(tmp_path, make_records())
    paths = write_report(shards, tmp_path / "report", formats={"md"})
    md = paths["md"].read_text()
    assert md.count(UNTUNED) == 1
    assert not re.search(r"^## \d+\. Tuning$", md, re.M)
    assert tuning_trials(build(shards).runs.runs).empty
