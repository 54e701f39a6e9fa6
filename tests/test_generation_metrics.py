"""Generation metrics: corpus BLEU / chrF / ROUGE-L / exact match and their bootstrap statistics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from ptft_bench.tasks.generation_metrics import (
    GENERATION_METRICS,
    example_stats,
    from_stats,
    reference_streams,
    score,
)

WORDS = (
    "the a cheap coffee shop pub near riverside city centre family friendly is located in".split()
)


def _corpus(n: int = 40, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and a varying number (1..4) of references per input, partly overlapping."""
    rng = np.random.default_rng(seed)
    hyps, refs = [], []
    for i in range(n):
        base = list(rng.choice(WORDS, size=rng.integers(4, 12)))
        hyps.append(" ".join(base) + ".")
        k = int(rng.integers(1, 5))
        refs.append(
            [" ".join(w if rng.random() < 0.7 else str(rng.choice(WORDS)) for w in base) + "."
             for _ in range(k)]
        )  # fmt: skip
        if i % 7 == 0:  # some exact matches, differing only in case and spacing
            refs[-1].append("  " + hyps[-1].upper() + " ")
    return hyps, refs


def _independent(hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
    """The four metrics computed straight from the libraries, without the module under test."""
    width = max(len(r) for r in refs)
    streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
    scorer = RougeScorer(["rougeL"])
    rouge = [scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    norm = lambda s: " ".join(s.split()).lower()  # noqa: E731
    return {
        "bleu": sacrebleu.corpus_bleu(hyps, streams).score / 100,
        "chrf": sacrebleu.corpus_chrf(hyps, streams).score / 100,
        "rouge_l": float(np.mean(rouge)),
        "exact_match": float(
            np.mean([norm(h) in {norm(x) for x in r} for h, r in zip(hyps, refs)])
        ),
    }


# --------------------------------------------------------------------------- by hand


def test_bleu_by_hand_single_and_multi_reference():
    # 1..4-gram precisions 4/5, 3/4, 2/3, 1/2; equal lengths: no brevity penalty
    assert score(["a b c d e"], [["a b c d f"]], ["bleu"])["bleu"] == pytest.approx(0.2**0.25)
    # multi-reference: n-grams clip against the union of references: 4/4, 3/3, 1/2, and no
    # 4-gram match, which sacrebleu's default `exp` smoothing turns into 1 / (2 * 1)
    out = score(["a b c d"], [["a b x y", "z b c d"]], ["bleu"])
    assert out["bleu"] == pytest.approx((1 * 1 * 0.5 * 0.5) ** 0.25)


def test_chrf_rouge_exact_match_by_hand():
    # chrF: character 1-grams P 2/2 R 2/3, 2-grams P 1/1 R 1/2 (higher orders absent):
    # average P 1, R 7/12, F_beta=2 = 5 P R / (4 P + R) = 7/11
    assert score(["ab"], [["abc"]], ["chrf"])["chrf"] == pytest.approx(7 / 11)
    # ROUGE-L: LCS "the cat on the mat" = 5 tokens, P 5/6, R 5/5, F = 10/11; best of two refs
    out = score(["The cat sat on the mat"], [["a dog", "the cat on the mat"]], ["rouge_l"])
    assert out["rouge_l"] == pytest.approx(10 / 11)
    out = score(["The  Cat.", "a dog"], [["the cat.", "x"], ["a cat"]], ["exact_match"])
    assert out["exact_match"] == 0.5


def test_perfect_and_empty_hypotheses():
    hyps, refs = _corpus(10)
    perfect = score([r[0] for r in refs], refs)
    assert perfect == pytest.approx({m: 1.0 for m in GENERATION_METRICS})
    empty = score([""] * len(refs), refs)
    assert empty == {m: 0.0 for m in GENERATION_METRICS}


# --------------------------------------------------------------------------- against the libraries


def test_score_equals_the_libraries():
    hyps, refs = _corpus()
    ours, theirs = score(hyps, refs), _independent(hyps, refs)
    assert set(ours) == set(GENERATION_METRICS)
    for m in GENERATION_METRICS:
        assert abs(ours[m] - theirs[m]) < 1e-9, m
        assert 0.0 < ours[m] < 1.0, m  # fractions, not sacrebleu's 0..100


def test_from_stats_with_all_ones_equals_score():
    hyps, refs = _corpus()
    stats = example_stats(hyps, refs)
    assert stats["bleu"].shape == (len(hyps), 10) and stats["chrf"].shape == (len(hyps), 18)
    assert stats["rouge_l"].shape == stats["exact_match"].shape == (len(hyps),)
    full = score(hyps, refs)
    ones = np.ones((3, len(hyps)), dtype=np.int64)
    for m in GENERATION_METRICS:
        values = from_stats(m, stats[m], ones)
        assert values.shape == (3,)
        assert np.all(np.abs(values - full[m]) < 1e-9), m


def test_from_stats_on_a_resample_equals_the_expanded_resample():
    hyps, refs = _corpus()
    n = len(hyps)
    stats = example_stats(hyps, refs)
    weights = np.random.default_rng(1).multinomial(n, [1 / n] * n, size=4)  # (B, n) counts
    for b, w in enumerate(weights):
        idx = np.repeat(np.arange(n), w)
        sub_h, sub_r = [hyps[i] for i in idx], [refs[i] for i in idx]
        expected = _independent(sub_h, sub_r)
        for m in GENERATION_METRICS:
            got = from_stats(m, stats[m], weights)[b]
            assert abs(got - expected[m]) < 1e-9, (m, b)
            assert abs(got - score(sub_h, sub_r, [m])[m]) < 1e-9, (m, b)


def test_corpus_bleu_is_not_a_mean_of_sentence_scores():
    # why the statistics exist: a bootstrap that averaged per-input BLEU would measure another thing
    hyps, refs = _corpus()
    stats = example_stats(hyps, refs, ["bleu"])["bleu"]
    per_input = [from_stats("bleu", stats[i : i + 1], np.ones((1, 1)))[0] for i in range(len(hyps))]
    assert not math.isclose(float(np.mean(per_input)), score(hyps, refs, ["bleu"])["bleu"])


def test_reference_streams_pad_with_none():
    assert reference_streams([["a"], ["b", "c"]]) == [["a", "b"], [None, "c"]]


# --------------------------------------------------------------------------- bad calls


@pytest.mark.parametrize(
    "hyps, refs, metrics",
    [
        (["a"], [["a"], ["b"]], GENERATION_METRICS),  # lengths differ
        ([], [], GENERATION_METRICS),  # nothing to score
        (["a"], [[]], GENERATION_METRICS),  # an input without references
        (["a"], ["a"], GENERATION_METRICS),  # a string instead of a list of references
        (["a"], [["a"]], ("meteor",)),  # unknown metric
    ],
)
def test_bad_calls_raise(hyps, refs, metrics):
    with pytest.raises(ValueError):
        score(hyps, refs, metrics)


def test_bad_weights_raise():
    stats = example_stats(["a b", "c d"], [["a b"], ["c"]])
    with pytest.raises(ValueError, match="do not fit"):
        from_stats("bleu", stats["bleu"], np.ones((2, 3)))
    with pytest.raises(ValueError, match="positive sum"):
        from_stats("rouge_l", stats["rouge_l"], np.zeros((1, 2)))
    with pytest.raises(ValueError, match="unknown"):
        from_stats("meteor", stats["rouge_l"], np.ones((1, 2)))
    assert from_stats("exact_match", stats["exact_match"], np.array([1, 1])).shape == (1,)


def test_importing_the_tasks_does_not_import_the_metric_libraries():
    # rouge-score pulls in nltk (seconds): the CLI and the task specs must not pay for it
    code = "import sys, ptft_bench.tasks; print('rouge_score' in sys.modules, 'sacrebleu' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
