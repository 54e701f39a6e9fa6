"""The report's intervals agree with its decisions, seed noise is not resampled from 2-4 seeds,
and every cross-task table compares over one task set.

Checked against scipy (t quantiles, the one-sample t interval) and against the definitions
themselves (the bootstrap p-value formula, Holm), and on generated reports: no row marked tied
(≈ best, ≈ full, ≈ probe, "tied" in the answer) prints an interval that excludes 0.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from ptft_bench.records.store import RunStore
from ptft_bench.report import build, write_report
from ptft_bench.report.recommend import recommendations
from ptft_bench.report.stats import gaps as G
from ptft_bench.report.stats import significance as sig
from tests.test_report_verdicts import N, _record, _write, classification_preds, write_sweep

# ---- duality of intervals and p-values ----------------------------------------------------------


def test_the_draws_interval_excludes_0_exactly_when_the_p_value_is_below_the_level():
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(300):
        n = int(rng.choice([199, 1000, 2000]))
        # Discrete draws with ties at 0 (accuracy gaps), shifted across the boundary.
        d = np.round(rng.normal(rng.uniform(-4, 4), 1.0, n)) / 100
        for alpha in (0.05, 0.01):
            for m in (1, 2, 3, 7, 16):
                lo, hi = G.draws_interval(d, alpha, m)
                excludes = not lo <= 0 <= hi
                assert excludes == (m * G.bootstrap_p(d) < alpha), (trial, alpha, m)
                checked += excludes
    assert checked > 100  # both outcomes occur


def test_a_family_too_large_for_the_draws_gets_an_unbounded_interval():
    d = np.full(199, 0.3)
    assert G.draws_interval(d, 0.05, 1000) == (-math.inf, math.inf)
    assert G.bootstrap_p(d) * 1000 >= 0.05


def _random_spread(rng) -> tuple[G.Spread, float]:
    observed = float(rng.normal(0, 2.5))
    if rng.random() < 0.5:
        return G.Spread(draws=rng.normal(observed, rng.uniform(0.2, 1.5), 500)), observed
    seed = (float(rng.uniform(0, 1)), float(rng.integers(1, 4)))
    return G.Spread(components=(seed, (float(rng.uniform(0, 0.5)), math.inf))), observed


def test_a_holm_tie_always_sits_beside_a_bonferroni_interval_containing_0():
    rng = np.random.default_rng(1)
    ties = separated = 0
    for _ in range(200):
        m = int(rng.integers(2, 9))
        gaps = {}
        for i in range(m):
            spread, observed = _random_spread(rng)
            gaps[f"v{i}"] = G.gap_from_spread(spread, observed, 3, 3, True, G.BY_SEED_T)
        for g in G.family_gaps(gaps).values():
            assert g.family == m
            assert g.p_adjusted <= min(1.0, m * g.p_value) + 1e-15
            if g.p_adjusted >= 0.05:
                ties += 1
                assert g.sim_low <= 0 <= g.sim_high
            else:
                separated += 1
    assert ties > 100 and separated > 100


# ---- seeds: a t for 2-4 seeds, checked against scipy ---------------------------------------------


def test_the_seed_t_is_scipys_t_with_welch_satterthwaite_degrees_of_freedom():
    d = np.array([0.031, 0.058, 0.12])
    sample = np.random.default_rng(2).normal(0, 0.01, 2000)
    spread = G.seed_t_spread([d], sample)
    a, b = d.var(ddof=1) / 3, sample.var(ddof=1)
    df = (a + b) ** 2 / (a**2 / 2)
    assert spread.df == pytest.approx(df)
    for m in (1, 4):
        half = sps.t.ppf(1 - 0.05 / (2 * m), df) * math.sqrt(a + b)
        assert spread.interval(d.mean(), 0.05, m) == pytest.approx(
            (d.mean() - half, d.mean() + half)
        )
    p = 2 * sps.t.sf(d.mean() / math.sqrt(a + b), df)
    assert spread.p_value(d.mean()) == pytest.approx(p)


def test_without_test_sample_noise_the_interval_is_scipys_one_sample_t_interval():
    """b -> 0: per-seed metrics that no example resample moves, through `resampled_spread`."""
    obs_a, obs_b = np.array([0.81, 0.86, 0.79, 0.90]), np.array([0.80, 0.80, 0.80, 0.80])
    res_a, res_b = np.repeat(obs_a[:, None], 300, 1), np.repeat(obs_b[:, None], 300, 1)
    spread, method, paired = sig.resampled_spread(res_a, res_b, obs_a, obs_b, 0, True)
    d = obs_a - obs_b
    assert method == G.BY_SEED_T and paired
    want = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert spread.interval(d.mean()) == pytest.approx(want)
    assert spread.p_value(d.mean()) == pytest.approx(sps.ttest_1samp(d, 0).pvalue)


def test_which_method_for_which_seeds():
    assert sig.method_for(1, 1) == G.BY_EXAMPLES
    assert sig.method_for(3, 3) == sig.method_for(2, 7) == sig.method_for(1, 4) == G.BY_SEED_T
    assert sig.method_for(5, 5) == sig.method_for(1, 6) == G.BY_TWO_LEVELS


def _seeds(labels: np.ndarray, wrong_counts, offset: int = 0) -> np.ndarray:
    out = np.stack([labels.copy() for _ in wrong_counts])
    for s, k in enumerate(wrong_counts):
        out[s, offset + 37 * s : offset + 37 * s + k] ^= 1
    return out


def test_three_seeds_are_not_resampled_as_if_they_were_many():
    """Three per-seed gaps of 2, 6 and 15 points on a large test set: their t interval is wide;
    the two-level bootstrap (10 distinct seed resamples) would call it significant."""
    labels = np.random.default_rng(3).integers(0, 2, 20_000)
    a = _seeds(labels, [200, 200, 200])
    b = _seeds(labels, [600, 1400, 3200], offset=5000)
    g = sig.gap("accuracy", a, b, labels, n_boot=1000)
    per_seed = np.array([(x == labels).mean() - (y == labels).mean() for x, y in zip(a, b)])
    assert g.method == G.BY_SEED_T and g.covers == G.TEST_SAMPLE_AND_SEEDS
    assert g.observed == pytest.approx(per_seed.mean())
    t_only = sps.t.interval(0.95, 2, loc=per_seed.mean(), scale=sps.sem(per_seed))
    # The test sample adds little here (b << a): close to scipy's t interval of the 3 gaps.
    assert (g.low, g.high) == pytest.approx(t_only, rel=0.02)
    assert g.low < 0 < g.high and g.p_value > 0.05
    idx = sig.bootstrap_indices(len(labels), 1000)
    res_a, res_b = (sig.metric_resampled("accuracy", x, labels, idx) for x in (a, b))
    diffs, _ = G.resampled_diffs(res_a, res_b, 0, True)
    assert G.bootstrap_p(diffs) < 0.01  # what resampling three seeds would have claimed


def test_five_seeds_use_the_two_level_bootstrap_and_identical_seeds_reduce_to_one_level():
    labels = np.random.default_rng(4).integers(0, 2, 600)
    a, b = _seeds(labels, [60] * 5), _seeds(labels, [90] * 5, offset=300)
    same_a, same_b = np.stack([a[0]] * 5), np.stack([b[0]] * 5)
    five = sig.gap("accuracy", same_a, same_b, labels, n_boot=800)
    one = sig.paired_bootstrap("accuracy", a[0], b[0], labels, n_boot=800)
    assert five.method == G.BY_TWO_LEVELS and one.method == G.BY_EXAMPLES
    assert (five.observed, five.low, five.high, five.p_value) == pytest.approx(
        (one.observed, one.low, one.high, one.p_value), abs=1e-12
    )


def test_the_mean_over_tasks_sums_variances_and_pools_the_degrees_of_freedom():
    s1 = G.Spread(components=((0.04, 2.0), (0.01, math.inf)))
    s2 = G.Spread(draws=np.random.default_rng(5).normal(0, 0.1, 4000))
    mean = G.mean_spread([s1, s2])
    var = (0.05 + s2.variance) / 4
    assert mean.variance == pytest.approx(var)
    assert mean.df == pytest.approx(var**2 / ((0.04 / 4) ** 2 / 2))
    both = G.mean_spread([s2, s2])
    np.testing.assert_allclose(both.draws, s2.draws)


# ---- generated reports: ties and intervals agree --------------------------------------------------

NUMBER = r"[−+]\d+\.\d"
GAP = re.compile(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\]")


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table: (header cells, rows of cells)."""
    out, lines = [], md.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip() for c in lines[j].strip()[1:-1].split(" | ")])
                j += 1
            out.append(([c.strip() for c in line.strip()[1:-1].split(" | ")], rows))
    return out


