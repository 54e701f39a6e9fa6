"""Deterministic, stratified, nested splits and subsamples, plus the data fingerprint.

One mechanism serves every split: `stratified_order` ranks the rows so that *every prefix* of the
ranking is (close to) stratified: within each class the rows are shuffled with a fixed seed, each
row gets the fractional rank ``(i + 0.5) / class_size``, and rows are sorted by that rank. Taking
the first k rows therefore gives each class its share of k (within one row), and a smaller sample
is always contained in a larger one (``max_train_samples=1000`` is a subset of ``=2000``), which
keeps learning curves comparable.

Seeds come from ``SeedSequence([seed, crc32(task), purpose])``: stable across processes and
platforms (unlike ``hash()``), and different per task and per purpose so the test hold-out and
the validation hold-out are independent draws.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pandas as pd

from ptft_bench.errors import UserError

# Validation held out from train: 10% of train, capped at 1,000 rows (enough for a stable model
# selection signal, cheap to evaluate every epoch), and at least min(100, 20%) so tiny training
# sets such as WNLI (635 rows -> 100) still get a usable one.
VALIDATION_FRACTION = 0.1
VALIDATION_MAX = 1000
VALIDATION_MIN = 100

PURPOSES = {"test": 1, "validation": 2, "train": 3, "eval_cap": 4}
REGRESSION_BINS = 5  # quantile bins used to stratify a regression target


def validation_size(n_train_rows: int) -> int:
    """How many of the original train rows become the validation split."""
    n = round(VALIDATION_FRACTION * n_train_rows)
    n = max(n, min(VALIDATION_MIN, n_train_rows // 5))
    return max(1, min(VALIDATION_MAX, n))


def _rng(seed: int, task: str, purpose: str) -> np.random.Generator:
    ss = np.random.SeedSequence([seed, zlib.crc32(task.encode()), PURPOSES[purpose]])
    return np.random.default_rng(ss)


def _strata(labels: pd.Series, is_regression: bool) -> np.ndarray:
    if not is_regression:
        return labels.to_numpy()
    if len(labels) < 2 * REGRESSION_BINS:
        return np.zeros(len(labels), dtype=int)
    # Quantile bins keep the score distribution of a held-out set close to the whole's.
    return pd.qcut(labels.rank(method="first"), REGRESSION_BINS, labels=False).to_numpy()


def stratified_order(
    df: pd.DataFrame, task: str, purpose: str, seed: int, is_regression: bool
) -> np.ndarray:
    """Positions of ``df``'s rows such that every prefix is a stratified sample."""
    rng = _rng(seed, task, purpose)
    strata = _strata(df["label"], is_regression)
    rank = np.empty(len(df), dtype=np.float64)
    for value in np.unique(strata):  # np.unique sorts: the class visiting order is fixed
        pos = np.flatnonzero(strata == value)
        pos = pos[rng.permutation(len(pos))]
        rank[pos] = (np.arange(len(pos)) + 0.5) / len(pos)
    # Break rank ties (equal-sized classes) randomly but reproducibly rather than by class, so the
    # first rows do not always belong to class 0.
    tiebreak = rng.random(len(df))
    return np.lexsort((tiebreak, rank))


def hold_out(
    df: pd.DataFrame, n: int, task: str, purpose: str, seed: int, is_regression: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (rest, held_out) with ``n`` stratified rows held out.

    Both parts come back in the stratified order (well mixed, never sorted by label), keeping
    the original row index so provenance and disjointness can be checked.
    """
    order = stratified_order(df, task, purpose, seed, is_regression)
    return df.iloc[order[n:]], df.iloc[order[:n]]


def take(
    df: pd.DataFrame, n: int | None, task: str, purpose: str, seed: int, is_regression: bool
) -> pd.DataFrame:
    """A stratified, nested subsample of ``n`` rows (all rows when ``n`` is None or too big)."""
    if n is None or n >= len(df):
        return df
    return hold_out(df, n, task, purpose, seed, is_regression)[1]


def check_limit(value: int | None, what: str) -> None:
    """Reject non-positive sample caps with a usable message."""
    if value is not None and (not isinstance(value, int) or value < 1):
        raise UserError(f"{what} must be a positive integer or unset, got {value!r}")


def fingerprint(name: str, source: str, frames: dict[str, pd.DataFrame]) -> str:
    """A short hash of task name, source, split sizes and contents (a tokenisation cache key)."""
    h = hashlib.sha256(f"{name}\0{source}".encode())
    for split in sorted(frames):
        df = frames[split]
        h.update(f"\0{split}:{len(df)}:{','.join(df.columns)}".encode())
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]
