"""The floor every run must beat, and the check that a run learned something.

A constant predictor (the majority class of the training labels, or their mean for regression)
scores what a model that learned nothing scores. Whether a run learned is decided on the
validation split, on a metric a constant cannot game (Matthews or Pearson correlation, 0 for any
constant), with a bootstrap interval; a run that predicts one constant for everything has
collapsed (a configuration failure: tuning excludes it from selection). Reports show such runs
apart and never recommend them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ptft_bench.tasks.metrics import TaskSpec, compute_metrics

# A run diverged when its last logged training loss is this many times its first one.
MAX_LOSS_GROWTH = 1.5
BOOTSTRAP = 1000  # resamples of the validation examples for the gain's interval
BOOTSTRAP_SEED = 0  # fixed: the same run gets the same interval


def constant_prediction(spec: TaskSpec, train_labels: np.ndarray) -> float:
    """The majority class (ties: the lowest id) or, for regression, the mean label."""
    labels = np.asarray(train_labels)
    if spec.is_regression:
        return float(labels.mean())
    return float(np.bincount(labels.astype(np.int64), minlength=spec.num_labels).argmax())


def baseline(
    spec: TaskSpec, train_labels: np.ndarray, eval_labels: dict[str, np.ndarray]
) -> dict[str, Any]:
    """{"kind", "value", split: metrics of the constant prediction on that split}."""
    value = constant_prediction(spec, train_labels)
    out: dict[str, Any] = {"kind": "mean" if spec.is_regression else "majority", "value": value}
    for split, labels in eval_labels.items():
        labels = np.asarray(labels)
        preds = np.full(len(labels), value, dtype=np.float64 if spec.is_regression else np.int64)
        out[split] = compute_metrics(spec, preds, labels)
    return out


def collapsed(spec: TaskSpec, preds: np.ndarray) -> bool:
    """The run predicts one constant for every input (a configuration failure, not a verdict)."""
    preds = np.asarray(preds)
    if len(preds) < 2:
        return False
    if spec.is_regression:
        return bool(np.ptp(preds.astype(np.float64)) <= 1e-6 * max(np.abs(preds).max(), 1.0))
    return bool(len(np.unique(preds)) == 1)


def gain_over_constant(
    spec: TaskSpec, preds: np.ndarray, labels: np.ndarray, resamples: int = BOOTSTRAP
) -> dict[str, Any]:
    """The validation score on a metric a constant cannot game, with a 95% bootstrap interval.

    Matthews correlation for classification and Pearson correlation for regression: a constant
    prediction scores 0 on both (accuracy and F1 reward the majority class: always-positive
    has F1 81 on MRPC), so the score itself is the gain over the constant.
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    counts = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=resamples)
    if spec.is_regression:
        metric, observed = "pearson", _weighted_pearson(np.ones((1, len(labels))), preds, labels)
        draws = _weighted_pearson(counts, preds, labels)
    else:
        metric, observed = "matthews", _weighted_mcc(np.ones((1, len(labels))), preds, labels)
        draws = _weighted_mcc(counts, preds, labels)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"metric": metric, "value": float(observed[0]), "interval": [float(lo), float(hi)]}


def _weighted_mcc(w: np.ndarray, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Matthews correlation (multi-class, Gorodkin 2004) on each row of example weights `w`."""
    k = int(max(preds.max(), labels.max())) + 1
    cells = labels.astype(np.int64) * k + preds.astype(np.int64)
    onehot = np.zeros((len(cells), k * k))
    onehot[np.arange(len(cells)), cells] = 1.0
    conf = (w @ onehot).reshape(-1, k, k)  # rows: true class, columns: predicted
    t, p = conf.sum(axis=2), conf.sum(axis=1)
    c, s = np.trace(conf, axis1=1, axis2=2), conf.sum(axis=(1, 2))
    num = c * s - (t * p).sum(axis=1)
    den = np.sqrt((s**2 - (p**2).sum(axis=1)) * (s**2 - (t**2).sum(axis=1)))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _weighted_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = w.sum(axis=1)
    mx, my = (w @ x) / n, (w @ y) / n
    cov = (w @ (x * y)) / n - mx * my
    vx, vy = (w @ (x * x)) / n - mx**2, (w @ (y * y)) / n - my**2
    den = np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))
    return np.where(den > 1e-12, cov / np.where(den > 1e-12, den, 1.0), 0.0)


def learning_check(
    spec: TaskSpec, history: list[dict[str, Any]], val_preds: np.ndarray, val_labels: np.ndarray
) -> dict[str, Any]:
    """Did the run learn? Decided on validation only (test data never decides it).

    {"learned", "collapsed", "reasons", "first_loss", "last_loss", "split": "validation",
    "gain": `gain_over_constant`}. Not learned: the predictions are one constant (collapsed),
    the train loss ended far above its start (diverged), or the interval of the gain over the
    constant does not exclude 0.
    """
    losses = [h["loss"] for h in history if "loss" in h and h["loss"] is not None]
    first = losses[0] if losses else math.nan
    last = losses[-1] if losses else math.nan
    reasons = []
    is_collapsed = collapsed(spec, val_preds)
    if is_collapsed:
        reasons.append("collapsed: the same prediction for every validation example")
    if math.isfinite(first) and math.isfinite(last) and last > MAX_LOSS_GROWTH * first:
        reasons.append(f"train loss rose from {first:.3g} to {last:.3g} (diverged)")
    gain = gain_over_constant(spec, val_preds, val_labels)
    if not is_collapsed and not gain["interval"][0] > 0:
        lo, hi = gain["interval"]
        reasons.append(
            f"validation {gain['metric']} {gain['value']:.3f} [{lo:.3f}, {hi:.3f}] does not "
            "beat the constant prediction (0)"
        )
    return {
        "learned": not reasons,
        "collapsed": is_collapsed,
        "reasons": reasons,
        "first_loss": first,
        "last_loss": last,
        "split": "validation",
        "gain": gain,
    }
