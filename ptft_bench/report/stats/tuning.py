"""How much tuning bought: the expected best validation score after n of a study's N trials.

Dodge et al. 2019 ("Show your work: improved reporting of experimental results", EMNLP): with
the N trial scores sorted v(1) <= ... <= v(N), the expected maximum of n draws with replacement
from them is

    E[max of n] = sum_i v(i) * ((i / N)^n - ((i - 1) / N)^n),

the mean score at n = 1 and the best one as n grows. A grid is no random sample, but the curve
still says how much the score depends on having tried many configurations: a flat curve means
any trial would have done, a steep one that the comparison hinges on the search.

Which score a trial counts with (`trial_score`): a complete or pruned trial with the best
validation score it reached (what Optuna was told), a failed or collapsed one with its
validation primary score when finite; a trial with neither is left out. Pure numbers only:
nothing here reads records or writes text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def trial_score(outcome: str, value: float | None, validation: float | None) -> float | None:
    """The score a trial counts with in `expected_max` (None: left out).

    ``outcome`` is the study's ("complete" | "pruned" | "failed"; a collapsed run is failed),
    ``value`` the best validation score the trial reached, ``validation`` its validation primary
    score at the end of training."""
    if outcome in ("complete", "pruned"):
        return float(value) if _finite(value) else None
    return float(validation) if _finite(validation) else None


def expected_max(scores: Sequence[float]) -> list[float]:
    """E[best of n trials] for n = 1 .. N, over the N finite ``scores`` (empty: [])."""
    v = sorted(float(s) for s in scores if _finite(s))
    n_trials = len(v)
    out = []
    for n in range(1, n_trials + 1):
        total = 0.0
        for i, score in enumerate(v, start=1):
            weight = (i / n_trials) ** n - ((i - 1) / n_trials) ** n
            total += score * weight
        out.append(total)
    return out


def tuning_gain(curve: Sequence[float]) -> float:
    """What the search added over one random trial: E[best of N] - E[best of 1] (NaN if empty)."""
    return float(curve[-1] - curve[0]) if len(curve) else math.nan
