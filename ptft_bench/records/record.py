"""Record: the one definition of a run record (`RunRecord`), written by the store, read by the report.

A run ends as exactly one record, `ok` or `failed`, built by `RunRecord.ok(...)` or
`RunRecord.failed(...)`. Its fields, their units and meaning are listed here and nowhere else:
`docs/CONTRACTS.md` is generated from this dataclass (`python -m ptft_bench.records.record`), and a test
fails when the two disagree. Older records (schema 1, plain dicts written before this class
existed) load through `RunRecord.from_dict`, which also keeps unknown keys in `extra` so that a
record written by a newer version loses nothing when read by an older one.
"""

from __future__ import annotations

import dataclasses
import math
import traceback as tb
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ptft_bench.errors import first_line

SCHEMA_VERSION = 2
# schema 1: the untyped dicts of the first release (no predictions, baseline or learning check).
# schema 2: this dataclass; adds predictions, baseline, learning_check.


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def doc(text: str, unit: str = "", cost: bool = False) -> dict[str, Any]:
    """Field metadata: what the field means (`text`), its unit, and whether it is a cost column."""
    return {"doc": text, "unit": unit, "cost": cost}


class SpecLike(Protocol):
    """What a record needs from the run it describes (`ptft_bench.sweep.plan.RunSpec`)."""

    run_id: str
    suite: str
    task: str
    model: str
    lr: float
    seed: int
    precision: str

    @property
    def strategy_params(self) -> dict[str, Any]: ...

    def identity_fields(self) -> dict[str, Any]: ...