def tie_intervals(md: str) -> list[tuple[str, float, float]]:
    """(what, low, high) of every interval printed beside a tie mark: a mark column beside its
    gap column (full leaderboards), a gap cell ending in " ≈" (compact leaderboards, the
    answer: labelled by its column when that is a gap, else "per task"), and each variant of
    the answer's per-budget "tied with it" cells ("tied")."""
    found = []
    for header, rows in tables(md):
        pairs = [
            (header.index(mark), next(i for i, h in enumerate(header) if h.startswith(gap)))
            for mark, gap in (("≈ best", "Δ vs best"), ("≈ full", "Δ vs full"))
            if mark in header
        ]
        tied = [i for i, h in enumerate(header) if h.startswith("tied with it: Δ")]
        if "vs probe" in header:
            pairs.append(
                (
                    header.index("vs probe"),
                    next(i for i, h in enumerate(header) if h.startswith("Δ vs `")),
                )
            )
        for row in rows:
            if len(row) != len(header):
                continue
            hits = [(row[gi], header[gi]) for mi, gi in pairs if row[mi] == "≈"]
            hits += [(c, "tied") for i in tied for c in row[i].split("; ") if c != "—"]
            hits += [
                (c, h if h.startswith("Δ vs") else "per task")
                for c, h in zip(row, header)
                if c.endswith(" ≈")
            ]
            for cell, what in hits:
                m = GAP.search(cell)
                assert m, (what, cell)
                found.append((what, _num(m.group(2)), _num(m.group(3))))
    return found


