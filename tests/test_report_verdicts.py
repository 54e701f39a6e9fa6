"""Verdicts, not numbers: the report's statistics on per-example predictions, checked against an
independent computation (plain numpy loops, scipy, statsmodels) on records with known answers.

The sweep is synthetic and written through the store, predictions included. On each task:
`lora(r=8)` predicts exactly what full fine-tuning predicts (gap 0, tied); `lora(r=4)` differs
on 30 examples, 17 against it and 13 for it (tied); `bitfit` gets 200 of full's right answers
wrong (significantly worse); `linear_probe` 100 (the floor); `head_only` predicts a constant:
it collapsed (listed apart as a configuration failure, never compared or recommended). The
records carry old-style learning checks (judged on test), so the report re-judges them from
the stored validation predictions.
The statistics are re-implemented here from their documented conventions (the index stream of
`bootstrap_indices`, the order-statistic intervals dual to the p-value formula, Bonferroni
intervals beside Holm decisions, and for 2-4 seeds the t over per-seed gaps plus the example
bootstrap's variance with Welch-Satterthwaite degrees of freedom), never by calling the
report's statistics.
"""

from __future__ import annotations

import csv
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import accuracy_score, f1_score
from statsmodels.stats.multitest import multipletests

from ptft_bench.records.record import RunRecord
from ptft_bench.records.store import RunStore
from ptft_bench.report import build, write_report
from ptft_bench.report.recommend import recommendations

N = 1000
N_BOOT = 2000
TOTAL = 10_000_000
# variant -> (strategy, family, trainable, train seconds, peak memory GiB)
VARIANTS = {
    "full": ("full", "full", TOTAL, 100.0, 2.0),
    "lora(r=8)": ("lora", "lora", 60_000, 70.0, 1.4),
    "lora(r=4)": ("lora", "lora", 30_000, 65.0, 1.4),
    "bitfit": ("bitfit", "bias", 10_000, 60.0, 1.5),
    "linear_probe": ("linear_probe", "head", 500, 5.0, 0.5),
    "head_only": ("head_only", "head", 1_000, 20.0, 0.6),
}
COMPARED = [v for v in VARIANTS if v != "head_only"]
# Serving latency in ms: (as trained, merged into the base or None when the weights do not merge)
LATENCY = {"lora(r=8)": (12.0, 10.0), "lora(r=4)": (13.0, None), "linear_probe": (9.0, None)}
ACCURACY_TASKS = ("alpha", "beta", "gamma")
REGRESSION_TASK = "delta"


# ---- the synthetic sweep ------------------------------------------------------------------------


