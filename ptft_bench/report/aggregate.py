"""Aggregates behind every table: learning-rate selection, leaderboards, ranks, paired gaps.

Scores are in *points* (metric x 100) from here on, the unit the report speaks. Only successful
runs enter aggregates; failed and missing runs are counted next to them so nothing disappears.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.records.record import cost_fields
from ptft_bench.report.load import RunSet
from ptft_bench.report.stats.descriptive import PairedResult, paired, rank_desc, summarize

REFERENCE_STRATEGY = "full"
# The cost fields averaged over the seeds of the selected learning rate, each a leaderboard
# column of that name: the record's cost fields, the share of trainable parameters and the
# serving cost (`load.serving_cost`). Not the cost section's table (`sections.cost`).
AVERAGED_COST_FIELDS = (
    *cost_fields(),
    "trainable_pct",
    "memory_bytes",  # the run's own memory where measured (see load.memory_of)
    "inference_latency_ms",
    "inference_latency_p95_ms",
    "inference_throughput",
    "inference_overhead",  # serving latency over the base model's (see load.add_inference_overhead)
    "base_latency_lo",  # the noise band of that ratio (the same for every variant of a task)
    "base_latency_hi",
)
GROUP = ["task", "model", "variant"]


def select_lr(ok: pd.DataFrame) -> tuple[float, dict[float, float], str]:
    """Pick the lr with the best mean validation primary metric over seeds (one variant's runs).

    Returns (lr, {lr: mean validation points}, note). Ties go to the smaller lr (listed first).
    Without any validation value the lr with most successful seeds is used, and the note says so.
    """
    by_lr = {
        float(lr): float(np.nanmean(g["val_primary"])) * 100
        if g["val_primary"].notna().any()
        else math.nan
        for lr, g in ok.groupby("lr", sort=True)
    }
    finite = {lr: v for lr, v in by_lr.items() if math.isfinite(v)}
    if finite:
        best = max(finite.values())
        return min(lr for lr, v in finite.items() if v == best), by_lr, ""
    counts = ok.groupby("lr", sort=True).size()
    return float(counts.idxmax()), by_lr, "no validation metric: lr with most seeds"


def _row_for_variant(
    task: str, model: str, variant: str, runs: pd.DataFrame, missing: pd.DataFrame
) -> dict[str, Any]:
    ok = runs[runs["status"] == "ok"]
    first = runs.iloc[0] if len(runs) else None
    row: dict[str, Any] = {
        "task": task,
        "model": model,
        "variant": variant,
        "strategy": first["strategy"] if first is not None else None,
        "strategy_family": first["strategy_family"] if first is not None else None,
        "primary_metric": next((p for p in runs["primary_metric"] if p), None),
        "n_runs_ok": len(ok),
        "n_runs_failed": len(runs) - len(ok),
        "n_runs_missing": len(missing),
        "lr": math.nan,
        "lr_scores": {},
        "lr_note": "",
        "seed_scores": {},
        "test_metrics": {},
        "selected_runs": [],
        "n_learned": 0,
        "n_not_learned": 0,
        "did_not_learn": False,
        "baseline": {},
    }
    if ok.empty:
        row.update(n_seeds=0, test_mean=math.nan, test_std=math.nan)
        row.update(test_ci_low=math.nan, test_ci_high=math.nan, val_mean=math.nan)
        row.update({c: math.nan for c in AVERAGED_COST_FIELDS})
        return row
    lr, lr_scores, note = select_lr(ok)
    sel = ok[ok["lr"] == lr]
    summ = summarize((sel["test_primary"] * 100).tolist())
    metric_names = sorted({m for d in sel["metrics_test"] for m in d})
    row.update(
        lr=lr,
        lr_scores=lr_scores,
        lr_note=note,
        n_seeds=summ.n,
        test_mean=summ.mean,
        test_std=summ.std,
        test_ci_low=summ.ci_low,
        test_ci_high=summ.ci_high,
        val_mean=lr_scores.get(lr, math.nan),
        seed_scores={s: float(v) * 100 for s, v in zip(sel["seed"], sel["test_primary"])},
        test_metrics={
            m: summarize([d.get(m, math.nan) * 100 for d in sel["metrics_test"]])
            for m in metric_names
        },
        history=list(sel["history"]),
        seed_list=list(sel["seed"]),
        **_evidence_columns(sel),
    )
    for col in AVERAGED_COST_FIELDS:
        vals = sel[col].astype(float)
        row[col] = float(vals.mean()) if vals.notna().any() else math.nan
    return row


def _evidence_columns(sel: pd.DataFrame) -> dict[str, Any]:
    """The selected-lr runs (for per-example evidence), their learning checks and baseline."""
    runs = sel.sort_values("seed", key=lambda s: s.astype(str))
    n_not = int((runs["learned"] == False).sum())  # noqa: E712 (None = no check recorded)
    baselines = [b for b in runs["baseline"] if b]
    return {
        "selected_runs": list(zip(runs["seed"], runs["record"], runs["source"])),
        "n_learned": int((runs["learned"] == True).sum()),  # noqa: E712
        "n_not_learned": n_not,
        # Every selected run learned nothing: the variant cannot be the best or recommended.
        "did_not_learn": n_not == len(runs) > 0,
        "baseline": baselines[0] if baselines else {},
    }


def leaderboard(rs: RunSet) -> pd.DataFrame:
    """One row per (task, model, strategy variant) at its selected lr, with per-task ranks.

    Rank 1 = best mean test primary metric within (task, model); ties share the average rank.
    The columns, their units and meanings are declared in `ptft_bench.report.columns`.
    """
    runs, missing = rs.runs, rs.missing
    keys = set(map(tuple, runs[GROUP].itertuples(index=False))) if len(runs) else set()
    known_missing = missing.dropna(subset=["task", "model", "variant"])
    keys |= set(map(tuple, known_missing[GROUP].itertuples(index=False)))
    rows = []
    for task, model, variant in sorted(keys):
        sub = runs[(runs["task"] == task) & (runs["model"] == model) & (runs["variant"] == variant)]
        mis = known_missing[
            (known_missing["task"] == task)
            & (known_missing["model"] == model)
            & (known_missing["variant"] == variant)
        ]
        row = _row_for_variant(task, model, variant, sub, mis)
        if row["strategy"] is None and len(mis):
            row["strategy"] = mis["strategy"].iloc[0]
            row["strategy_family"] = mis["strategy"].iloc[0]
        rows.append(row)
    lb = pd.DataFrame(rows)
    if lb.empty:
        return lb
    lb["rank"] = math.nan
    # Variants that learned nothing are not ranked: they are listed apart, never compared.
    ranked = lb["test_mean"].where(~lb["did_not_learn"].astype(bool))
    for _, idx in lb.groupby(["task", "model"]).groups.items():
        lb.loc[idx, "rank"] = rank_desc(ranked.loc[idx].tolist())
    # Fill the primary metric name for rows whose runs all failed, from their task.
    names = lb.dropna(subset=["primary_metric"]).groupby("task")["primary_metric"].first()
    lb["primary_metric"] = lb["primary_metric"].fillna(lb["task"].map(names))
    return lb.sort_values(
        ["model", "task", "test_mean"], ascending=[True, True, False]
    ).reset_index(drop=True)


def across_tasks(lb: pd.DataFrame) -> pd.DataFrame:
    """Per (model, variant): mean score over tasks, mean rank, and how many tasks it has."""
    ok = lb[lb["test_mean"].notna()]
    if ok.empty:
        return pd.DataFrame(
            columns=["model", "variant", "strategy_family", "n_tasks", "mean_score", "mean_rank"]
        )
    ok = ok.assign(dead_on_learnable=ok["did_not_learn"].astype(bool) & ~not_taught(ok))
    out = (
        ok.groupby(["model", "variant"])
        .agg(
            strategy=("strategy", "first"),
            strategy_family=("strategy_family", "first"),
            n_tasks=("task", "nunique"),
            mean_score=("test_mean", "mean"),
            mean_rank=("rank", "mean"),
            trainable_pct=("trainable_pct", "mean"),
            trainable_params=("trainable_params", "mean"),
            train_seconds=("train_seconds", "mean"),
            peak_memory_bytes=("peak_memory_bytes", "mean"),
            memory_bytes=("memory_bytes", "mean"),
            inference_overhead=("inference_overhead", "mean"),
            n_did_not_learn=("did_not_learn", "sum"),
            n_dead_on_learnable=("dead_on_learnable", "sum"),
        )
        .reset_index()
    )
    n_tasks = ok.groupby("model")["task"].nunique()
    out["all_tasks"] = out["n_tasks"] == out["model"].map(n_tasks)
    # Only variants that learned on every task the budget taught compete for recommendations
    # (a task on which most variants learned nothing says little about the strategies).
    learned_somewhere = out["n_did_not_learn"] < out["n_tasks"]
    out["learned_all"] = (out["n_dead_on_learnable"] == 0) & learned_somewhere
    return out.sort_values(
        ["model", "mean_rank", "mean_score"], ascending=[True, True, False]
    ).reset_index(drop=True)


# A task on which most variants learned nothing under the budget says little about which
# strategy to use, and vetoing every variant that failed there leaves no answer at all (GLUE at
# 2,000 examples and 2 epochs: on CoLA 6 of 8 variants stay at MCC 0, on MRPC 7 of 8 stay at the
# all-positive F1). The answer leaves such tasks out and names them.
MAX_NOT_LEARNED_SHARE = 0.5


def not_taught(lb: pd.DataFrame) -> pd.Series:
    """True on the rows of a (task, model) on which more than half of the variants with a score
    learned nothing (all of them, in the plainest case): the budget did not teach that task."""
    scored = lb["test_mean"].notna()
    dead = (lb["did_not_learn"].astype(bool) & scored).astype(float)
    keys = [lb["task"], lb["model"]]
    n_scored = scored.astype(float).groupby(keys).transform("sum")
    return dead.groupby(keys).transform("sum") > MAX_NOT_LEARNED_SHARE * n_scored


def taught(lb: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard without the tasks the budget did not teach (see `not_taught`): what the
    answer, the Pareto sets and the rank tests compare on."""
    return lb[~not_taught(lb)] if len(lb) else lb


def reference_variant(lb: pd.DataFrame, model: str) -> str | None:
    """The full fine-tuning variant of `model` (the best-ranked one if there are several)."""
    full = lb[
        (lb["model"] == model) & (lb["strategy"] == REFERENCE_STRATEGY) & lb["test_mean"].notna()
    ]
    if full.empty:
        return None
    return str(full.groupby("variant")["rank"].mean().sort_values().index[0])


def _pairs(a: dict[Any, float], b: dict[Any, float]) -> tuple[list[float], list[float]]:
    common = sorted(set(a) & set(b), key=str)
    return [a[s] for s in common], [b[s] for s in common]


def vs_reference(lb: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Differences to full fine-tuning, paired by seed: (per task, across tasks).

    Across tasks, pairs are (task, seed): the same seed of the same task under both strategies.
    Each row carries a `PairedResult` in column `paired`.
    """
    per_task, overall = [], []
    for model in sorted(lb["model"].unique()):
        ref = reference_variant(lb, model)
        if ref is None:
            continue
        mlb = lb[(lb["model"] == model) & lb["test_mean"].notna()]
        ref_rows = mlb[mlb["variant"] == ref].set_index("task")
        for variant, vrows in mlb[mlb["variant"] != ref].groupby("variant"):
            all_a, all_b = [], []
            for _, r in vrows.iterrows():
                if r["task"] not in ref_rows.index:
                    continue
                a, b = _pairs(r["seed_scores"], ref_rows.loc[r["task"], "seed_scores"])
                all_a += a
                all_b += b
                per_task.append(
                    dict(
                        model=model,
                        task=r["task"],
                        variant=variant,
                        reference=ref,
                        strategy_family=r["strategy_family"],
                        paired=paired(a, b),
                    )
                )
            overall.append(
                dict(
                    model=model,
                    variant=variant,
                    reference=ref,
                    strategy_family=vrows["strategy_family"].iloc[0],
                    paired=paired(all_a, all_b),
                )
            )
    return pd.DataFrame(per_task), pd.DataFrame(overall)


def model_comparison(lb: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Per (task, variant): score per model and the paired difference to the reference model.

    The reference model is the first in sorted order; returns (table, reference) and an empty
    table when there is only one model.
    """
    models = sorted(lb["model"].unique())
    if len(models) < 2:
        return pd.DataFrame(), None
    ref = models[0]
    rows = []
    ok = lb[lb["test_mean"].notna()]
    for (task, variant), g in ok.groupby(["task", "variant"]):
        by_model = g.set_index("model")
        row: dict[str, Any] = {"task": task, "variant": variant}
        for m in models:
            row[f"score:{m}"] = by_model.loc[m, "test_mean"] if m in by_model.index else math.nan
        for m in models[1:]:
            if m in by_model.index and ref in by_model.index:
                a, b = _pairs(by_model.loc[m, "seed_scores"], by_model.loc[ref, "seed_scores"])
                row[f"paired:{m}"] = paired(a, b)
            else:
                row[f"paired:{m}"] = PairedResult(0, math.nan, math.nan, math.nan, math.nan)
        rows.append(row)
    return pd.DataFrame(rows), ref
