"""Metrics on weighted resamples: the vectorised kernels behind `significance`.

A bootstrap draw of test examples is a row of per-example counts ``w`` (B, n). Every metric the
suite reports is a function of weighted sums over those rows (confusion counts, moments, ranks
within the draw), so `metric_on_counts` scores S runs on B resamples without a Python loop over
resamples. Values equal `ptft_bench.tasks.metrics` on the expanded resample (tested in
tests/test_significance.py).

Generation metrics (`ptft_bench.tasks.generation_metrics`) are corpus metrics, not means of
per-input scores: a run's "predictions" are its (n, k) per-input sufficient statistics of the
metric (BLEU: 10 columns, chrF: 18, ROUGE-L and exact match: 1, the per-input value), S runs an
(S, n, k) array, and the metric on a resample is the corpus formula applied to the weighted sums
of those statistics (`generation_metrics.from_stats`: sacrebleu's corpus BLEU / chrF on the
resample, the weighted mean for ROUGE-L and exact match; tested against sacrebleu on the
expanded resample in tests/test_report_generation.py).
"""

from __future__ import annotations

import numpy as np

from ptft_bench.tasks.generation_metrics import GENERATION_METRICS, SACREBLEU_METRICS, from_stats
from ptft_bench.tasks.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS + GENERATION_METRICS


def as_runs(metric: str, preds: np.ndarray) -> np.ndarray:
    """Predictions as a stack of runs: (S, n) for classification and regression ((n,) is one
    run); for a generation metric (S, n, k) per-input statistics, where (n, k) is one run and
    (n,) one run of a one-column metric (ROUGE-L, exact match)."""
    preds = np.asarray(preds)
    if metric not in GENERATION_METRICS:
        return np.atleast_2d(preds)
    if preds.ndim == 1:
        return preds[None, :, None]
    return preds[None] if preds.ndim == 2 else preds


def is_one_run(metric: str, preds: np.ndarray) -> bool:
    """True when ``preds`` holds a single run (the shapes `as_runs` reads as S = 1 unstacked)."""
    ndim = np.ndim(preds)
    return ndim == 1 or (metric in GENERATION_METRICS and ndim == 2)


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each example appears in each resample: (B, n) floats (exact integers)."""
    n_boot = idx.shape[0]
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _classification(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    # Per class k: true count t_k, predicted count p_k and hits tp_k, each a matrix product of
    # the counts with one-hot columns, (S, B, K). The confusion counts need nothing more.
    (s, n), k = preds.shape, max(int(labels.max()), int(preds.max()), 1) + 1
    eye = np.eye(k)
    onehot = eye[preds]  # (S, n, K)
    hits = onehot * (preds == labels)[..., None]

    def weighted(m):
        return (w @ m.transpose(1, 0, 2).reshape(n, s * k)).reshape(-1, s, k).transpose(1, 0, 2)

    t, p, tp = (w @ eye[labels])[None], weighted(onehot), weighted(hits)
    total = w.sum(axis=1)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            return tp.sum(axis=2) / total
        if metric == "f1":
            den = t[..., 1] + p[..., 1]
            return np.where(den > 0, 2 * tp[..., 1] / den, 0.0)
        if metric == "f1_macro":
            # sklearn averages over the classes present in the resample's labels or predictions.
            den = t + p
            f1 = np.where(den > 0, 2 * tp / den, 0.0)
            return f1.sum(axis=2) / (den > 0).sum(axis=2)
        # Matthews, multi-class form as sklearn computes it; 0 when a side has a single class.
        cov_tp = tp.sum(axis=2) * total - (t * p).sum(axis=2)
        cov_pp = total**2 - (p * p).sum(axis=2)
        cov_tt = total**2 - (t * t).sum(axis=2)
        den = cov_pp * cov_tt
        return np.where(den > 0, cov_tp / np.sqrt(den), 0.0)


def _ranks(values: np.ndarray, w: np.ndarray):
    """Average ranks within each resample per distinct value, centred on (n+1)/2, (B, m); the
    draws of each distinct value, (B, m); and each example's distinct-value index, (n,)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    g = w[:, order]
    if len(uniq) < len(values):
        g = np.add.reduceat(g, np.searchsorted(inverse[order], np.arange(len(uniq))), axis=1)
    # A value's g copies hold ranks below+1 .. below+g, whose mean is below + (g + 1) / 2;
    # centred: cumsum - g / 2 - n / 2, computed in place (this is the hot loop of Spearman).
    ranks = np.cumsum(g, axis=1)
    ranks -= 0.5 * g
    ranks -= w.sum(axis=1, keepdims=True) / 2
    return ranks, g, inverse