def _flip(preds: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = preds.copy()
    out[idx] = 1 - labels[idx]
    return out


def classification_preds(task: str, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(task.encode()))
    labels = rng.integers(0, 2, N)
    order = rng.permutation(N)
    wrong, right = order[:150], order[150:]
    # Seeds differ: each seed also misses 10 more of the examples full gets right.
    extra = np.random.default_rng([seed, 99]).choice(right[300:], 10, replace=False)
    full = _flip(labels, labels, np.r_[wrong, extra])
    fixed = full.copy()
    fixed[wrong[:13]] = labels[wrong[:13]]
    preds = {
        "full": full,
        "lora(r=8)": full.copy(),
        "lora(r=4)": _flip(fixed, labels, right[:17]),
        "bitfit": _flip(full, labels, right[:200]),
        "linear_probe": _flip(full, labels, right[200:300]),
        "head_only": np.zeros(N, dtype=np.int64),
    }
    return preds, labels


def regression_preds(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(5)
    labels = rng.normal(size=N)
    noise = rng.normal(size=(4, N))
    wobble = np.random.default_rng([seed, 98]).normal(size=N) * 0.05
    full = labels + 0.6 * noise[0] + wobble
    preds = {
        "full": full,
        "lora(r=8)": full.copy(),
        "lora(r=4)": full + 0.02 * noise[1],
        "bitfit": labels + 1.6 * noise[2] + wobble,
        "linear_probe": labels + 1.1 * noise[3] + wobble,
        "head_only": np.full(N, float(labels.mean())),
    }
    return preds, labels


def score(task: str, preds: np.ndarray, labels: np.ndarray) -> float:
    if task == REGRESSION_TASK:
        return 0.0 if np.ptp(preds) == 0 else float(sps.pearsonr(preds, labels)[0])
    return float(accuracy_score(labels, preds))


def _inference(variant: str) -> dict:
    model, merged = LATENCY.get(variant, (10.0, None))
    out = {"model": {"latency_ms_median": model, "throughput_per_second": 1000 / model}}
    out["same_architecture_as_base"] = variant == "full"  # the unmodified base model
    return out | ({"merged": {"latency_ms_median": merged}} if merged else {})


def _record(task: str, variant: str, seed: int, preds: np.ndarray, labels: np.ndarray) -> dict:
    strategy, family, trainable, secs, mem = VARIANTS[variant]
    primary = "pearson" if task == REGRESSION_TASK else "accuracy"
    value = score(task, preds, labels)
    metrics = {primary: value}
    if task != REGRESSION_TASK:
        metrics["f1"] = float(f1_score(labels, preds, zero_division=0))
        base = {"kind": "majority", "value": 1.0, "test": {"accuracy": float(labels.mean())}}
    else:
        base = {"kind": "mean", "value": 0.0, "test": {"pearson": 0.0}}
    dead = variant == "head_only"
    reason = f"test {primary} {value:.4f} is not above the constant-prediction baseline"
    return {
        "run_id": f"{task}-{variant}-s{seed}",
        "suite": "verdicts",
        "task": task,
        "model": "tiny",
        "strategy": strategy,
        "strategy_family": family,
        "variant": variant,
        "lr": 0.0 if strategy == "linear_probe" else 1e-3,
        "seed": seed,
        "status": "ok",
        "primary_metric": primary,
        "task_info": {"num_train": 4000, "num_validation": 500, "num_test": N, "source": "synth"},
        "metrics": {"validation": dict(metrics), "test": metrics},
        "baseline": base,
        "learning_check": {"learned": not dead, "reasons": [reason] if dead else []},
        "trainable_params": trainable,
        "total_params": TOTAL,
        "train_seconds": secs,
        "eval_seconds": 1.0,
        "peak_memory_bytes": int(mem * 2**30),
        "env": {"device": "cpu", "cpu": "Test CPU 9000", "threads": 4, "cores_available": 8},
        "inference": _inference(variant),
        # Pooling as a record field on some runs and in `extra` (older writers) on others.
        **({"pooling": "mean"} if seed == 0 else {"extra": {"pooling": "mean"}}),
    }


def write_sweep(out: Path, tasks: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    """Write every run through the store; returns {(task, variant): (preds (S, n), labels)}."""
    store = RunStore(out)
    truth: dict = {}
    for task in tasks:
        for seed in seeds:
            if task == REGRESSION_TASK:
                preds, labels = regression_preds(seed)
            else:
                preds, labels = classification_preds(task, seed)
            for variant, p in preds.items():
                if task == REGRESSION_TASK:  # the store keeps values as float32
                    p = p.astype(np.float32).astype(np.float64)
                    labels = labels.astype(np.float32).astype(np.float64)
                rec = RunRecord.from_dict(_record(task, variant, seed, p, labels))
                split = {"pred": p, "label": labels}
                store.write(rec, predictions={"test": split, "validation": split})
                truth.setdefault((task, variant), ([], labels))[0].append(p)
    return {k: (np.stack(p), labels) for k, (p, labels) in truth.items()}


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_seed")
    truth = write_sweep(root / "run", ("alpha",), (0,))
    paths = write_report([root / "run"], root / "report")
    return {"truth": truth, "paths": paths, "csv": read_csv(paths["csv"]), "run": root / "run"}


@pytest.fixture(scope="module")
def seeds3(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds3")
    tasks = (*ACCURACY_TASKS, REGRESSION_TASK)
    truth = write_sweep(root / "run", tasks, (0, 1, 2))
    paths = write_report([root / "run"], root / "report")
    return {"truth": truth, "paths": paths, "csv": read_csv(paths["csv"]), "run": root / "run"}


def read_csv(path: Path) -> dict:
    with path.open() as fh:
        return {(r["task"], r["variant"]): r for r in csv.DictReader(fh)}


# ---- the bootstrap, re-implemented from its documented conventions -------------------------------


def metric_draws(task: str, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(S, B): the primary metric of each seed on each resample, one resample at a time."""
    idx = np.random.default_rng([zlib.crc32(task.encode()), 0]).integers(0, N, (N_BOOT, N))
    out = np.empty((len(preds), N_BOOT))
    for s, p in enumerate(preds):
        if task != REGRESSION_TASK:
            out[s] = (p[idx] == labels[idx]).mean(axis=1)
            continue
        for b, i in enumerate(idx):
            x, y = p[i], labels[i]
            out[s, b] = 0.0 if np.ptp(x) == 0 else np.corrcoef(x, y)[0, 1]
    return out


def order_interval(d: np.ndarray, alpha: float = 0.05, m: int = 1) -> tuple[float, float]:
    """[d_(k), d_(B-1-k)] for the largest k whose bootstrap p-value m * p(k) is below alpha."""
    n, s = len(d), np.sort(d)
    ks = [k for k in range(n // 2) if m * min(1.0, 2 * (1 + k) / (n + 1)) < alpha]
    return (s[max(ks)], s[n - 1 - max(ks)]) if ks else (-np.inf, np.inf)


def seed_t(mean: float, a: float, b: float, s: int, alpha: float = 0.05, m: int = 1):
    """(low, high, p) of mean ± t_df sqrt(a + b), df = (a + b)² / (a² / (S - 1))."""
    se = np.sqrt(a + b)
    if se == 0:
        return mean, mean, 1.0 if mean == 0 else 0.0
    df = (a + b) ** 2 / (a**2 / (s - 1)) if a > 0 else np.inf
    half = sps.t.ppf(1 - alpha / (2 * m), df) * se
    return mean - half, mean + half, min(1.0, 2 * sps.t.sf(abs(mean) / se, df))


def gap_spread(task: str, a: np.ndarray, b: np.ndarray, labels: np.ndarray):
    """("draws", (B,) differences) for one seed per side; ("t", (a, b, S)) for 2-4 seeds paired
    by index: a = var of the per-seed gaps / S, b = bootstrap variance of the mean gap."""
    ma, mb = metric_draws(task, a, labels), metric_draws(task, b, labels)
    if len(a) == 1:
        return "draws", ma[0] - mb[0]
    d = np.array([score(task, x, labels) - score(task, y, labels) for x, y in zip(a, b)])
    return "t", (d.var(ddof=1) / len(d), (ma.mean(axis=0) - mb.mean(axis=0)).var(ddof=1), len(d))


def interval_and_p(kind, spread, observed, alpha=0.05, m=1):
    if kind == "draws":
        return (*order_interval(spread, alpha, m), boot_p(spread))
    return seed_t(observed, *spread, alpha=alpha, m=m)


def boot_p(d: np.ndarray) -> float:
    return min(1.0, 2 * (1 + min((d <= 0).sum(), (d >= 0).sum())) / (len(d) + 1))


def expected_gaps(truth: dict, task: str, target: str) -> dict:
    """{variant: (observed, low, high, p, Holm p, simultaneous low, high)} against ``target``,
    in metric units; the family is the compared variants other than the target."""
    labels = truth[(task, target)][1]
    out = {}
    for v in COMPARED:
        if v == target:
            continue
        a, b = truth[(task, v)][0], truth[(task, target)][0]
        obs = np.mean([score(task, p, labels) for p in a]) - np.mean(
            [score(task, p, labels) for p in b]
        )
        out[v] = (obs, *gap_spread(task, a, b, labels))
    raw = {v: interval_and_p(kind, sp, obs) for v, (obs, kind, sp) in out.items()}
    holm = multipletests([x[2] for x in raw.values()], method="holm")[1]
    m = len(out)
    return {
        v: (obs, *raw[v], p, *interval_and_p(kind, sp, obs, m=m)[:2])
        for (v, (obs, kind, sp)), p in zip(out.items(), holm)
    }


def pts(x: float) -> str:
    return f"{100 * x:+.1f}".replace("-", "−")


# ---- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["one_seed", "seeds3"])
def test_gaps_to_full_match_an_independent_bootstrap(fixture, request):
    got = request.getfixturevalue(fixture)
    truth, table = got["truth"], got["csv"]
    md = got["paths"]["md"].read_text()
    tasks = sorted({t for t, _ in truth})
    # One task of each kind keeps the plain loops quick; the other tasks share the code path.
    for task in [tasks[0]] + [t for t in tasks if t == REGRESSION_TASK]:
        for v, (obs, lo, hi, _, p_holm, s_lo, s_hi) in expected_gaps(truth, task, "full").items():
            row = table[(task, v)]
            assert float(row["gap_to_full_points"]) == pytest.approx(100 * obs, abs=1e-9)
            assert float(row["gap_to_full_ci95_low_points"]) == pytest.approx(100 * lo, abs=1e-9)
            assert float(row["gap_to_full_ci95_high_points"]) == pytest.approx(100 * hi, abs=1e-9)
            assert float(row["gap_to_full_p_holm"]) == pytest.approx(p_holm, abs=1e-9)
            assert row["tied_with_full"] == str(p_holm >= 0.05)
            sim = [float(row[f"gap_to_full_simultaneous_{k}_points"]) for k in ("low", "high")]
            assert sim == pytest.approx([100 * s_lo, 100 * s_hi], abs=1e-9)
            assert float(row["gap_to_full_comparisons"]) == len(COMPARED) - 1
            # The leaderboard prints the simultaneous interval, the one beside the tie mark.
            assert f"{pts(obs)} [{pts(s_lo)}, {pts(s_hi)}]" in md
            if p_holm >= 0.05:
                assert s_lo <= 0 <= s_hi


def test_known_answers(seeds3, one_seed):
    for got in (one_seed, seeds3):
        for (_, v), row in got["csv"].items():
            if v in ("full", "lora(r=8)"):
                assert float(row["gap_to_full_points"]) == 0.0
                assert row["tied_with_full"] == "True" and row["in_best_group"] == "True"
            if v == "lora(r=4)":
                assert row["tied_with_full"] == "True" and row["in_best_group"] == "True"
            if v in ("bitfit", "linear_probe"):
                assert row["tied_with_full"] == "False" and row["in_best_group"] == "False"
                assert float(row["gap_to_full_ci95_high_points"]) < 0
            if v == "head_only":
                assert row["did_not_learn"] == "True" and row["compared"] == "False"
                assert row["gap_to_full_points"] == "" and row["in_best_group"] == ""


def test_mcnemar_is_the_exact_binomial_test_largest_over_seeds(seeds3):
    truth, table = seeds3["truth"], seeds3["csv"]
    for v in ("lora(r=4)", "bitfit"):
        a, labels = truth[("alpha", v)]
        b = truth[("alpha", "full")][0]
        ps = []
        for pa, pb in zip(a, b):
            n10 = int(((pa == labels) & (pb != labels)).sum())
            n01 = int(((pa != labels) & (pb == labels)).sum())
            ps.append(sps.binomtest(n10, n10 + n01, 0.5).pvalue)
        assert float(table[("alpha", v)]["mcnemar_p_vs_full"]) == pytest.approx(max(ps))
    assert table[(REGRESSION_TASK, "bitfit")]["mcnemar_p_vs_full"] == ""
    # † marks a disagreement between McNemar and the bootstrap; here they agree everywhere.
    for (task, v), row in table.items():
        if row["mcnemar_p_vs_full"] not in ("", "nan"):
            p_boot, p_mcnemar = float(row["gap_to_full_p_holm"]), float(row["mcnemar_p_vs_full"])
            assert (p_boot < 0.05) == (p_mcnemar < 0.05), (task, v)
    assert "†" not in seeds3["paths"]["md"].read_text().split("## 4.")[0].replace("† marks", "")


def test_variance_split(seeds3):
    truth, table = seeds3["truth"], seeds3["csv"]
    for task in ("alpha", REGRESSION_TASK):
        for v in ("full", "bitfit"):
            preds, labels = truth[(task, v)]
            per_seed = [score(task, p, labels) for p in preds]
            test_sd = metric_draws(task, preds, labels).std(axis=1, ddof=1).mean()
            row = table[(task, v)]
            assert float(row["seed_sd_points"]) == pytest.approx(100 * np.std(per_seed, ddof=1))
            assert float(row["test_sample_sd_points"]) == pytest.approx(100 * test_sd)
    md = seeds3["paths"]["md"].read_text()
    assert "Seeds or test sample?" in md


def test_single_seed_says_the_interval_covers_the_test_sample_only(one_seed, seeds3):
    md1 = one_seed["paths"]["md"].read_text()
    md3 = seeds3["paths"]["md"].read_text()
    assert "intervals cover the test sample only, not seed-to-seed variation" in md1
    assert "lower bound" in md1
    assert "test sample only" not in md3
    assert "Seeds or test sample?" not in md1  # one seed: nothing to split


def test_answer_comes_first_and_states_the_rule(seeds3):
    md = seeds3["paths"]["md"].read_text()
    html = seeds3["paths"]["html"].read_text()
    assert re.findall(r"^## (.+)$", md, re.M)[0].startswith("1. Answer")
    assert re.findall(r"<h2[^>]*>(.*?)</h2>", html)[0].startswith("1. Answer")
    assert md.index("## 1. Answer") < md.index("## 2. Setup") < md.index("## 3. Per-task")
    assert "**Rule.** Over the tasks on which some variant beats the constant-prediction" in md
    assert "Not candidates (no usable result on every task of the rule): `head_only` " in md
    assert "(collapsed on alpha, beta, delta, gamma)" in md
    assert "**Tasks in the rule**: 4 of 4" in md


def test_recommendations_and_ties(seeds3):
    data = build([seeds3["run"]])
    recs = {(r.kind, r.budget): r for r in recommendations(data.leaderboard, data.evidence)}
    # full and lora(r=8) are identical: whichever is picked, the other is tied with it.
    top = recs[("", "no limit")]
    assert {top.variant, *top.tied} == {"full", "lora(r=8)", "lora(r=4)"}
    one_pct = recs[("parameters", "≤1% trainable parameters")]
    assert one_pct.variant == "lora(r=8)" and one_pct.tied == ("lora(r=4)",)
    tenth = recs[("parameters", "≤0.1% trainable parameters")]
    assert tenth.variant == "linear_probe" and tenth.tied == ()
    assert all(r.variant != "head_only" and "head_only" not in r.tied for r in recs.values())
    md = seeds3["paths"]["md"].read_text()
    # The folded per-budget table: the pick and its tie with the interval; the answer's row of
    # lora(r=4): tied with the no-limit pick and with lora(r=8) (the pick under ≤1%).
    assert "| ≤1% params | **`lora(r=8)`** | `lora(r=4)` −" in md
    row = next(line for line in md.splitlines() if line.startswith("| `lora(r=4)` |"))
    assert row.split(" | ")[1:3] in (["—", "`full`, `lora(r=8)`"], ["—", "`lora(r=8)`, `full`"])


def mean_gap_interval(truth: dict, a: str, b: str, m: int = 1) -> tuple[float, float, float]:
    """(observed, low, high) of the mean over the 4 tasks of the 3-seed gaps a - b: variances
    a_t + b_t / T² summed, Welch-Satterthwaite df over the seed terms (2 df each)."""
    tasks = (*ACCURACY_TASKS, REGRESSION_TASK)
    observed, seed_terms, sample_terms = [], [], []
    for task in tasks:
        labels = truth[(task, "full")][1]
        pa, pb = truth[(task, a)][0], truth[(task, b)][0]
        observed.append(
            np.mean([score(task, p, labels) for p in pa])
            - np.mean([score(task, p, labels) for p in pb])
        )
        _, (va, vb, _) = gap_spread(task, pa, pb, labels)
        seed_terms.append(va / len(tasks) ** 2)
        sample_terms.append(vb / len(tasks) ** 2)
    var = sum(seed_terms) + sum(sample_terms)
    df = var**2 / sum(x**2 / 2 for x in seed_terms) if any(seed_terms) else np.inf
    half = sps.t.ppf(1 - 0.05 / (2 * m), df) * np.sqrt(var)
    mean = float(np.mean(observed))
    return mean, mean - half, mean + half


def test_mean_gap_over_tasks_in_the_tables(seeds3):
    md = seeds3["paths"]["md"].read_text()
    across = md[md.index("## 4. Across tasks") : md.index("## 5.")]
    obs, lo, hi = mean_gap_interval(seeds3["truth"], "bitfit", "full")
    assert "| bitfit | 4 |" in across and f"{pts(obs)} [{pts(lo)}, {pts(hi)}]" in across
    # The answer's tied rows: the gap to the pick over the same tasks, Bonferroni over the
    # 4 other variants that fit "no limit", beside the Holm decision that tied them.
    obs, lo, hi = mean_gap_interval(seeds3["truth"], "lora(r=4)", "full", m=4)
    answer = md[: md.index("## 2.")]
    row = next(line for line in answer.splitlines() if line.startswith("| `lora(r=4)` |"))
    assert f"| {pts(obs)} [{pts(lo)}, {pts(hi)}] ≈ |" in row and lo <= 0 <= hi
    assert "*Model `tiny`, over 4 tasks: alpha, beta, delta, gamma*" in answer


def test_friedman_and_critical_difference(seeds3):
    truth = seeds3["truth"]
    tasks = (*ACCURACY_TASKS, REGRESSION_TASK)
    scores = [
        [np.mean([score(t, p, truth[(t, v)][1]) for p in truth[(t, v)][0]]) for t in tasks]
        for v in COMPARED
    ]
    stat, p = sps.friedmanchisquare(*scores)
    k = len(COMPARED)
    q = sps.studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2)
    cd = q * np.sqrt(k * (k + 1) / (6 * len(tasks)))
    md = seeds3["paths"]["md"].read_text()
    assert f"χ² = {stat:.2f}" in md
    assert f"CD = {cd:.2f} ranks" in md
    assert (seeds3["paths"]["figures"] / "cd__tiny.png").is_file()


def test_floor_baseline_and_did_not_learn(one_seed):
    md = one_seed["paths"]["md"].read_text()
    preds, labels = one_seed["truth"][("alpha", "linear_probe")]
    probe = 100 * accuracy_score(labels, preds[0])
    assert f"majority class (always `1`), on test: accuracy {100 * labels.mean():.1f}" in md
    assert f"accuracy {probe:.1f}: **the floor any fine-tuning strategy must beat**" in md
    # head_only predicts one class: a collapse, shown as such everywhere, never "did not learn".
    assert "0/1 ✗ collapsed" in md and "did not learn" not in md.split("## 6.")[0]
    assert "**Collapsed runs** (every prediction the same class or value" in md
    section = md[md.index("## 6. Runs that collapsed or did not learn") : md.index("## 7.")]
    assert "*1 run(s) that collapsed (every prediction the same class" in section
    assert "alpha-head_only-s0" in section and "same prediction for every validation" in section
    # The old records' checks (judged on test) were re-judged on validation.
    assert "6 older record(s) judged on test were re-judged" in section


def test_leaderboard_marks_and_figures(one_seed):
    md = one_seed["paths"]["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| bitfit |"))
    assert "] worse |" in row  # the compact leaderboard: the mark after the gap
    assert "≈ best" in md and "≈ full" in md and "Holm" in md
    figs = one_seed["paths"]["figures"]
    assert (figs / "forest_alpha__tiny.png").is_file()
    assert (figs / "tradeoffs_alpha__tiny.png").is_file()


def test_setup_shows_pooling_cpu_threads_and_compute(seeds3):
    md = seeds3["paths"]["md"].read_text()
    n = 4 * 3 * len(VARIANTS)
    assert f"Pooling (what the head reads): mean ({n} runs)" in md
    assert f"CPU: Test CPU 9000 ({n} runs)" in md
    assert f"Threads: 4 threads of 8 cores ({n} runs)" in md
    compute = n * 1.0 + 4 * 3 * sum(s for _, _, _, s, _ in VARIANTS.values())
    assert f"Total compute time (train + evaluation, all records): {compute / 60:.3g} min" in md


def test_html_self_contained(seeds3):
    text = seeds3["paths"]["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    imgs = re.findall(r"<img[^>]*>", text)
    pngs = list(seeds3["paths"]["figures"].glob("*.png"))
    # forest, tradeoffs and bars per task (no history: no learning curves); forest_all and cd
    assert len(imgs) == len(pngs) == 4 * 3 + 2
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', i) for i in imgs)


def test_nothing_learned_nothing_recommended(tmp_path):
    store = RunStore(tmp_path / "run")
    preds, labels = classification_preds("alpha", 0)
    for v in ("full", "head_only"):
        raw = _record("alpha", v, 0, preds[v], labels)
        raw["learning_check"] = {"learned": False, "reasons": ["train loss rose (diverged)"]}
        split = {"pred": preds[v], "label": labels}
        store.write(RunRecord.from_dict(raw), predictions={"test": split})
    md = write_report([tmp_path / "run"], tmp_path / "out", formats={"md"})["md"].read_text()
    assert "so there is nothing to recommend (see section 6)" in md
    assert "**Tasks in the rule**: 0 of 1. Left out: `alpha` (2 variants" in md
    assert md.count("train loss rose (diverged)") == 2
    # Old records without validation predictions keep their own check, and say so.
    assert "2 older record(s) without validation predictions keep their test check" in md


def _partial_sweep(out: Path, without: str) -> Path:
    """Two seeds of three variants; ``without``'s records carry no predictions (old records)."""
    store = RunStore(out)
    for seed in (0, 1):
        preds, labels = classification_preds("alpha", seed)
        for v in ("full", "lora(r=8)", "bitfit"):
            rec = RunRecord.from_dict(_record("alpha", v, seed, preds[v], labels))
            split = {"test": {"pred": preds[v], "label": labels}}
            store.write(rec, predictions=None if v == without else split)
    return out


def test_variants_without_predictions_are_listed_and_fall_back(tmp_path):
    run = _partial_sweep(tmp_path / "run", without="bitfit")
    paths = write_report([run], tmp_path / "out", formats={"md", "csv"})
    md, table = paths["md"].read_text(), read_csv(paths["csv"])
    assert (
        "Comparisons without evidence — no per-example predictions: rerun to compare: bitfit" in md
    )
    row = next(line for line in md.splitlines() if line.startswith("| bitfit |"))
    # Exactly 200 more errors on both seeds: a difference of means, the t-test has no spread.
    assert "−20.0 (no CI)" in row and "−20.0 ± 0.0 (identical differences: no test)" in row
    assert table[("alpha", "bitfit")]["evidence"] == "False"
    assert table[("alpha", "lora(r=8)")]["evidence"] == "True"
    assert "ties unknown" in md


def test_full_without_predictions_falls_back_for_every_gap_to_it(tmp_path):
    run = _partial_sweep(tmp_path / "run", without="full")
    md = write_report([run], tmp_path / "out", formats={"md"})["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| bitfit |"))
    assert "−20.0 ± 0.0 (identical differences: no test)" in row
    # bitfit and lora(r=8) still compare with each other: bitfit is not tied with the best
    # (no mark after its gap to the best; the next cell is the fallback gap to full).
    assert re.search(r"\| −20\.0 \[−\d+\.\d, −\d+\.\d\] \| −20\.0 ± 0\.0", row)


def test_the_inference_budget_is_relative_to_the_base_model(seeds3):
    table = seeds3["csv"]
    # Served merged when the weights merge: lora(r=8) costs what the base model costs.
    assert float(table[("alpha", "lora(r=8)")]["inference_latency_ms"]) == 10.0
    assert float(table[("alpha", "lora(r=4)")]["inference_latency_ms"]) == 13.0
    assert float(table[("alpha", "lora(r=4)")]["inference_overhead"]) == pytest.approx(1.3)
    md = seeds3["paths"]["md"].read_text()
    data = build([seeds3["run"]])
    recs = [r for r in recommendations(data.leaderboard, data.evidence) if r.kind == "inference"]
    tight = next(r for r in recs if "1.1×" in r.budget)
    # lora(r=4) does not merge (1.3x the base model's latency): it does not fit, nor is it tied.
    assert "lora(r=4)" not in {tight.variant, *tight.tied}
    assert "| ≤1.1× latency |" in md


def test_latency_noise_band_is_the_spread_of_the_base_architecture_runs():
    """Runs that serve the same computation (full, head-only, BitFit) differ only by noise."""
    import pandas as pd

    from ptft_bench.report.load import add_inference_overhead
    from ptft_bench.report.sections.cost import cost_section

    runs = pd.DataFrame(
        {
            "task": ["t"] * 4,
            "model": ["m"] * 4,
            "variant": ["full", "head_only", "bitfit", "adapter"],
            "base_architecture": [True, True, True, False],
            "inference_latency_ms": [9.0, 10.0, 12.0, 13.0],
        }
    )
    out = add_inference_overhead(runs)
    assert list(out["inference_overhead"]) == pytest.approx([0.9, 1.0, 1.2, 1.3])
    assert list(out["base_latency_lo"]) == pytest.approx([0.9] * 4)  # the same for the task
    assert list(out["base_latency_hi"]) == pytest.approx([1.2] * 4)
    lb = out.assign(train_flops=1e12, achieved_flops_per_second=1e9)
    for col in ("train_seconds", "utilisation", "train_tokens_per_second", "memory_bytes"):
        lb[col] = 1.0
    lb["peak_memory_bytes"] = 1.0
    caption = cost_section(lb).blocks[-1].caption
    assert "measured 0.90–1.20× base" in caption and "measurement noise" in caption
    # The answer says so beside its latency budgets when the band is wider than 0.2.
    from ptft_bench.report.sections.answer import _latency_noise_text

    assert "measured 0.90–1.20× base" in _latency_noise_text(lb)
    quiet = lb.assign(base_latency_lo=0.95, base_latency_hi=1.05)
    assert _latency_noise_text(quiet) == ""


def _write(store: RunStore, raw: dict, test, validation, labels, val_labels=None) -> None:
    val_labels = labels if val_labels is None else val_labels
    splits = {"test": {"pred": test, "label": labels}}
    splits["validation"] = {"pred": validation, "label": val_labels}
    store.write(RunRecord.from_dict(raw), predictions=splits)


def _hard_task(store: RunStore) -> None:
    """Task `hard`: on validation, four variants predict one class (collapsed) and two guess at
    random; on test they all score what they score. Nothing beats the constant on validation."""
    preds, labels = classification_preds("hard", 0)
    noise = np.random.default_rng(11)
    for i, (variant, p) in enumerate(preds.items()):
        guess = noise.integers(0, 2, N) if i < 2 else np.zeros(N, dtype=np.int64)
        raw = _record("hard", variant, 0, p, labels)
        raw["learning_check"] = {"learned": True, "reasons": []}  # an old check, judged on test
        _write(store, raw, p, guess, labels)


def test_a_task_nothing_learned_on_validation_is_left_out_and_named(tmp_path):
    run = tmp_path / "run"
    write_sweep(run, ("alpha", "beta"), (0,))
    _hard_task(RunStore(run))
    md = write_report([run], tmp_path / "out", formats={"md"})["md"].read_text()
    assert "**Tasks in the rule**: 2 of 3. Left out: `hard` (6 variants, 4 of them collapsed)" in md
    assert "no variant beats the constant-prediction baseline on validation there" in md
    assert "*Model `tiny`, over 2 tasks: alpha, beta*" in md
    data = build([run])
    best = next(r for r in recommendations(data.leaderboard, data.evidence) if r.kind == "")
    assert best.variant == "full" and "lora(r=8)" in best.tied and best.tasks == ("alpha", "beta")
    # The mean score in the answer is over the tasks the rule compares on.
    lb = data.leaderboard
    full = lb[(lb["variant"] == "full") & (lb["task"] != "hard")]["test_mean"].mean()
    row = next(line for line in md.splitlines() if line.startswith("| **`full`** | no limit"))
    assert f"| {full:.1f} | pick |" in row


def _paraphrase_task(store: RunStore) -> None:
    """An MRPC-like task: 68% positives, so always-positive has F1 81; `full` beats that constant
    only a little on F1 but clearly on Matthews, on validation and test alike. Its old check,
    judged on test F1 with a margin, said it learned nothing; the others predict one class."""
    rng = np.random.default_rng(12)
    labels = (rng.random(N) < 0.68).astype(np.int64)
    full = np.ones(N, dtype=np.int64)
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    full[neg[:90]] = 0  # 90 negatives found ...
    full[pos[:30]] = 0  # ... for 30 positives lost
    for variant in ("full", "lora(r=8)", "bitfit"):
        p = full if variant == "full" else np.ones(N, dtype=np.int64)
        raw = _record("para", variant, 0, p, labels)
        f1 = float(f1_score(labels, p))
        raw["primary_metric"] = "f1"
        raw["metrics"] = {"validation": {"f1": f1}, "test": {"f1": f1}}
        raw["baseline"] = {"kind": "majority", "value": 1, "test": {"f1": 0.81}}
        old = "test f1 is not above the constant-prediction baseline by the margin"
        raw["learning_check"] = {"learned": False, "reasons": [old]}
        _write(store, raw, p, p, labels)


def test_a_constant_with_a_high_f1_does_not_drop_a_task_a_model_learned(tmp_path):
    run = tmp_path / "run"
    write_sweep(run, ("alpha",), (0,))
    _paraphrase_task(RunStore(run))
    md = write_report([run], tmp_path / "out", formats={"md"})["md"].read_text()
    assert "**Tasks in the rule**: 2 of 2" in md
    assert "*Model `tiny`, over 2 tasks: alpha, para*" in md
    para = md[md.index("### para") : md.index("## 4.")]
    row = next(line for line in para.splitlines() if line.startswith("| full |"))
    assert "| 1/1 |" in row  # learned, judged on validation Matthews
    assert "0/1 ✗ collapsed" in para and "matthews" in para
    data = build([run])
    best = next(r for r in recommendations(data.leaderboard, data.evidence) if r.kind == "")
    assert best.variant == "full" and best.tasks == ("alpha", "para")


def test_a_record_judged_on_validation_is_taken_as_it_is(tmp_path):
    """New records carry the check the run made on validation; the report does not redo it."""
    store = RunStore(tmp_path / "run")
    preds, labels = classification_preds("alpha", 0)
    for v in ("full", "bitfit"):
        raw = _record("alpha", v, 0, preds[v], labels)
        learned = v == "full"
        reasons = [] if learned else ["validation matthews 0.3 [-0.1, 0.6] does not beat it"]
        gain = {"metric": "matthews", "value": 0.3, "interval": [-0.1, 0.6]}
        raw["learning_check"] = {
            "learned": learned,
            "collapsed": False,
            "reasons": reasons,
            "split": "validation",
            "gain": gain,
        }
        _write(store, raw, preds[v], preds[v], labels)
    data = build([tmp_path / "run"])
    lb = data.leaderboard.set_index("variant")
    assert bool(lb.loc["bitfit", "did_not_learn"]) and not lb.loc["full", "did_not_learn"]
    check = lb.loc["bitfit", "selected_runs"][0][1].learning_check
    assert check["reasons"] == reasons and "recomputed" not in check
