"""Across tasks: mean ranks with bootstrap intervals, the Friedman test and Nemenyi's critical
difference (Demšar 2006, "Statistical comparisons of classifiers over multiple data sets").

Input is a (variants, tasks) score array, higher is better, one number per variant and task
(the report passes the mean over seeds at the selected learning rate). Use it with 3+ tasks:
with fewer, the Friedman test and the critical difference have almost no power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (variants, tasks) array, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores have missing values: drop the variants or tasks without a score")
    return scores


def task_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each variant within each task, (variants, tasks): 1 = best, ties averaged."""
    return sps.rankdata(-_check_scores(scores), axis=0)


@dataclass(frozen=True)
class MeanRanks:
    """Mean rank per variant over tasks with a 95% bootstrap interval over tasks."""

    mean_rank: np.ndarray
    low: np.ndarray
    high: np.ndarray


def mean_rank_interval(scores: np.ndarray, n_boot: int = 2000, seed: int = 0) -> MeanRanks:
    """Mean ranks of ``scores`` (variants, tasks; higher is better), tasks resampled with
    replacement for the interval (ranks stay those within each task)."""
    ranks = task_ranks(scores)
    draws = np.random.default_rng([seed, 2]).integers(0, ranks.shape[1], (n_boot, ranks.shape[1]))
    boot = ranks[:, draws].mean(axis=2)
    low, high = np.percentile(boot, [2.5, 97.5], axis=1)
    return MeanRanks(ranks.mean(axis=1), low, high)


@dataclass(frozen=True)
class Friedman:
    """Friedman test that all variants rank alike over tasks (chi², k - 1 degrees of freedom)."""

    statistic: float
    p_value: float
    n_variants: int
    n_tasks: int


def friedman(scores: np.ndarray) -> Friedman:
    """Friedman chi² with the tie correction, as `scipy.stats.friedmanchisquare` computes it.

    All-tied tasks carry no evidence: when every task is fully tied the statistic is 0, p 1.
    """
    ranks = task_ranks(scores)
    k, n = ranks.shape
    tie_sizes = [np.unique(col, return_counts=True)[1] for col in ranks.T]
    ties = sum(float((t**3 - t).sum()) for t in tie_sizes)
    correction = 1 - ties / (k * (k * k - 1) * n)
    if correction <= 0:
        return Friedman(0.0, 1.0, k, n)
    ssbn = float((ranks.sum(axis=1) ** 2).sum())
    stat = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / correction
    return Friedman(stat, float(sps.chi2.sf(stat, k - 1)), k, n)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi q_alpha for k variants: studentized range quantile / sqrt(2) (Demšar 2006)."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi CD = q_alpha * sqrt(k (k + 1) / (6 N)): mean ranks closer than this are tied."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_tasks))


def cd_groups(mean_rank: np.ndarray, cd: float) -> list[tuple[int, ...]]:
    """Maximal runs of variants, consecutive in rank order, whose mean ranks differ by < cd.

    Indices refer to ``mean_rank``; each run lists best rank first. Only runs of 2+ are
    returned (the bars of a CD diagram): a variant in none differs from every other.
    """
    order = np.argsort(mean_rank, kind="stable")
    ranks = np.asarray(mean_rank)[order]
    groups, last_end = [], -1
    for i in range(len(ranks)):
        end = i + int(np.searchsorted(ranks[i:], ranks[i] + cd, side="left")) - 1
        if end > last_end and end > i:
            groups.append(tuple(int(j) for j in order[i : end + 1]))
        last_end = max(last_end, end)
    return groups


@dataclass(frozen=True)
class RankComparison:
    """What a critical-difference diagram needs, for variants compared over tasks."""

    names: list[str]
    mean_rank: np.ndarray
    low: np.ndarray
    high: np.ndarray
    friedman: Friedman
    cd: float
    groups: list[tuple[str, ...]]


def compare_across_tasks(
    scores: np.ndarray,
    names: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> RankComparison:
    """Mean ranks with intervals, Friedman test, Nemenyi CD and the CD groups (use 3+ tasks)."""
    scores = _check_scores(scores)
    if len(names) != scores.shape[0]:
        raise ValueError(f"{len(names)} names for {scores.shape[0]} rows of scores")
    ranks = mean_rank_interval(scores, n_boot, seed)
    cd = critical_difference(scores.shape[0], scores.shape[1], alpha)
    groups = [tuple(names[i] for i in g) for g in cd_groups(ranks.mean_rank, cd)]
    return RankComparison(
        list(names), ranks.mean_rank, ranks.low, ranks.high, friedman(scores), cd, groups
    )