@dataclass
class RunRecord:
    """One run: its identity, status, task metrics, cost measurements and provenance."""

    # -- identity: what ran (from the plan) ------------------------------------------------------
    run_id: str = field(metadata=doc("stable id: a slug plus a hash of everything in the run key"))
    suite: str = field(default="", metadata=doc("suite name"))
    task: str = field(default="", metadata=doc("task name (`ptft-bench list tasks`)"))
    model: str = field(default="", metadata=doc("model spec: alias, folder or hub id"))
    strategy: str = field(default="", metadata=doc("registered strategy name"))
    strategy_family: str = field(default="", metadata=doc("colour group in reports"))
    variant: str = field(default="", metadata=doc('label, e.g. "lora(r=8)": name + config delta'))
    strategy_params: dict[str, Any] = field(
        default_factory=dict, metadata=doc("the strategy's full config, defaults included")
    )
    lr: float = field(default=math.nan, metadata=doc("peak learning rate"))
    seed: int = field(default=0, metadata=doc("training seed (data splits never depend on it)"))
    budget: dict[str, Any] = field(
        default_factory=dict, metadata=doc("`ptft_bench.config.Budget` as a dict")
    )
    data: dict[str, Any] = field(
        default_factory=dict, metadata=doc("`ptft_bench.config.DataConfig` as a dict")
    )
    precision: str | None = field(default=None, metadata=doc('"fp32" or "bf16"'))
    pooling: str | None = field(
        default=None,
        metadata=doc('what the head reads: "cls", "mean" or "last" (`ptft_bench.models.pooling`)'),
    )
    quantization: str | None = field(
        default=None,
        metadata=doc('how the frozen base was stored: "none", "int8" or "nf4" (bitsandbytes)'),
    )
    model_source: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            "where converted weights came from (e.g. a GGUF file: format, quantization, package, "
            "sha256; `ptft_bench.models.gguf`); null for a model used as it was saved"
        ),
    )
    tuning: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'null for a run outside tuning; else {"role": "trial" | "seed", "study": name, and for '
            'a trial "trial" (its number), "params" (what the sampler chose), "state" ("complete" '
            '| "pruned"), "value" (the validation score Optuna was told), "pruned_at_epoch"} '
            "(`ptft_bench.tuning`)"
        ),
    )
    schema_version: int = field(default=SCHEMA_VERSION, metadata=doc("record layout version"))

    # -- outcome -------------------------------------------------------------------------------
    status: str = field(default="failed", metadata=doc('"ok" or "failed"'))
    error: str | None = field(
        default=None, metadata=doc("failed runs: the first line of the error")
    )
    traceback: str | None = field(default=None, metadata=doc("failed runs: the traceback's tail"))
    started_at: str | None = field(default=None, metadata=doc("ISO-8601 UTC"))
    finished_at: str | None = field(default=None, metadata=doc("ISO-8601 UTC"))

    # -- quality -------------------------------------------------------------------------------
    task_info: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            "num_train, num_validation, num_test, primary_metric, metrics, is_regression, "
            "source, mean_train_tokens"
        ),
    )
    metrics: dict[str, dict[str, float]] = field(
        default_factory=dict,
        metadata=doc(
            'split -> metric -> value: "validation" (best epoch), "test", and further test '
            'splits by name (MNLI: "test_mismatched")',
            "fraction 0..1 or correlation -1..1",
        ),
    )
    primary_metric: str | None = field(default=None, metadata=doc("the metric that ranks runs"))
    best_epoch: int | None = field(default=None, metadata=doc("epoch whose weights scored test"))
    training_stop: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'why training ended: {"reason": "budget" | "early_stopping" | "pruned", "epochs_run", '
            '"epochs_budget", "still_improving": the best epoch was the last of a full budget}'
        ),
    )
    steps: int | None = field(default=None, metadata=doc("optimizer steps taken"))
    predictions: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'per-example evidence: {"file": path relative to the run folder, "splits": {split: '
            "n}}; the file (.npz) holds `pred_<split>` (class ids, or values for regression) "
            "and `label_<split>` in the split's order"
        ),
    )
    baseline: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'the floor on each evaluated split: {"kind": "majority" | "mean", "value": the '
            "constant prediction, split: {metric: value}}; the constant comes from train labels"
        ),
    )
    learning_check: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            '{"learned": bool, "collapsed": bool, "reasons": [...], "first_loss", "last_loss", '
            '"split": "validation", "gain": {"metric", "value", "interval"}}: decided on '
            "validation (`ptft_bench.run.baselines.learning_check`); older records judged test"
        ),
    )
    forgetting: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'the causal-LM loss on held-out general text before and after training: {"base_loss", '
            '"loss", "delta" (positive: forgot), "text"}, or {"omitted": reason} '
            "(`ptft_bench.run.forgetting`)",
            "nats per token",
        ),
    )
    generation: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            'generation runs: {"max_new_tokens", "num_beams", "columns": {metric: [start, end]} '
            'of the per-input statistics in the predictions file, "constant": the floor\'s text}'
        ),
    )
    fit: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            "closed-form strategies (linear probe): what was fitted, e.g. the regularisation "
            "chosen on validation"
        ),
    )
    history: list[dict[str, Any]] = field(
        default_factory=list,
        metadata=doc(
            '[{"step", "epoch", "loss", "lr"}, ...] every log_every steps, and '
            '{"step", "epoch", "validation": {...}} after each epoch'
        ),
    )

    # -- cost ----------------------------------------------------------------------------------
    trainable_params: int | None = field(
        default=None, metadata=doc("parameters trained (tied tensors once)", "count", True)
    )
    trainable_params_head: int | None = field(
        default=None, metadata=doc("the task head's share of trainable_params", "count", True)
    )
    total_params: int | None = field(
        default=None, metadata=doc("all parameters of the trained model", "count", True)
    )
    train_seconds: float | None = field(
        default=None, metadata=doc("training wall time (incl. building a cache)", "s", True)
    )
    eval_seconds: float | None = field(
        default=None, metadata=doc("evaluation wall time (validation + test)", "s", True)
    )
    train_samples_per_second: float | None = field(
        default=None, metadata=doc("training examples per second", "1/s", True)
    )
    train_tokens_per_second: float | None = field(
        default=None, metadata=doc("non-padding training tokens per second", "1/s", True)
    )
    padding_share: float | None = field(
        default=None, metadata=doc("share of padded positions in training batches", "0..1")
    )
    peak_memory_bytes: int | None = field(
        default=None,
        metadata=doc(
            "CUDA: allocator peak; CPU: the process's resident set sampled during the run",
            "B",
            True,
        ),
    )
    memory_at_start_bytes: int | None = field(
        default=None,
        metadata=doc("memory in use before the run's model was loaded (the baseline)", "B"),
    )
    run_memory_bytes: int | None = field(
        default=None,
        metadata=doc(
            "the run's own memory: peak minus the baseline; on CPU meaningful per run when each "
            "run has a fresh process (env.worker)",
            "B",
            True,
        ),
    )
    checkpoint_bytes: int | None = field(
        default=None,
        metadata=doc("safetensors size of what must be saved to keep this fine-tune", "B", True),
    )
    train_flops: float | None = field(
        default=None,
        metadata=doc(
            "estimated training FLOPs, step by step (`ptft_bench.cost.meters`)", "FLOP", True
        ),
    )
    achieved_flops_per_second: float | None = field(
        default=None, metadata=doc("train_flops / train_seconds", "FLOP/s", True)
    )
    peak_flops_per_second: float | None = field(
        default=None, metadata=doc("the device's peak (datasheet or matmul probe)", "FLOP/s", True)
    )
    peak_flops_source: str | None = field(default=None, metadata=doc("where the peak comes from"))
    utilisation: float | None = field(
        default=None, metadata=doc("achieved / peak FLOP/s", "0..1", True)
    )
    inference: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            '{"model": {latency_ms_median, latency_ms_p95, throughput_per_second, '
            'examples_timed, examples_throughput}, "merged": (same, when the weights merge), '
            '"merged_max_logit_difference", "same_architecture_as_base", "measure_seconds"} on the test split '
            "(`ptft_bench.cost.inference`)"
        ),
    )
    frozen_cache: dict[str, Any] | None = field(
        default=None,
        metadata=doc(
            "{used, reason | first_trainable_block, bytes, build_seconds, semantics} "
            "(`ptft_bench.run.caching`)"
        ),
    )

    # -- provenance ----------------------------------------------------------------------------
    env: dict[str, Any] = field(
        default_factory=dict,
        metadata=doc(
            "versions, device, device_name, cpu, cores_available, threads, num_processes, "
            "platform, git_commit, config_hash (`ptft_bench.env`)"
        ),
    )
    extra: dict[str, Any] = field(
        default_factory=dict, metadata=doc("keys this version does not know (kept, not used)")
    )

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def ok(cls, spec: SpecLike, env: dict[str, Any], started: str, **measured: Any) -> RunRecord:
        """A successful run: the spec's identity plus what execute measured."""
        fields = {**spec.identity_fields(), **measured}  # measured may complete the identity
        return cls(
            **fields, env=_with_hash(env, spec), status="ok", started_at=started, finished_at=now()
        )

    @classmethod
    def failed(
        cls, spec: SpecLike, env: dict[str, Any], started: str, error: BaseException
    ) -> RunRecord:
        """A failed run: identity, the error's first line and the traceback's tail."""
        return cls(
            **spec.identity_fields(),
            env=_with_hash(env, spec),
            status="failed",
            error=first_line(error),
            traceback="".join(tb.format_exception(error))[-4000:],
            started_at=started,
            finished_at=now(),
        )

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        extra = out.pop("extra")
        return {**extra, **out}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunRecord:
        """Any schema version; unknown keys go to `extra`, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known}
        values.setdefault("run_id", "")
        values.setdefault("schema_version", 1)
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(**values, extra={**raw.get("extra", {}), **extra})


def _with_hash(env: dict[str, Any], spec: SpecLike) -> dict[str, Any]:
    return {**env, "config_hash": spec.run_id.rsplit("-", 1)[-1]}


def cost_fields() -> tuple[str, ...]:
    """Numeric fields measured per run that reports average and compare."""
    return tuple(f.name for f in dataclasses.fields(RunRecord) if f.metadata.get("cost"))


# -- the contract document -----------------------------------------------------------------------
CONTRACT_BEGIN = (
    "<!-- run-record: generated by `python -m ptft_bench.records.record`; do not edit -->"
)
CONTRACT_END = "<!-- end run-record -->"


def contract_markdown() -> str:
    """The run-record section of docs/CONTRACTS.md, generated from the dataclass."""
    lines = [
        CONTRACT_BEGIN,
        f"Schema version {SCHEMA_VERSION}. One JSON object per run in "
        "`RUN_DIR/records/<run_id>.json`; per-example predictions in "
        "`RUN_DIR/predictions/<run_id>.npz`.",
        "",
        "| field | type | unit | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(RunRecord):
        typ = str(f.type).replace(" | ", " or ")
        unit = f.metadata.get("unit", "")
        text = f.metadata.get("doc", "").replace("|", "\\|")  # a table cell
        lines.append(f"| `{f.name}` | {typ} | {unit} | {text} |")
    lines.append(CONTRACT_END)
    return "\n".join(lines)


def update_contract_doc(path: Path) -> bool:
    """Rewrite the generated section of `path`; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(CONTRACT_BEGIN), text.index(CONTRACT_END) + len(CONTRACT_END)
    new = text[:start] + contract_markdown() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    doc_path = Path(__file__).resolve().parents[2] / "docs" / "CONTRACTS.md"
    print(f"{doc_path}: {'updated' if update_contract_doc(doc_path) else 'up to date'}")
