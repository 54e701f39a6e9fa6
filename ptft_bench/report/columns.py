"""The declared schema of the leaderboard (`aggregate.leaderboard`): every column, its unit and
what it means. One row per (task, model, strategy variant), at the variant's selected learning
rate (a tuned variant: at the configuration its study selected, `aggregate`);
`tests/test_report_layout.py` checks that the frame has exactly these columns.

Units: "points" = metric × 100 (the unit the report speaks); "metric" = the metric's own scale
(0..1 for accuracy); cost units are the run record's (`docs/CONTRACTS.md`), averaged over the
seeds of the selected learning rate; "" = a name, flag or structure, not a quantity. NaN where a
value is unknown (no successful run, an older record, no measurement).

`history` and `seed_list` are set only on rows with a successful run, so a leaderboard in which
no variant has one lacks them (`OPTIONAL`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One leaderboard column."""

    name: str
    unit: str
    meaning: str


LEADERBOARD_COLUMNS: tuple[Column, ...] = (
    # -- identity
    Column("task", "", "task name"),
    Column("model", "", "model name (the pretrained checkpoint's label)"),
    Column("variant", "", "strategy variant label, e.g. `lora(r=8)`"),
    Column("strategy", "", "strategy name (`full` is the reference)"),
    Column("strategy_family", "", "strategy family (full, lora, head, bias, ...)"),
    Column("primary_metric", "", "the task's primary metric (filled from the task if all failed)"),
    # -- runs and learning-rate selection
    Column(
        "n_runs_ok",
        "count",
        "successful runs of the variant, all learning rates (tuned: at the "
        "selected configuration; the trials are counted in `tuning`)",
    ),  # fmt: skip
    Column("n_runs_failed", "count", "failed runs of the variant, counted as n_runs_ok"),
    Column("n_runs_missing", "count", "planned runs of the variant without a record"),
    Column(
        "lr",
        "",
        "selected learning rate: best mean validation score over seeds (tuned: the "
        "study's selected trial's, `aggregate.select_trial`)",
    ),  # fmt: skip
    Column("lr_scores", "points", "{learning rate: mean validation primary metric over seeds}"),
    Column("lr_note", "", "how the lr was chosen when not by validation score ('' otherwise)"),
    Column(
        "tuning",
        "",
        "{} untuned; else the study behind the row (`aggregate.TunedPick.summary`): "
        "study, trials, complete, pruned, failed, collapsed, selected_trial, selected_value "
        "(points), selected_params, expected_best (points, n = 1..N; `stats.tuning`); for the "
        "tuning section only, never compared",
    ),  # fmt: skip
    Column("val_mean", "points", "mean validation primary metric at the selected lr"),
    Column("n_seeds", "count", "successful seeds at the selected lr"),
    Column("selected_runs", "", "[(seed, RunRecord, run folder)] at the selected lr, by seed"),
    Column("history", "", "each selected run's training history (record order; optional)"),
    Column("seed_list", "", "the seeds of `history`, in the same order (optional)"),
    # -- scores at the selected learning rate
    Column("seed_scores", "points", "{seed: test primary metric}"),
    Column("test_mean", "points", "mean test primary metric over seeds"),
    Column("test_std", "points", "its standard deviation over seeds (ddof=1; NaN for one)"),
    Column("test_ci_low", "points", "low end of the 95% t interval over seeds (3+ seeds)"),
    Column("test_ci_high", "points", "high end of the 95% t interval over seeds (3+ seeds)"),
    Column("test_metrics", "points", "{metric: SeedSummary over seeds} for every test metric"),
    Column("rank", "", "rank in (task, model) by test_mean, 1 = best, ties averaged; NaN unranked"),
    # -- learning check and floor
    Column("n_learned", "count", "selected runs whose learning check says they learned"),
    Column("n_not_learned", "count", "selected runs whose learning check says they did not"),
    Column("did_not_learn", "", "every selected run learned nothing (never compared)"),
    Column("baseline", "metric", "the record's constant-prediction baseline: {kind, value, test}"),
    # -- costs: the record's cost fields, means over the selected lr's seeds
    Column("trainable_params", "count", "parameters trained (tied tensors once)"),
    Column("trainable_params_head", "count", "the task head's share of trainable_params"),
    Column("total_params", "count", "all parameters of the trained model"),
    Column("train_seconds", "s", "training wall time (incl. building a cache)"),
    Column("eval_seconds", "s", "evaluation wall time (validation + test)"),
    Column("train_samples_per_second", "1/s", "training examples per second"),
    Column("train_tokens_per_second", "1/s", "non-padding training tokens per second"),
    Column("peak_memory_bytes", "B", "the process's (CPU) or allocator's (CUDA) peak memory"),
    Column("run_memory_bytes", "B", "the run's own memory: peak minus the baseline"),
    Column("checkpoint_bytes", "B", "size of what must be saved to keep the fine-tune"),
    Column("train_flops", "FLOP", "estimated training FLOPs, counted step by step"),
    Column("achieved_flops_per_second", "FLOP/s", "train_flops / train_seconds"),
    Column("peak_flops_per_second", "FLOP/s", "the device's peak"),
    Column("utilisation", "0..1", "achieved / peak FLOP/s"),
    # -- costs derived by the report (`load`), means over the selected lr's seeds
    Column("trainable_pct", "%", "trainable_params / total_params × 100"),
    Column("memory_bytes", "B", "run_memory_bytes where measured, else peak_memory_bytes"),
    Column("inference_latency_ms", "ms", "serving latency, one example at a time: median"),
    Column("inference_latency_p95_ms", "ms", "serving latency: 95th percentile"),
    Column("inference_throughput", "1/s", "examples per second at the evaluation batch size"),
    Column(
        "inference_overhead", "ratio", "serving latency over the base model's (generation: TTFT)"
    ),
    Column("base_latency_lo", "ratio", "lowest overhead of the base-architecture runs (noise)"),
    Column("base_latency_hi", "ratio", "highest overhead of the base-architecture runs (noise)"),
    # -- generation runs: serving cost of the served model (merged where the weights merge)
    Column("time_to_first_token_ms", "ms", "generation: time to the first new token, batch 1"),
    Column("tokens_per_second_batch1", "1/s", "generation: new tokens per second, one prompt"),
    Column("tokens_per_second_batched", "1/s", "generation: new tokens per second, batched"),
    Column(
        "first_token_overhead",
        "ratio",
        "time to first token over the base model's (median of the base-architecture runs), "
        "same task",
    ),  # fmt: skip
    Column("base_first_token_lo", "ratio", "lowest first-token overhead of the base runs (noise)"),
    Column("base_first_token_hi", "ratio", "highest first-token overhead of the base runs (noise)"),
    # -- forgetting: causal-LM loss on held-out general text (decoders; `run.forgetting`)
    Column("forgetting_base_loss", "nats/token", "general-text loss of the base model"),
    Column("forgetting_loss", "nats/token", "general-text loss after training"),
    Column("forgetting_delta", "nats/token", "forgetting_loss - forgetting_base_loss (+: forgot)"),
    Column(
        "forgetting_omitted",
        "",
        "why forgetting was not measured (the record's reason, e.g. an encoder; "
        '"not recorded" for older records); None where it was',
    ),  # fmt: skip
)
LEADERBOARD = {c.name: c for c in LEADERBOARD_COLUMNS}
OPTIONAL = frozenset({"history", "seed_list"})
