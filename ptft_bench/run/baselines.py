"""The floor every run must beat, and the check that a run learned something.

A constant predictor (the majority class of the training labels, or their mean for regression)
scores what a model that learned nothing scores; a run whose test score is not above it, or
whose training loss ended far above where it started, is marked as not having learned, so that
reports can show it apart and never recommend it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ptft_bench.tasks.metrics import TaskSpec, compute_metrics

# A run "learned" when its test primary metric beats the constant predictor by at least this much
# (in metric units: 0.01 = 1 point of accuracy, or 0.01 of a correlation). Smaller gains are
# within what a constant predictor reaches by chance on a test set of a few hundred examples.
MIN_GAIN = 0.01
# ...and when its last logged training loss is not this many times its first one (diverged).
MAX_LOSS_GROWTH = 1.5


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


def learning_check(
    history: list[dict[str, Any]], test_score: float, baseline_score: float, primary: str
) -> dict[str, Any]:
    """{"learned": bool, "reasons": [...], "first_loss", "last_loss"} for one run."""
    losses = [h["loss"] for h in history if "loss" in h and h["loss"] is not None]
    first = losses[0] if losses else math.nan
    last = losses[-1] if losses else math.nan
    reasons = []
    if math.isfinite(first) and math.isfinite(last) and last > MAX_LOSS_GROWTH * first:
        reasons.append(f"train loss rose from {first:.3g} to {last:.3g} (diverged)")
    if not test_score >= baseline_score + MIN_GAIN:
        reasons.append(
            f"test {primary} {test_score:.4f} is not above the constant-prediction baseline "
            f"{baseline_score:.4f} (+{MIN_GAIN})"
        )
    return {"learned": not reasons, "reasons": reasons, "first_loss": first, "last_loss": last}
