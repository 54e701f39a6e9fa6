"""Text metrics of generation tasks, and the per-example statistics a bootstrap resamples.

Metric keys (``GENERATION_METRICS``); every value is a fraction in 0..1, like the other metrics
of the suite (sacrebleu's 0..100 scores are divided by 100):

- ``bleu``: sacrebleu corpus BLEU with its defaults (13a tokenisation, case-sensitive, 4-grams,
  ``exp`` smoothing), multi-reference, / 100.
- ``chrf``: sacrebleu corpus chrF with its defaults (character 6-grams, no word n-grams,
  beta 2), multi-reference (the best reference per input, as sacrebleu picks it), / 100.
- ``rouge_l``: rouge-score ROUGE-L F-measure, ``RougeScorer(["rougeL"])`` (no stemmer; its
  tokeniser lowercases and keeps runs of ``[a-z0-9]``), the best reference per input
  (``score_multi``), averaged over inputs.
- ``exact_match``: fraction of inputs whose hypothesis equals one of its references after
  normalisation (whitespace runs collapsed to one space, stripped, case-folded).

Arguments everywhere: ``hyps`` is one decoded string per input, ``refs[i]`` the list of all
references of input ``i`` (one or more; inputs may have different numbers).

Bootstrap over inputs (the corpus metrics are not means of per-input scores, so a resample must
sum sufficient statistics and apply the corpus formula again)::

    stats = example_stats(hyps, refs)              # {metric: (n, k) or (n,) array}
    weights = rng.multinomial(n, [1 / n] * n, size=B)  # (B, n): how often each input is drawn
    values = from_stats("bleu", stats["bleu"], weights)  # (B,) BLEU of each resample

- ``bleu`` stats: (n, 10) ints per input, sacrebleu's segment statistics
  ``[hyp_len, closest_ref_len, matches 1..4-gram, hyp n-grams 1..4]``;
- ``chrf`` stats: (n, 18) ints, ``[hyp, ref, match]`` counts per character n-gram order 1..6 of
  the best reference;
- ``rouge_l`` and ``exact_match`` stats: (n,) floats, the per-input value (the corpus value is
  their weighted mean).

``from_stats(m, example_stats(h, r)[m], np.ones((1, n)))[0] == score(h, r)[m]``.

sacrebleu and rouge-score are imported on first use (rouge-score pulls in nltk: seconds), so
importing this module (the task specs do) stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

GENERATION_METRICS = ("bleu", "chrf", "rouge_l", "exact_match")
SACREBLEU_METRICS = ("bleu", "chrf")


@lru_cache(maxsize=1)
def _sacrebleu_metrics() -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU(), "chrf": CHRF()}


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"])


def normalize(text: str) -> str:
    """The form exact match compares: whitespace runs collapsed, stripped, case-folded."""
    return " ".join(str(text).split()).casefold()


def _check(hyps: Sequence[str], refs: Sequence[Sequence[str]], metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in GENERATION_METRICS]
    if unknown:
        raise ValueError(
            f"unknown generation metric(s) {unknown}; choose from {GENERATION_METRICS}"
        )
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but references for {len(refs)} inputs")
    if len(hyps) == 0:
        raise ValueError("no examples to score")
    if any(not isinstance(h, str) for h in hyps):
        raise ValueError("every hypothesis must be a string")
    for i, r in enumerate(refs):
        if isinstance(r, str) or len(r) == 0 or any(not isinstance(x, str) for x in r):
            raise ValueError(f"input {i}: references must be a non-empty list of strings")


def reference_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-input reference lists transposed into sacrebleu's streams (stream j holds every
    input's j-th reference), padded with None where an input has fewer: sacrebleu drops the
    Nones per input (its documented way to pass a variable number of references)."""
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def example_stats(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    metrics: Sequence[str] = GENERATION_METRICS,
) -> dict[str, np.ndarray]:
    """Per-input sufficient statistics of each metric (see the module docstring for shapes)."""
    _check(hyps, refs, metrics)
    out: dict[str, np.ndarray] = {}
    wanted = [m for m in SACREBLEU_METRICS if m in metrics]
    if wanted:
        streams = reference_streams(refs)
        for m in wanted:
            # sacrebleu has no public per-segment statistics; `_extract_corpus_statistics` is the
            # method its own `corpus_score` and paired bootstrap (sacrebleu.significance) call,
            # so the statistics are exactly those a corpus score sums.
            seg = _sacrebleu_metrics()[m]._extract_corpus_statistics(list(hyps), streams)
            out[m] = np.asarray(seg, dtype=np.int64)
    if "rouge_l" in metrics:
        scorer = _rouge_scorer()
        out["rouge_l"] = np.array(
            [scorer.score_multi(list(r), h)["rougeL"].fmeasure for h, r in zip(hyps, refs)],
            dtype=np.float64,
        )
    if "exact_match" in metrics:
        out["exact_match"] = np.array(
            [float(normalize(h) in {normalize(x) for x in r}) for h, r in zip(hyps, refs)]
        )
    return {m: out[m] for m in metrics}


def from_stats(metric: str, stats: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The corpus metric of each weighted resample.

    Args:
        metric: one of ``GENERATION_METRICS``.
        stats: ``example_stats(...)[metric]``, one row (or value) per input.
        weights: (B, n) non-negative counts, how often each of the n inputs is in resample b
            (a 1-D (n,) array is one resample); every row needs a positive sum.

    Returns:
        (B,) float array of the metric (fractions in 0..1).
    """
    if metric not in GENERATION_METRICS:
        raise ValueError(f"unknown generation metric {metric!r}; choose from {GENERATION_METRICS}")
    stats = np.asarray(stats)
    w = np.atleast_2d(np.asarray(weights))
    if w.ndim != 2 or w.shape[1] != stats.shape[0]:
        raise ValueError(f"weights of shape {w.shape} do not fit {stats.shape[0]} examples")
    totals = w.sum(axis=1)
    if (w < 0).any() or (totals <= 0).any():
        raise ValueError("weights must be non-negative with a positive sum per resample")
    summed = w @ stats  # (B, k) summed statistics, or (B,) summed values
    if metric in SACREBLEU_METRICS:
        scorer = _sacrebleu_metrics()[metric]
        # `_compute_score_from_stats` is sacrebleu's corpus formula on summed statistics (what
        # `corpus_score` and sacrebleu.significance apply); there is no public equivalent.
        return np.array(
            [scorer._compute_score_from_stats(row.tolist()).score / 100 for row in summed]
        )
    return summed / totals


def score(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    metrics: Sequence[str] = GENERATION_METRICS,
) -> dict[str, float]:
    """Corpus value of each metric in ``metrics`` (fractions in 0..1), as plain floats.

    Raises:
        ValueError: lengths that differ, no inputs, an input without references, non-strings,
            or an unknown metric (caller bugs, not user input).
    """
    stats = example_stats(hyps, refs, metrics)
    ones = np.ones((1, len(hyps)), dtype=np.int64)
    return {m: float(from_stats(m, stats[m], ones)[0]) for m in metrics}
