"""Aggregates behind every table: learning-rate selection, leaderboards, ranks, paired gaps.

Scores are in *points* (metric x 100) from here on, the unit the report speaks. Only successful
runs enter aggregates; failed and missing runs are counted next to them so nothing disappears.

A variant's runs are chosen in one of two ways. Untuned (the suite listed learning rates): the lr
with the best mean validation score over seeds (`select_lr`), and every seed at it. Tuned (the
records are an Optuna study's trials and seeds, `ptft_bench.tuning`): the configuration the study
selected, found again from the records alone by the study's own rule (`select_trial`: the
complete trial, not collapsed nor failed, with the best validation score; ties to the lower
trial number), and its runs only, that trial and the seeds run at its learning rate and
strategy parameters (`pick_tuned`). The other trials (pruned, failed, collapsed, not selected)
never enter a leaderboard, a gap, the answer or a cost; the tuning section reports them
(`tuning_trials`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ptft_bench.records.record import cost_fields
from ptft_bench.report.load import RunSet
from ptft_bench.report.stats.descriptive import PairedResult, paired, rank_desc, summarize
from ptft_bench.report.stats.tuning import expected_max, trial_score
from ptft_bench.tuning.study import outcome_of

REFERENCE_STRATEGY = "full"
# The cost fields averaged over the seeds of the selected learning rate, each a leaderboard
# column of that name: the record's cost fields, the share of trainable parameters, the
# serving cost (`load.serving_cost`: per example for classifiers, time to first token and
# tokens/s for generation) and forgetting (`load.forgetting_of`). Not the cost section's table
# (`sections.cost`).
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
    "time_to_first_token_ms",  # generation runs: one prompt at a time
    "tokens_per_second_batch1",
    "tokens_per_second_batched",
    "first_token_overhead",  # time to first token over the base model's (the same way)
    "base_first_token_lo",
    "base_first_token_hi",
    "forgetting_base_loss",  # general-text loss before training (nats / token)
    "forgetting_loss",  # ... and after
    "forgetting_delta",  # after - before: positive = forgot
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


# -- tuned variants: the study's selection, found again from the records ----------------------
TUNING_COLUMNS = (
    "role",  # "trial" | "seed" | None (a run outside tuning)
    "study",  # the study's name
    "trial",  # a trial's number in its study
    "outcome",  # a trial's outcome for the study: "complete" | "pruned" | "failed"
    "trial_value",  # the best validation score a complete or pruned trial reached (metric scale)
    "trial_reason",  # why a trial counts as failed ("" otherwise)
    "collapsed",  # the learning check says the run collapsed to one constant prediction
    "still_improving",  # training_stop: the best epoch was the last of a full budget
)


def _dict_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tuning_of(rec: Any) -> dict[str, Any]:
    info = _dict_of(getattr(rec, "tuning", None))
    role = info.get("role") if info.get("role") in ("trial", "seed") else None
    number = info.get("trial")
    improving = _dict_of(getattr(rec, "training_stop", None)).get("still_improving")
    out: dict[str, Any] = {
        "role": role,
        "study": str(info["study"]) if role and info.get("study") else None,
        "trial": number if role == "trial" and isinstance(number, int) else None,
        "outcome": None,
        "trial_value": math.nan,
        "trial_reason": "",
        "collapsed": bool(_dict_of(getattr(rec, "learning_check", None)).get("collapsed")),
        "still_improving": None if improving is None else bool(improving),
    }
    if role == "trial":
        outcome = outcome_of(rec)  # exactly what the study was told
        value = math.nan if outcome.value is None else float(outcome.value)
        out.update(outcome=outcome.state, trial_value=value, trial_reason=outcome.reason)
    return out


def tuning_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """What each run's record says about tuning (`TUNING_COLUMNS`), on the runs' index; a trial's
    outcome is the study's own (`ptft_bench.tuning.study.outcome_of`)."""
    if runs.empty or "record" not in runs:
        return pd.DataFrame(columns=list(TUNING_COLUMNS), index=runs.index)
    rows = [_tuning_of(rec) for rec in runs["record"]]
    return pd.DataFrame(rows, index=runs.index, columns=list(TUNING_COLUMNS))


