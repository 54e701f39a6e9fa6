"""Task metrics computed with scikit-learn and scipy.

The `evaluate` package is deliberately not used: it downloads metric scripts from the hub at run
time and fails offline. Every metric here is a plain function of two numpy arrays.

Metric keys (values are fractions in 0..1, or correlations in -1..1):

- ``accuracy``: fraction of exact matches.
- ``f1``: binary F1 of the positive class (label index 1), as GLUE reports for MRPC and QQP.
- ``f1_macro``: unweighted mean of the per-class F1 (multi-class custom tasks).
- ``mcc``: Matthews correlation coefficient (CoLA).
- ``pearson`` / ``spearman``: correlation of predictions with gold scores (STS-B).
- ``pearson_spearman``: their mean, the single number GLUE's leaderboard shows for STS-B.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


class TaskSpec(Protocol):
    """What the metrics need of a task (`ptft_bench.tasks.TaskSpec` has it)."""

    name: str
    is_regression: bool
    num_labels: int
    metrics: tuple[str, ...]


CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "mcc")
REGRESSION_METRICS = ("pearson", "spearman", "pearson_spearman")


def _correlation(fn: Callable, preds: np.ndarray, labels: np.ndarray) -> float:
    # A constant prediction (a collapsed model) has no defined correlation; scipy returns NaN with
    # a warning. We report 0.0, "no linear/rank relation", so that model selection and report
    # tables never have to compare against NaN. sklearn's MCC makes the same choice.
    if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    value = float(fn(preds, labels)[0])
    return 0.0 if np.isnan(value) else value


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    return float(accuracy_score(labels, preds))


def f1_binary(preds: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (index 1); 0.0 when there are no true or predicted positives."""
    return float(f1_score(labels, preds, pos_label=1, average="binary", zero_division=0))


def f1_macro(preds: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    return float(f1_score(labels, preds, average="macro", zero_division=0))


def mcc(preds: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient; 0.0 when undefined (a single predicted class)."""
    return float(matthews_corrcoef(labels, preds))


def pearson(preds: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    return _correlation(stats.pearsonr, preds, labels)


def spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant."""
    return _correlation(stats.spearmanr, preds, labels)


def pearson_spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    """Mean of Pearson and Spearman."""
    return (pearson(preds, labels) + spearman(preds, labels)) / 2


METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "f1_macro": f1_macro,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
    "pearson_spearman": pearson_spearman,
}


def predictions(spec: TaskSpec, logits_or_preds: np.ndarray) -> np.ndarray:
    """Turn model outputs into predictions: argmax of (N, C) logits, or (N,) / (N, 1) values.

    For classification a 1-D array is taken as predicted class indices already.
    """
    out = np.asarray(logits_or_preds)
    if spec.is_regression:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise ValueError(
                f"task {spec.name} is a regression: expected predictions of shape (N,) or (N, 1), "
                f"got {out.shape}"
            )
        return out.astype(np.float64)
    if out.ndim == 2:
        if out.shape[1] != spec.num_labels:
            raise ValueError(
                f"task {spec.name} has {spec.num_labels} labels but logits have shape {out.shape}"
            )
        return out.argmax(axis=1)
    if out.ndim != 1:
        raise ValueError(f"expected logits (N, C) or class indices (N,), got shape {out.shape}")
    return out.astype(np.int64)


def compute_metrics(
    spec: TaskSpec, logits_or_preds: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Compute every metric in ``spec.metrics`` (primary metric included), as plain floats.

    Args:
        spec: the task; decides classification vs regression and which metrics.
        logits_or_preds: (N, C) logits or (N,) class indices for classification;
            (N,) or (N, 1) scores for regression.
        labels: (N,) gold class indices or scores.

    Raises:
        ValueError: shapes that do not fit the task, or no examples at all (a caller bug, not
            user input).
    """
    preds = predictions(spec, logits_or_preds)
    gold = np.asarray(labels)
    if gold.ndim == 2 and gold.shape[1] == 1:
        gold = gold[:, 0]
    if gold.shape != preds.shape:
        raise ValueError(f"{len(preds)} predictions but labels have shape {gold.shape}")
    if len(gold) == 0:
        raise ValueError(f"no examples to score for task {spec.name}")
    gold = gold.astype(np.float64 if spec.is_regression else np.int64)
    return {key: METRIC_FUNCTIONS[key](preds, gold) for key in spec.metrics}