def _correlation(cov, var_x, var_y, constant):
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(var_x * var_y)
    return np.where(constant | ~np.isfinite(r), 0.0, np.clip(r, -1.0, 1.0))


def _standardise(values: np.ndarray) -> np.ndarray:
    # Correlation ignores location and scale; centring keeps the one-pass moments accurate.
    centred = values - values.mean(axis=-1, keepdims=True)
    sd = centred.std(axis=-1, keepdims=True)
    return centred / np.where(sd > 0, sd, 1.0)


def _constant(x: np.ndarray, w: np.ndarray, single: np.ndarray) -> np.ndarray:
    """Which resamples drew a single value of ``x``: with distinct values, those that drew one
    example n times (``single``); an exact check, as metrics.py tests ``ptp == 0``."""
    if len(np.unique(x)) == len(x):
        return single
    g = _ranks(x, w)[1]
    return g.max(axis=1) == w.sum(axis=1)


def _pearson(preds, labels, w, y_const, single):
    # One matrix product per moment for all seeds at once: (B, S).
    n = w.sum(axis=1)[:, None]
    x, y = _standardise(preds), _standardise(labels)
    mx, my = (w @ x.T) / n, (w @ y)[:, None] / n
    cov = (w @ (x * y).T) / n - mx * my
    var_x, var_y = (w @ (x * x).T) / n - mx**2, (w @ (y * y))[:, None] / n - my**2
    constant = np.stack([_constant(row, w, single) for row in preds], axis=1) | y_const[:, None]
    return _correlation(cov, var_x, var_y, constant).T


def _regression(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    n = w.sum(axis=1)
    ry, gy, y_inv = _ranks(labels, w)
    y_const = gy.max(axis=1) == n
    out = np.zeros((len(preds), len(w)))
    if metric != "spearman":
        out += _pearson(preds, labels, w, y_const, w.max(axis=1) == n)
    if metric != "pearson":
        # Spearman is Pearson on ranks; centred ranks have mean 0 in every resample.
        wry, var_y = w * ry[:, y_inv], (gy * ry**2).sum(axis=1) / n
        for i, x in enumerate(preds):  # a loop over seeds, not resamples
            rx, gx, x_inv = _ranks(x, w)
            cov = np.einsum("bn,bn->b", wry, rx[:, x_inv]) / n
            constant = (gx.max(axis=1) == n) | y_const
            out[i] += _correlation(cov, (gx * rx**2).sum(axis=1) / n, var_y, constant)
    return out / 2 if metric == "pearson_spearman" else out


def _generation(metric: str, preds: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Corpus metric of each run's statistics ``preds`` (S, n, k) on each count row of ``w``."""
    if metric not in SACREBLEU_METRICS and preds.shape[2] != 1:
        raise ValueError(f"{metric} has one statistic per input; got {preds.shape[2]} columns")
    # A loop over seeds, not resamples (from_stats sums the statistics of all B at once).
    blocks = preds if metric in SACREBLEU_METRICS else preds[..., 0]
    return np.stack([from_stats(metric, block, w) for block in blocks])


def metric_on_counts(metric: str, preds: np.ndarray, labels: np.ndarray, w: np.ndarray):
    """The metric of each row of ``preds`` (S, n) on each count row of ``w`` (B, n): (S, B).

    A generation metric takes ``preds`` (S, n, k), each run's per-input statistics of that
    metric; ``labels`` (n,) then only fixes n (generation records store zeros)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if metric in GENERATION_METRICS:
        if preds.ndim != 3 or preds.shape[1] != labels.shape[0]:
            raise ValueError(f"statistics of shape {preds.shape} for {labels.shape[0]} inputs")
        return _generation(metric, preds.astype(np.float64), w)
    if preds.shape[-1] != labels.shape[0]:
        raise ValueError(f"{preds.shape[-1]} predictions but {labels.shape[0]} labels")
    if metric in CLASSIFICATION_METRICS:
        if preds.min() < 0 or labels.min() < 0:
            raise ValueError(f"{metric} needs class ids 0, 1, ...; got a negative one")
        return _classification(metric, preds.astype(np.int64), labels.astype(np.int64), w)
    return _regression(metric, preds.astype(np.float64), labels.astype(np.float64), w)