def _noisy_sweep(out: Path, seeds) -> None:
    """Variants a few points apart on 400 examples: ties and separations near the boundary."""
    store = RunStore(out)
    for task in ("alpha", "beta"):
        preds, labels = classification_preds(task, 0)
        labels = labels[:400]
        for v, miss in (("full", 60), ("lora(r=8)", 66), ("lora(r=4)", 72), ("bitfit", 84)):
            for seed in seeds:
                rng = np.random.default_rng([len(task), miss, seed])
                p = np.where(rng.random(400) < miss / 400, 1 - labels, labels)
                raw = _record(task, v, seed, p, labels)
                raw["task_info"]["num_test"] = 400
                _write(store, raw, p, p, labels)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: write_sweep(d, ("alpha", "delta"), (0,)),
        lambda d: write_sweep(d, ("alpha", "delta"), (0, 1, 2)),
        lambda d: _noisy_sweep(d, (0,)),
        lambda d: _noisy_sweep(d, (0, 1)),
        lambda d: _noisy_sweep(d, (0, 1, 2, 3, 4)),
    ],
    ids=["verdicts-1-seed", "verdicts-3-seeds", "noisy-1", "noisy-2", "noisy-5"],
)
def test_no_row_marked_tied_prints_an_interval_that_excludes_0(make, tmp_path):
    make(tmp_path / "run")
    md = write_report([tmp_path / "run"], tmp_path / "out", formats={"md"})["md"].read_text()
    found = tie_intervals(md)
    assert {w for w, _, _ in found} >= {"Δ vs best [95% simult. CI]", "tied", "per task"}
    for what, low, high in found:
        assert low <= 0 <= high, (what, low, high)
    # The same at the data level, unrounded.
    data = build([tmp_path / "run"])
    for ev in data.evidence.tasks.values():
        for r in ev.comparison.rows:
            if r.in_best_group and r.variant != ev.comparison.best:
                assert r.to_best.sim_low <= 0 <= r.to_best.sim_high
            if r.tied_with_reference and r.variant != ev.reference:
                assert r.to_reference.sim_low <= 0 <= r.to_reference.sim_high
        for g in ev.vs_probe.values():
            assert g.significant() or g.sim_low <= 0 <= g.sim_high
    for rec in recommendations(data.leaderboard, data.evidence):
        for v in rec.tied:
            assert rec.gaps[v].sim_low <= 0 <= rec.gaps[v].sim_high


