"""Significance statistics against independent computations on data with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from ptft_bench.report.stats import significance as sig

CLASSIFICATION = ("accuracy", "f1", "f1_macro", "mcc")
REGRESSION = ("pearson", "spearman", "pearson_spearman")


def _plain(metric: str, preds: np.ndarray, labels: np.ndarray) -> float:
    """The metric by the libraries, one resample at a time (0.0 for a constant side)."""
    if metric == "accuracy":
        return accuracy_score(labels, preds)
    if metric == "f1":
        return f1_score(labels, preds, zero_division=0)
    if metric == "f1_macro":
        return f1_score(labels, preds, average="macro", zero_division=0)
    if metric == "mcc":
        return matthews_corrcoef(labels, preds)
    if np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    if metric == "pearson_spearman":
        return (_plain("pearson", preds, labels) + _plain("spearman", preds, labels)) / 2
    return (stats.pearsonr if metric == "pearson" else stats.spearmanr)(preds, labels)[0]


def _with_accuracy(labels: np.ndarray, wrong: np.ndarray | list[int]) -> np.ndarray:
    """Binary predictions equal to ``labels`` except at the indices ``wrong``."""
    preds = labels.copy()
    preds[wrong] = 1 - preds[wrong]
    return preds


def _data(metric: str, rng: np.random.Generator, n: int = 60):
    """(2, n) predictions and labels; three classes where the metric allows, ties in regression."""
    if metric in REGRESSION:
        labels = np.round(rng.normal(size=n), 1)
        return np.round(labels + rng.normal(size=(2, n)), 1), labels
    k = 2 if metric == "f1" else 3
    labels = rng.integers(0, k, n)
    return np.where(rng.random((2, n)) < 0.6, labels, rng.integers(0, k, (2, n))), labels


@pytest.mark.filterwarnings("ignore:A single label was found")  # the constant resample
@pytest.mark.parametrize("metric", CLASSIFICATION + REGRESSION)
def test_resampled_metric_equals_the_plain_computation(metric):
    rng = np.random.default_rng(3)
    preds, labels = _data(metric, rng)
    idx = sig.bootstrap_indices(len(labels), 12, seed=5)
    idx[0] = 4  # one example drawn n times: constant on both sides
    idx[1] = np.where(np.arange(len(labels)) < 3, 7, 4)  # two distinct examples only
    got = sig.metric_resampled(metric, preds, labels, idx)
    assert got.shape == (2, 12)
    for s, row in enumerate(preds):
        want = [_plain(metric, row[i], labels[i]) for i in idx]
        np.testing.assert_allclose(got[s], want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sig.metric_resampled(metric, preds[1], labels, idx), got[1])


def test_resampling_in_blocks_changes_nothing(monkeypatch):
    rng = np.random.default_rng(0)
    preds, labels = _data("spearman", rng, n=40)

    def numbers():
        g = sig.gap("spearman", preds[0], preds[1], labels, n_boot=300, seed=2)
        return g.observed, g.low, g.high, g.p_value

    whole = numbers()
    idx = sig.bootstrap_indices(40, 300, seed=2)
    at_once = sig.metric_resampled("spearman", preds, labels, idx)
    monkeypatch.setattr(sig, "BLOCK_CELLS", 7 * 40)  # blocks of 7 resamples
    assert numbers() == whole
    np.testing.assert_array_equal(sig.metric_resampled("spearman", preds, labels, idx), at_once)


@pytest.mark.parametrize("metric", ["accuracy", "mcc", "spearman"])
def test_identical_predictions_give_a_zero_gap(metric):
    preds, labels = _data(metric, np.random.default_rng(1))
    for a in (preds[0], preds):  # one seed, then two
        g = sig.gap(metric, a, a, labels, n_boot=500)
        assert (g.observed, g.low, g.high, g.p_value) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("b, c", [(7, 15), (0, 6), (10, 10), (31, 12), (0, 0)])
def test_mcnemar_matches_the_exact_binomial_test(b, c):
    labels = np.random.default_rng(2).integers(0, 2, 100)
    a_wrong = list(range(50, 50 + c)) + [90, 91]  # 90, 91: both wrong, not discordant
    b_wrong = list(range(b)) + [90, 91]
    got = sig.mcnemar_exact(
        _with_accuracy(labels, a_wrong), _with_accuracy(labels, b_wrong), labels
    )
    want = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert got[:2] == (b, c)
    assert got[2] == pytest.approx(want, rel=1e-12)


def test_accuracy_interval_agrees_with_the_normal_approximation():
    n, b, c = 20_000, 1500, 1100
    labels = np.random.default_rng(4).integers(0, 2, n)
    both_wrong = np.arange(b + c, b + c + 3400)
    preds_a = _with_accuracy(labels, np.r_[b : b + c, both_wrong])
    preds_b = _with_accuracy(labels, np.r_[0:b, both_wrong])
    g = sig.paired_bootstrap("accuracy", preds_a, preds_b, labels, n_boot=2000)
    se = math.sqrt((b + c) - (b - c) ** 2 / n) / n
    half = 1.959964 * se
    assert g.observed == pytest.approx((b - c) / n)
    assert (g.high - g.low) / 2 == pytest.approx(half, rel=0.10)
    assert (g.high + g.low) / 2 == pytest.approx(g.observed, abs=0.1 * half)
    assert g.p_value == pytest.approx(2 / 2001) and g.covers == sig.TEST_SAMPLE


def _seeds_of_differing_accuracy(n: int = 600):
    labels = np.random.default_rng(5).integers(0, 2, n)
    rng = np.random.default_rng(6)
    spread = np.stack([_with_accuracy(labels, rng.random(n) > acc) for acc in (0.6, 0.75, 0.9)])
    steady = np.stack([_with_accuracy(labels, np.arange(int(0.25 * n)))] * 3)
    return spread, steady, labels


def test_three_seeds_widen_the_interval_with_their_spread_and_add_nothing_without_it():
    spread, steady, labels = _seeds_of_differing_accuracy()
    three = sig.gap("accuracy", spread, steady, labels, n_boot=1000)
    assert (three.n_seeds_a, three.n_seeds_b, three.paired_seeds) == (3, 3, True)
    assert three.covers == sig.TEST_SAMPLE_AND_SEEDS and three.method == sig.BY_SEED_T
    for s in range(3):
        one = sig.paired_bootstrap("accuracy", spread[s], steady[s], labels, n_boot=1000)
        assert three.high - three.low > 1.5 * (one.high - one.low)
    # Seeds that agree exactly: no seed variance, so the t is a normal interval whose variance
    # is the example bootstrap's of the one-seed gap.
    same_a, same_b = np.stack([spread[2]] * 3), steady
    three = sig.gap("accuracy", same_a, same_b, labels, n_boot=1000)
    idx = sig.bootstrap_indices(len(labels), 1000)
    draws = sig.metric_resampled("accuracy", spread[2], labels, idx) - sig.metric_resampled(
        "accuracy", steady[0], labels, idx
    )
    half = stats.norm.ppf(0.975) * draws.std(ddof=1)
    assert (three.low, three.high) == pytest.approx(
        (three.observed - half, three.observed + half), abs=1e-12
    )


def test_unequal_seed_counts_pair_nothing():
    spread, steady, labels = _seeds_of_differing_accuracy()
    g = sig.gap("accuracy", spread, steady[0], labels, n_boot=500)
    assert (g.n_seeds_a, g.n_seeds_b, g.paired_seeds) == (3, 1, False)
    assert g.method == sig.BY_SEED_T  # the 3-seed side's spread enters the t, unpaired
    assert g.observed == pytest.approx(np.mean([accuracy_score(labels, p) for p in spread]) - 0.75)
    accs = np.array([accuracy_score(labels, p) for p in spread])
    assert g.spread.components[0] == pytest.approx((accs.var(ddof=1) / 3, 2.0))


def test_same_seed_same_interval_and_another_seed_another():
    spread, steady, labels = _seeds_of_differing_accuracy()

    def numbers(seed):
        g = sig.gap("accuracy", spread, steady, labels, n_boot=400, seed=seed)
        return g.low, g.high, g.p_value

    assert numbers(0) == numbers(0)
    assert numbers(0) != numbers(1)


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(7)
    cases = [rng.random(m) ** 3 for m in (1, 2, 5, 17)] + [np.array([0.01, 0.01, 0.04, 1.0, 0.2])]
    for p in cases:
        np.testing.assert_allclose(sig.holm(p), multipletests(p, method="holm")[1])


def test_holm_passes_nan_through_and_leaves_it_out_of_the_family():
    got = sig.holm([0.01, math.nan, 0.04])
    np.testing.assert_allclose(got, [0.02, math.nan, 0.04])


def _task():
    """Binary labels and variants made by flipping known examples of the best one."""
    labels = np.random.default_rng(8).integers(0, 2, 2000)
    best_wrong = np.arange(100)
    full_wrong = np.r_[best_wrong, 200:350]
    preds = {
        "best": _with_accuracy(labels, best_wrong),  # accuracy 0.95
        "near1": _with_accuracy(labels, np.r_[8:100, 100:110]),  # 10 new errors, 8 fixed
        "near2": _with_accuracy(labels, np.r_[5:100, 110:116]),  # 6 new errors, 5 fixed
        "full": _with_accuracy(labels, full_wrong),  # 150 more errors
        "worse": _with_accuracy(labels, np.r_[best_wrong, 400:700]),
        "like_full": _with_accuracy(labels, np.r_[full_wrong[12:], 800:812]),  # same accuracy
        "old": None,  # a record without stored predictions
    }
    return preds, labels


def test_task_comparison_finds_the_constructed_tie_groups():
    preds, labels = _task()
    table = sig.compare_task("accuracy", preds, labels, reference="full", n_boot=1000)
    assert table.best == "best"
    assert table.best_group == ["best", "near1", "near2"]
    tied_ref = [r.variant for r in table.rows if r.tied_with_reference]
    assert tied_ref == ["full", "like_full"]
    worse = table.row("worse")
    assert worse.to_best.significant() and worse.to_best.high < 0
    assert worse.to_best.observed == pytest.approx(-300 / 2000)
    assert table.row("best").to_reference.observed == pytest.approx(150 / 2000)
    assert table.row("best").score == pytest.approx(0.95)


def test_task_comparison_rows_are_plain_gaps_with_holm_on_top():
    preds, labels = _task()
    table = sig.compare_task("accuracy", preds, labels, reference="full", n_boot=1000)
    own = sig.gap("accuracy", preds["near1"], preds["best"], labels, n_boot=1000)
    row = table.row("near1").to_best
    assert (row.observed, row.low, row.high, row.p_value) == pytest.approx(
        (own.observed, own.low, own.high, own.p_value)
    )
    others = [r for r in table.rows if r.has_evidence and r.variant != "best"]
    np.testing.assert_allclose(
        [r.to_best.p_adjusted for r in others], sig.holm([r.to_best.p_value for r in others])
    )
    best = table.row("best")
    assert best.in_best_group and best.to_best.observed == 0 and best.to_best.p_value == 1
    ref = table.row("full")
    assert ref.tied_with_reference and math.isnan(ref.mcnemar_p)
    b, c, p = sig.mcnemar_exact(preds["best"], preds["full"], labels)
    assert (b, c) == (150, 0) and best.mcnemar_p == p
    assert table.row("like_full").mcnemar_p == 1.0


def test_variants_without_predictions_are_rows_of_nan():
    preds, labels = _task()
    old = sig.compare_task("accuracy", preds, labels, n_boot=200).row("old")
    assert not old.has_evidence and not old.in_best_group and not old.tied_with_reference
    assert math.isnan(old.score) and math.isnan(old.to_best.p_value) and old.n_seeds == 0
    nothing = sig.compare_task("accuracy", {"a": None}, labels, n_boot=200)
    assert nothing.best is None and nothing.best_group == []
    no_ref = sig.compare_task("accuracy", {"a": preds["best"]}, labels, reference="x", n_boot=200)
    assert math.isnan(no_ref.row("a").to_reference.observed)


def test_mcnemar_over_seeds_is_the_largest_p_of_matched_seeds():
    preds, labels = _task()
    a = np.stack([preds["near1"], preds["worse"]])
    ref = np.stack([preds["full"], preds["full"]])
    table = sig.compare_task("accuracy", {"a": a, "full": ref}, labels, n_boot=200)
    ps = [sig.mcnemar_exact(x, y, labels)[2] for x, y in zip(a, ref)]
    assert table.row("a").mcnemar_p == max(ps)


def test_variance_split_separates_seed_and_test_sample_spread():
    spread, steady, labels = _seeds_of_differing_accuracy(n=2000)
    split = sig.variance_split("accuracy", spread, labels, n_boot=1000)
    accs = [accuracy_score(labels, p) for p in spread]
    assert split.seed_sd == pytest.approx(np.std(accs, ddof=1))
    binomial = np.mean([math.sqrt(a * (1 - a) / len(labels)) for a in accs])
    assert split.test_sample_sd == pytest.approx(binomial, rel=0.1)
    assert split.seed_share + split.test_sample_share == pytest.approx(1)
    assert split.seed_share > 0.9
    one = sig.variance_split("accuracy", spread[0], labels, n_boot=200)
    assert one.n_seeds == 1 and math.isnan(one.seed_sd) and math.isnan(one.seed_share)


def test_mean_ranks_match_rankdata_task_by_task():
    scores = np.random.default_rng(9).integers(0, 4, (6, 5)).astype(float)  # with ties
    want = np.mean([stats.rankdata(-scores[:, t]) for t in range(5)], axis=0)
    ranks = sig.mean_rank_interval(scores, n_boot=500)
    np.testing.assert_allclose(ranks.mean_rank, want)
    assert np.all(ranks.low <= ranks.mean_rank) and np.all(ranks.mean_rank <= ranks.high)
    same = sig.mean_rank_interval(np.tile(scores[:, :1], 5), n_boot=100)
    np.testing.assert_allclose(same.low, same.high)


def test_friedman_matches_scipy():
    scores = np.random.default_rng(10).integers(0, 5, (5, 8)).astype(float)  # with ties
    got = sig.friedman(scores)
    want = stats.friedmanchisquare(*scores)
    assert got.statistic == pytest.approx(want.statistic)
    assert got.p_value == pytest.approx(want.pvalue)
    assert (got.n_variants, got.n_tasks) == (5, 8)
    assert sig.friedman(np.ones((3, 4))).p_value == 1.0


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_q_matches_demsar_table(k, q):
    # The table truncates (k=3: 2.3437 is printed 2.343), so agreement to 3 decimals is 1e-3.
    assert sig.nemenyi_q(k) == pytest.approx(q, abs=1e-3)


def test_critical_difference_groups():
    assert sig.critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=1e-3)
    groups = sig.cd_groups(np.array([3.0, 1.0, 2.6, 1.5, 4.5]), cd=1.2)
    assert groups == [(1, 3), (3, 2), (2, 0)]
    assert sig.cd_groups(np.array([1.0, 2.0, 3.0]), cd=5) == [(0, 1, 2)]


def test_compare_across_tasks_gives_what_a_cd_diagram_needs():
    scores = np.tile(np.array([[4.0], [3.0], [2.0], [1.0]]), (1, 10))
    out = sig.compare_across_tasks(scores, ["a", "b", "c", "d"], n_boot=200)
    np.testing.assert_allclose(out.mean_rank, [1, 2, 3, 4])
    assert out.cd == pytest.approx(sig.nemenyi_q(4) * math.sqrt(20 / 60))
    assert out.groups == [("a", "b"), ("b", "c"), ("c", "d")]
    assert out.friedman.p_value < 1e-5


def test_bad_inputs_say_what_is_wrong():
    labels = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        sig.gap("acc", labels, labels, labels)
    with pytest.raises(ValueError, match="negative"):
        sig.gap("accuracy", labels - 1, labels, labels)
    with pytest.raises(ValueError, match="v: predictions of shape"):
        sig.compare_task("accuracy", {"v": labels[:3]}, labels)
    with pytest.raises(ValueError, match="use gap"):
        sig.paired_bootstrap("accuracy", np.stack([labels] * 2), labels, labels)
    with pytest.raises(ValueError, match="missing values"):
        sig.friedman(np.array([[1.0, math.nan], [2.0, 3.0]]))