def with_tuning(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their `tuning_columns` (unchanged when they already have them; a column of
    the same name that loading added, such as `collapsed`, is replaced by the same value)."""
    if "role" in runs and "outcome" in runs:
        return runs
    tun = tuning_columns(runs)
    return runs.drop(columns=[c for c in tun.columns if c in runs]).join(tun)


def select_trial(trials: pd.DataFrame) -> Any | None:
    """The index of the trial a study selects (`ptft_bench.tuning.study.Study.selected`): among
    the complete trials (not pruned, not failed, not collapsed), the highest `trial_value`; ties
    go to the lower trial number. None when no trial is complete."""
    complete = trials[(trials["outcome"] == "complete") & trials["trial_value"].notna()]
    if complete.empty:
        return None
    tied = complete[complete["trial_value"] == complete["trial_value"].max()]
    return tied.sort_values("trial", na_position="last", kind="stable").index[0]


def _same_config(a: pd.Series, b: pd.Series) -> bool:
    """The same learning rate and strategy parameters (the full config, searched ones included)."""
    same_lr = math.isclose(float(a["lr"]), float(b["lr"]), rel_tol=1e-9, abs_tol=0.0)
    dump = lambda p: json.dumps(_dict_of(p), sort_keys=True, default=str)  # noqa: E731
    return same_lr and dump(a["strategy_params"]) == dump(b["strategy_params"])


@dataclass(frozen=True)
class TunedPick:
    """One tuned (task, model, variant): its study's trials, the one selected and the runs at it."""

    study: str | None
    trials: pd.DataFrame  # the study's trial runs, with the tuning columns
    selected: Any | None  # the selected trial's index in the runs; None when no trial qualifies
    final: list[Any]  # the runs at the selected configuration: that trial, then its seeds
    studies: int  # studies among the records (the one with the latest record is used)

    @property
    def note(self) -> str:
        """The leaderboard's `lr_note` of the variant."""
        extra = f"; records of {self.studies} studies, the latest used" if self.studies > 1 else ""
        if self.selected is None:
            return (
                f"tuned: none of {len(self.trials)} trials completed without failing or "
                f"collapsing, nothing selected{extra}; see {{§tuning}}"
            )
        number = self.trials.loc[self.selected, "trial"]
        return (
            f"tuned: trial {int(number)} of {len(self.trials)}, the best validation score"
            f"{extra}; the trials are in {{§tuning}}"
        )

    def summary(self) -> dict[str, Any]:
        """The leaderboard's `tuning` column: counts, the selection, the expected-best curve."""
        t = self.trials
        scores = [trial_score(o, v, x) for o, v, x in _score_inputs(t)]
        failed = t["outcome"] == "failed"
        out: dict[str, Any] = {
            "study": self.study,
            "trials": len(t),
            "complete": int((t["outcome"] == "complete").sum()),
            "pruned": int((t["outcome"] == "pruned").sum()),
            "failed": int(failed.sum()),
            "collapsed": int((failed & t["collapsed"].astype(bool)).sum()),
            "selected_trial": None,
            "selected_value": math.nan,
            "selected_params": {},
            "expected_best": expected_max([100 * s for s in scores if s is not None]),
        }
        if self.selected is not None:
            rec = t.loc[self.selected, "record"]
            params = _dict_of(_dict_of(rec.tuning).get("params"))
            out.update(
                selected_trial=int(t.loc[self.selected, "trial"]),
                selected_value=100 * float(t.loc[self.selected, "trial_value"]),
                selected_params={k: v for k, v in params.items() if k != "lr"},
            )
        return out


def _score_inputs(trials: pd.DataFrame) -> list[tuple[Any, float, float]]:
    """(outcome, best validation score reached, final validation primary) per trial."""
    return list(zip(trials["outcome"], trials["trial_value"], trials["val_primary"]))


def pick_tuned(runs: pd.DataFrame) -> TunedPick:
    """The study behind one tuned (task, model, variant)'s runs (with `tuning_columns`), the
    trial it selects and the runs at that configuration: the trial, then one run per other seed
    at its lr and strategy parameters (a seed run of the study; else, in records written before
    seed runs carried their role, a run outside tuning)."""
    studied = runs[runs["role"].notna()]
    names = sorted({s for s in studied["study"] if s})
    study = None
    if names:
        at = studied["finished_at"].fillna("").astype(str)
        study = max(names, key=lambda n: (at[studied["study"] == n].max(), n))
    trials = studied[(studied["role"] == "trial") & (studied["study"] == study if names else True)]
    selected = select_trial(trials)
    final: list[Any] = []
    if selected is not None:
        best = trials.loc[selected]
        seen = {best["seed"]}
        mine = (runs["role"] == "seed") & (runs["study"] == study if names else True)
        for group in (runs[mine], runs[runs["role"].isna()]):
            for i, r in group.iterrows():
                if r["seed"] not in seen and _same_config(r, best):
                    final.append(i)
                    seen.add(r["seed"])
        final = [selected, *sorted(final, key=lambda i: str(runs.loc[i, "seed"]))]
    return TunedPick(study, trials, selected, final, max(1, len(names)))


def _tuned_groups(runs: pd.DataFrame):
    """((task, model, variant), runs, TunedPick) for each tuned group of `with_tuning` runs."""
    tuned = runs[runs["role"].notna()]
    for key in sorted(set(map(tuple, tuned[GROUP].itertuples(index=False)))):
        g = runs[(runs["task"] == key[0]) & (runs["model"] == key[1]) & (runs["variant"] == key[2])]
        yield key, g, pick_tuned(g)


def tuning_trials(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial of each tuned (task, model, variant)'s study, for the tuning section:
    the group, the trial's number, lr and searched params, outcome, `value` (points: the best
    validation score it reached), `validation` (points: its final validation primary score),
    `score` (points: what it counts with in the expected-best curve, `stats.tuning.trial_score`),
    `selected`, why it failed, epochs run, costs. Empty when nothing was tuned."""
    runs = with_tuning(runs)
    rows = []
    for (task, model, variant), _, pick in _tuned_groups(runs):
        scores = [trial_score(o, v, x) for o, v, x in _score_inputs(pick.trials)]
        for (i, r), score in zip(pick.trials.iterrows(), scores):
            info = _dict_of(r["record"].tuning)
            stop = _dict_of(r["record"].training_stop)
            value = info.get("value")
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "variant": variant,
                    "strategy": r["strategy"],
                    "strategy_family": r["strategy_family"],
                    "study": pick.study,
                    "trial": r["trial"],
                    "lr": r["lr"],
                    "params": {k: v for k, v in _dict_of(info.get("params")).items() if k != "lr"},
                    "outcome": r["outcome"],
                    "collapsed": bool(r["collapsed"]) and r["outcome"] == "failed",
                    "reason": r["trial_reason"],
                    "value": 100 * float(value) if _finite_number(value) else math.nan,
                    "validation": 100 * r["val_primary"],
                    "score": math.nan if score is None else 100 * score,
                    "selected": i == pick.selected,
                    "epochs_run": stop.get("epochs_run"),
                    "pruned_at_epoch": info.get("pruned_at_epoch"),
                    "train_seconds": r["train_seconds"],
                    "train_flops": r["train_flops"],
                    "run_id": r["run_id"],
                }
            )
    return pd.DataFrame(rows)


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def without_trials(rs: RunSet) -> RunSet:
    """`rs` without the tuning trials that are not a selected configuration (the tuning section
    reports them; the sections on failed runs and runs that did not learn list a variant's runs
    as the leaderboard counts them). Unchanged when nothing was tuned."""
    runs = with_tuning(rs.runs)
    if runs.empty or not runs["role"].notna().any():
        return rs
    keep = runs["role"] != "trial"
    for _, _, pick in _tuned_groups(runs):
        keep[pick.final] = True
    return replace(rs, runs=rs.runs[keep.to_numpy()])


def _base_row(task, model, variant, runs, counted, missing) -> dict[str, Any]:
    first = runs.iloc[0] if len(runs) else None
    n_ok = int((counted["status"] == "ok").sum())
    return {
        "task": task,
        "model": model,
        "variant": variant,
        "strategy": first["strategy"] if first is not None else None,
        "strategy_family": first["strategy_family"] if first is not None else None,
        "primary_metric": next((p for p in runs["primary_metric"] if p), None),
        "n_runs_ok": n_ok,
        "n_runs_failed": len(counted) - n_ok,
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
        "tuning": {},
        "forgetting_omitted": None,
    }


def _row_for_variant(
    task: str, model: str, variant: str, runs: pd.DataFrame, missing: pd.DataFrame
) -> dict[str, Any]:
    runs = with_tuning(runs)
    pick = pick_tuned(runs) if runs["role"].notna().any() else None
    counted = runs.loc[pick.final] if pick is not None else runs
    ok = counted[counted["status"] == "ok"]
    row = _base_row(task, model, variant, runs, counted, missing)
    if pick is not None:
        row.update(tuning=pick.summary(), lr_note=pick.note)
    if ok.empty:
        row.update(n_seeds=0, test_mean=math.nan, test_std=math.nan)
        row.update(test_ci_low=math.nan, test_ci_high=math.nan, val_mean=math.nan)
        row.update({c: math.nan for c in AVERAGED_COST_FIELDS})
        return row
    if pick is None:
        lr, lr_scores, note = select_lr(ok)
        sel = ok[ok["lr"] == lr]
    else:  # the selected configuration's runs, whatever their seeds' validation scores
        lr, sel, note = float(runs.loc[pick.selected, "lr"]), ok, pick.note
        val = ok["val_primary"]
        lr_scores = {lr: float(np.nanmean(val)) * 100 if val.notna().any() else math.nan}
    row.update(_selected_fields(sel, lr, lr_scores, note))
    return row


def _selected_fields(
    sel: pd.DataFrame, lr: float, lr_scores: dict[float, float], note: str
) -> dict[str, Any]:
    """Scores, metrics, evidence and mean costs of the selected runs."""
    summ = summarize((sel["test_primary"] * 100).tolist())
    metric_names = sorted({m for d in sel["metrics_test"] for m in d})
    out: dict[str, Any] = dict(
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
        out[col] = float(vals.mean()) if vals.notna().any() else math.nan
    if not math.isfinite(out["forgetting_delta"]):
        reasons = [str(x) for x in sel["forgetting_omitted"] if isinstance(x, str) and x]
        out["forgetting_omitted"] = reasons[0] if reasons else "not recorded"
    return out


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
    runs, missing = with_tuning(rs.runs), rs.missing
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
        )
        .reset_index()
    )
    n_tasks = ok.groupby("model")["task"].nunique()
    out["all_tasks"] = out["n_tasks"] == out["model"].map(n_tasks)
    return out.sort_values(
        ["model", "mean_rank", "mean_score"], ascending=[True, True, False]
    ).reset_index(drop=True)


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