def test_the_notes_say_how_intervals_and_ties_are_made(tmp_path):
    _noisy_sweep(tmp_path / "run", (0, 1, 2))
    md = write_report([tmp_path / "run"], tmp_path / "out", formats={"md"})["md"].read_text()
    assert "95% simultaneous intervals, Bonferroni over the same comparisons (m = 3" in md
    assert "2–4 seeds: seeds are not resampled" in md and "Welch–Satterthwaite" in md
    assert "two-level bootstrap" not in md.split("## 4.")[0]


# ---- one task set per cross-task table -------------------------------------------------------


def _full_collapses_on(store: RunStore, task: str) -> None:
    """A third task on which full fine-tuning collapses; lora(r=8) and bitfit still learn."""
    preds, labels = classification_preds(task, 0)
    for v in ("full", "lora(r=8)", "bitfit", "lora(r=4)", "linear_probe"):
        p = np.zeros(N, dtype=np.int64) if v == "full" else preds[v]
        _write(store, _record(task, v, 0, p, labels), p, p, labels)


def test_every_cross_task_table_compares_over_one_stated_task_set(tmp_path):
    run = tmp_path / "run"
    write_sweep(run, ("alpha", "beta"), (0,))
    _full_collapses_on(RunStore(run), "gamma")
    md = write_report([run], tmp_path / "out", formats={"md"})["md"].read_text()
    data = build([run])
    lb = data.leaderboard
    # The answer: all three tasks (something learned on each); full collapsed on gamma, so it
    # cannot be recommended and there is no gap to it over these three tasks.
    assert "*Model `tiny`, over 3 tasks: alpha, beta, gamma*" in md
    assert "`full` on gamma 1/1" in md and "`full` (collapsed on gamma)" in md
    best = next(r for r in recommendations(lb, data.evidence) if r.kind == "")
    lora = lb[lb["variant"] == "lora(r=8)"]["test_mean"].mean()
    assert best.variant == "lora(r=8)"
    row = next(line for line in md.splitlines() if line.startswith("| **`lora(r=8)`** |"))
    assert "| no limit;" in row and f"| {lora:.1f} | pick |" in row
    answer = md[: md.index("## 2.")]
    assert "| `full` |" not in answer and "| **`full`** |" not in answer  # not a candidate
    # Across tasks: the two tasks on which full fine-tuning has a result, for every column.
    across = md[md.index("## 4. Across tasks") : md.index("## 5.")]
    assert (
        "every row over the same 2 tasks: alpha, beta; left out: gamma (full fine-tuning" in across
    )
    two = lb[lb["task"].isin(["alpha", "beta"])]
    for v in ("bitfit", "lora(r=4)"):
        mean = two[two["variant"] == v]["test_mean"].mean()
        row = next(line for line in across.splitlines() if line.startswith(f"| {v} |"))
        assert row.startswith(f"| {v} | 2 | {mean:.1f} |"), row
    gap = data.evidence.mean_gap("tiny", "bitfit", "full", ["alpha", "beta"])
    assert gap is not None and data.evidence.mean_gap("tiny", "bitfit", "full", ["gamma"]) is None
