"""Metrics against values computed by hand from their textbook formulas (not by the libraries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptft_bench.tasks import generation_metrics, get_spec
from ptft_bench.tasks.metrics import compute_metrics
from ptft_bench.tasks.spec import TaskSpec

LABELS = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
PREDS = [1, 0, 0, 1, 1, 1, 0, 1, 1, 0]
# confusion, positive class 1: tp = 4, tn = 2, fp = 2, fn = 2
TP, TN, FP, FN = 4, 2, 2, 2


def _onehot_logits(preds: list[int], num_labels: int = 2) -> np.ndarray:
    logits = np.full((len(preds), num_labels), -1.0)
    logits[np.arange(len(preds)), preds] = 2.0
    return logits


def _pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    vx = sum((a - mx) ** 2 for a in x)
    vy = sum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy)


def _ranks(x: list[float]) -> list[float]:
    order = sorted(range(len(x)), key=lambda i: x[i])  # test data has no ties
    ranks = [0.0] * len(x)
    for r, i in enumerate(order):
        ranks[i] = r + 1.0
    return ranks


def test_tally_matches_arrays():
    pairs = list(zip(PREDS, LABELS))
    assert (pairs.count((1, 1)), pairs.count((0, 0)), pairs.count((1, 0)), pairs.count((0, 1))) == (
        TP,
        TN,
        FP,
        FN,
    )


def test_mrpc_accuracy_and_f1_from_logits():
    out = compute_metrics(get_spec("mrpc"), _onehot_logits(PREDS), np.array(LABELS))
    assert set(out) == {"accuracy", "f1"}
    assert out["accuracy"] == pytest.approx((TP + TN) / 10)
    assert out["f1"] == pytest.approx(2 * TP / (2 * TP + FP + FN))


def test_cola_mcc():
    out = compute_metrics(get_spec("cola"), _onehot_logits(PREDS), np.array(LABELS))
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert out["mcc"] == pytest.approx(expected)
    assert out["accuracy"] == pytest.approx(0.6)


def test_mcc_of_a_different_confusion():
    labels = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    preds = [1, 1, 1, 1, 1, 0, 0, 0, 1, 1]  # tp 5, fn 1, tn 2, fp 2
    out = compute_metrics(get_spec("cola"), np.array(preds), np.array(labels))
    assert out["mcc"] == pytest.approx((5 * 2 - 2 * 1) / math.sqrt(7 * 6 * 4 * 3))


def test_class_indices_are_accepted_for_classification():
    out = compute_metrics(get_spec("sst2"), np.array(PREDS), np.array(LABELS))
    assert out == {"accuracy": pytest.approx(0.6)}


def test_stsb_pearson_spearman_from_n_by_1():
    gold = [0.5, 1.0, 2.2, 3.1, 4.8, 3.9]
    pred = [0.9, 0.7, 2.0, 3.5, 4.1, 4.3]
    out = compute_metrics(get_spec("stsb"), np.array(pred)[:, None], np.array(gold))
    pearson = _pearson(pred, gold)
    spearman = _pearson(_ranks(pred), _ranks(gold))
    assert out["pearson"] == pytest.approx(pearson)
    assert out["spearman"] == pytest.approx(spearman)
    # hand check of the rank correlation: rank differences d = (1, -1, 0, 0, -1, 1)
    assert spearman == pytest.approx(1 - 6 * 4 / (6 * (36 - 1)))
    assert out["pearson_spearman"] == pytest.approx((pearson + spearman) / 2)


def test_constant_regression_prediction_scores_zero_not_nan():
    out = compute_metrics(get_spec("stsb"), np.full(4, 2.5), np.array([0.0, 1.0, 2.0, 3.0]))
    assert out["pearson"] == 0.0 and out["spearman"] == 0.0


def test_multiclass_accuracy_and_macro_f1():
    spec = TaskSpec(
        name="three",
        text_columns=("text_a",),
        label_names=("a", "b", "c"),
        is_regression=False,
        metrics=("accuracy", "f1_macro"),
        primary_metric="accuracy",
        num_labels=3,
    )
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    out = compute_metrics(spec, _onehot_logits(preds, 3), np.array(labels))
    # per class F1 = 2tp / (2tp + fp + fn): a 2/4, b 4/5, c 2/3
    assert out["f1_macro"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)
    assert out["accuracy"] == pytest.approx(4 / 6)


def test_every_spec_reports_its_primary_metric():
    from ptft_bench.tasks import list_tasks

    for spec in list_tasks():
        if spec.is_generation:  # scored on decoded text, see tests/test_generation_metrics.py
            out = generation_metrics.score(["a b c"], [["a b c d", "b c"]], spec.metrics)
        elif spec.is_regression:
            out = compute_metrics(spec, np.array([0.1, 0.5, 0.2]), np.array([0.0, 1.0, 0.5]))
        else:
            out = compute_metrics(
                spec, _onehot_logits([0, 1, 1], spec.num_labels), np.array([0, 1, 0])
            )
        assert spec.primary_metric in out
        assert all(isinstance(v, float) for v in out.values())


@pytest.mark.parametrize(
    "task, preds, labels",
    [
        ("sst2", np.zeros((3, 3)), np.zeros(3)),  # wrong number of classes
        ("sst2", np.zeros((3, 2)), np.zeros(4)),  # length mismatch
        ("stsb", np.zeros((3, 2)), np.zeros(3)),  # regression needs (N,) or (N, 1)
        ("sst2", np.zeros((0, 2)), np.zeros(0)),  # nothing to score
    ],
)
def test_bad_shapes_raise(task, preds, labels):
    with pytest.raises(ValueError):
        compute_metrics(get_spec(task), preds, labels)
