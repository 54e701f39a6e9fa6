"""summary.csv: one row per (task, model, variant), scores and gaps in points, costs in the
record's units (generation tasks: BLEU as the primary metric, chrF, ROUGE-L and exact match as
`test_<metric>_*`, time to first token, tokens/s and forgetting among the costs); the
machine-readable twin of the leaderboards."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ptft_bench.report.aggregate import AVERAGED_COST_FIELDS
from ptft_bench.report.evidence import Evidence
from ptft_bench.report.stats.gaps import Gap

NAN_GAP = Gap.missing()


def _gap_columns(prefix: str, g: Gap) -> dict[str, float]:
    return {
        f"{prefix}_points": 100 * g.observed,
        f"{prefix}_ci95_low_points": 100 * g.low,
        f"{prefix}_ci95_high_points": 100 * g.high,
        f"{prefix}_p_holm": g.p_adjusted,
        # The interval the report prints beside its tie marks: Bonferroni over the family.
        f"{prefix}_simultaneous_low_points": 100 * g.sim_low,
        f"{prefix}_simultaneous_high_points": 100 * g.sim_high,
        f"{prefix}_comparisons": g.family if g.spread is not None else math.nan,
        f"{prefix}_method": g.method,
    }


def _evidence_columns(r: pd.Series, evidence: Evidence) -> dict[str, Any]:
    ev = evidence.task(r["task"], r["model"])
    row = ev.row(str(r["variant"])) if ev else None
    out: dict[str, Any] = {
        "compared": bool(ev and str(r["variant"]) in ev.eligible),
        "evidence": row is not None,
        "no_evidence_reason": (ev.missing.get(str(r["variant"])) if ev else None) or "",
    }
    out.update(_gap_columns("gap_to_best", row.to_best if row else NAN_GAP))
    out["in_best_group"] = row.in_best_group if row else None
    out.update(_gap_columns("gap_to_full", row.to_reference if row else NAN_GAP))
    out["tied_with_full"] = row.tied_with_reference if row and ev.reference else None
    out["mcnemar_p_vs_full"] = row.mcnemar_p if row else math.nan
    lo = hi = seed_sd = test_sd = math.nan
    if row is not None:
        lo, hi = ev.samples.score_interval(str(r["variant"]))
        split = ev.samples.variance(str(r["variant"]))
        seed_sd, test_sd = split.seed_sd, split.test_sample_sd
    out.update(
        test_boot_ci95_low_points=100 * lo,
        test_boot_ci95_high_points=100 * hi,
        seed_sd_points=100 * seed_sd,
        test_sample_sd_points=100 * test_sd,
    )
    return out


def summary_frame(lb: pd.DataFrame, evidence: Evidence) -> pd.DataFrame:
    """The machine-readable summary (summary.csv)."""
    rows = []
    for _, r in lb.iterrows():
        row = {
            "task": r["task"],
            "model": r["model"],
            "variant": r["variant"],
            "strategy": r["strategy"],
            "strategy_family": r["strategy_family"],
            "primary_metric": r["primary_metric"],
            "selected_lr": r["lr"],
            "rank": r["rank"],
            "n_seeds": r["n_seeds"],
            "n_runs_ok": r["n_runs_ok"],
            "n_runs_failed": r["n_runs_failed"],
            "n_runs_missing": r["n_runs_missing"],
            "n_learned": r["n_learned"],
            "n_not_learned": r["n_not_learned"],
            "did_not_learn": bool(r["did_not_learn"]),
            "val_mean_points": r["val_mean"],
            "test_mean_points": r["test_mean"],
            "test_std_points": r["test_std"],
            "test_ci95_low_points": r["test_ci_low"],
            "test_ci95_high_points": r["test_ci_high"],
        }
        row.update(_evidence_columns(r, evidence))
        for m, s in sorted(r["test_metrics"].items()):
            row[f"test_{m}_mean_points"] = s.mean
            row[f"test_{m}_std_points"] = s.std
        row.update({c: r[c] for c in AVERAGED_COST_FIELDS})
        row["forgetting_omitted"] = r.get("forgetting_omitted") or ""
        rows.append(row)
    return pd.DataFrame(rows)
