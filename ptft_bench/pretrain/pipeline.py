"""One pretraining run end to end: corpus -> report -> blocks -> model -> train -> output folder.

The output folder holds the model (with its LM head), the tokenizer, ``data_report.json``,
``pretrain_record.json`` and ``checkpoints/``; it loads as ``--model DIR`` in the fine-tuning
benchmark (``AutoModelForSequenceClassification`` drops the LM head). Every file is written
atomically (:mod:`ptft_bench.atomic`); the record's ``env`` is the project's machine description
(:func:`ptft_bench.env.describe`) plus the tokenizers / datasketch versions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptft_bench.atomic import json_safe, save_with, write_text
from ptft_bench.env import describe
from ptft_bench.errors import UserError
from ptft_bench.pretrain.blocks import Blocks, pack_blocks, tokenize_documents
from ptft_bench.pretrain.configs import build_scratch_model, get_scratch_config, train_tokenizer
from ptft_bench.pretrain.corpus import read_corpus
from ptft_bench.pretrain.filters import CleanConfig, clean_corpus, text_key
from ptft_bench.pretrain.heads import LoadedLM, head_is_tied, load_lm
from ptft_bench.pretrain.loop import TrainConfig, TrainState, list_checkpoints, train
from ptft_bench.pretrain.report import build_report, format_report

RECORD_NAME = "pretrain_record.json"
REPORT_NAME = "data_report.json"
# The data report's counts copied into the record, so one file tells what a model was trained on.
CORPUS_STATS_KEYS = (
    "documents_in",
    "documents_out",
    "documents_train",
    "documents_heldout",
    "tokens_in",
    "tokens_out",
    "train_blocks",
    "heldout_blocks",
    "dropped",
    "unk_share",
)


@dataclass
class PretrainOptions:
    """Everything one run needs besides the training settings."""

    corpus: list[str]
    out: Path
    model: str | None = None
    from_scratch: str | None = None
    vocab_size: int = 8000
    block_size: int = 128
    doc_split: str = "auto"
    clean: CleanConfig = field(default_factory=CleanConfig)
    resume: bool = False
    report_only: bool = False
    exclude_eval_of: list[str] = field(default_factory=list)  # task names (decontamination)


def run_environment() -> dict[str, Any]:
    """The project's machine description plus the libraries only pretraining uses."""
    import tokenizers
    import torch

    try:
        import datasketch

        sketch = getattr(datasketch, "__version__", "unknown")
    except ImportError:
        sketch = None
    # `torch_threads` predates `threads` (same value): kept so older readers still find it.
    return describe(
        tokenizers=tokenizers.__version__,
        datasketch=sketch,
        torch_threads=torch.get_num_threads(),
    )


def _write_json(path: Path, data: dict) -> None:
    """Atomically, in insertion order: the record and the report read top to bottom (the length
    histogram's bins in order), which `atomic.write_json`'s sorted keys would scramble."""
    write_text(path, json.dumps(json_safe(data), indent=2, default=str))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume or not out.exists():
        return
    if (out / RECORD_NAME).exists() or list_checkpoints(out):
        raise UserError(
            f"--out {out} already holds a pretraining run: pass --resume to continue it, or pick a new --out"
        )


def _scratch_tokenizer(opts: PretrainOptions, family: str, texts: list[str]) -> tuple[Any, str]:
    """(tokenizer, where it came from) for a from-scratch model."""
    from ptft_bench.models.load import load_tokenizer

    if opts.resume and (opts.out / "tokenizer_config.json").exists():
        # The tokenizer of the interrupted run, not a retrained one: ids must not move.
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(opts.out), "saved with the interrupted run"
    if opts.model:
        return load_tokenizer(opts.model), f"taken from {opts.model}"
    tokenizer = train_tokenizer(texts, family, opts.vocab_size)
    kind = "WordPiece" if family == "bert" else "byte-level BPE"
    return tokenizer, f"{kind} trained on the corpus (vocab {len(tokenizer)})"


def _tokenizer_and_model(opts: PretrainOptions, objective: str, texts: list[str], seed: int):
    """(tokenizer, LoadedLM (None with --report-only), notes for the user)."""
    from ptft_bench.models.load import load_tokenizer, resolve_model_path

    if opts.from_scratch:
        cfg = get_scratch_config(opts.from_scratch)
        if cfg.objective != objective:
            raise UserError(
                f"--from-scratch {cfg.name} is a {cfg.objective} model: use --objective {cfg.objective}"
            )
        tokenizer, source = _scratch_tokenizer(opts, cfg.family, texts)
        if opts.report_only:
            return tokenizer, None, [f"tokenizer {source}"]
        model = build_scratch_model(cfg, tokenizer, seed)
        return (
            tokenizer,
            LoadedLM(model, True, head_is_tied(model)),
            [f"from scratch: {cfg.name} ({cfg.description}); tokenizer {source}"],
        )
    spec = opts.model or "minilm-l6"
    tokenizer = load_tokenizer(spec)
    if opts.report_only:
        return tokenizer, None, []
    loaded = load_lm(resolve_model_path(spec), objective, spec)
    return tokenizer, loaded, list(loaded.notes)


def eval_text_keys(tasks: list[str]) -> set[str]:
    """:func:`text_key` of every validation and test text of ``tasks`` (all rows, no caps).

    Evaluation caps (``max_eval_samples``) take nested prefixes of these splits, so excluding the
    whole splits covers every capped run too. Training texts are not excluded: pretraining on the
    task's own unlabelled training inputs is task-adaptive pretraining, a legitimate setting.
    """
    from ptft_bench.tasks import load_task

    keys: set[str] = set()
    for name in tasks:
        data = load_task(name)
        for split in (data.validation, data.test):
            for col in ("text_a", "text_b"):
                if split is not None and col in split.columns:
                    keys.update(text_key(str(t)) for t in split[col].dropna())
    keys.discard("")
    return keys


@dataclass
class PreparedRun:
    """What is built before training: tokenizer, model, notes, corpus report and blocks."""

    tokenizer: Any
    loaded: LoadedLM | None  # None with --report-only
    notes: list[str]
    report: dict[str, Any]
    train_blocks: Blocks
    held_blocks: Blocks


def _check_block_size(loaded: LoadedLM, block_size: int) -> None:
    config = loaded.model.config
    max_pos = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if max_pos and block_size > max_pos:
        raise UserError(f"--block-size {block_size} exceeds the model's {max_pos} positions")


def prepare_and_report(opts: PretrainOptions, objective: str, seed: int) -> PreparedRun:
    """Read, clean, tokenise and pack the corpus; print the report. Returns everything built."""
    docs, sources = read_corpus(opts.corpus, opts.doc_split)
    exclude = eval_text_keys(opts.exclude_eval_of) if opts.exclude_eval_of else None
    clean = clean_corpus(docs, opts.clean, exclude)
    if not clean.train:
        raise UserError(
            "every document was filtered out: loosen --min-words / --max-non-letter or check the corpus"
        )
    tokenizer, loaded, notes = _tokenizer_and_model(
        opts, objective, [d.text for d in clean.train], seed
    )
    if loaded is not None:
        _check_block_size(loaded, opts.block_size)
    raw_tokens = tokenize_documents(tokenizer, [d.text for d in docs]).num_tokens
    with_offsets = objective == "mlm"
    train_enc = tokenize_documents(tokenizer, [d.text for d in clean.train], with_offsets)
    held_enc = tokenize_documents(tokenizer, [d.text for d in clean.heldout], with_offsets)
    train_blocks = pack_blocks(train_enc, tokenizer, opts.block_size, objective)
    held_blocks = pack_blocks(held_enc, tokenizer, opts.block_size, objective)
    report = build_report(
        sources,
        raw_tokens,
        clean,
        train_enc,
        held_enc,
        train_blocks,
        held_blocks,
        tokenizer,
        opts.block_size,
    )
    print(format_report(report))
    return PreparedRun(tokenizer, loaded, notes, report, train_blocks, held_blocks)


def _settle_train_config(run: PreparedRun, cfg: TrainConfig) -> TrainConfig:
    """Tell the user what this run will and will not do; drop a head fit the model cannot use."""
    if len(run.held_blocks) == 0:
        print("note: no full held-out block: before/after metrics are skipped (raise --heldout)")
    if cfg.fit_head_steps and not run.loaded.new_head:
        print("note: the model has its own LM head: --fit-head-steps is ignored")
        cfg = replace(cfg, fit_head_steps=0)
    if cfg.max_steps == 0:
        print("note: --max-steps 0: writing the initial model without training")
    return cfg


def _what_was_trained(
    opts: PretrainOptions, cfg: TrainConfig, run: PreparedRun, carried: list[str]
) -> dict[str, Any]:
    """The record's first part: model, head, corpus and its statistics."""
    return {
        "schema_version": 1,
        "objective": cfg.objective,
        "model": opts.model or ("minilm-l6" if not opts.from_scratch else None),
        "from_scratch": opts.from_scratch,
        "new_head": run.loaded.new_head,
        "head_tied_to_embeddings": run.loaded.tied,
        "notes": run.notes,
        "carried_weights": carried,
        "corpus": opts.corpus,
        "exclude_eval_of": opts.exclude_eval_of,
        "corpus_stats": {k: run.report[k] for k in CORPUS_STATS_KEYS},
        "block_size": opts.block_size,
    }


def _how_it_went(state: TrainState, after: dict[str, float], wall_seconds: float) -> dict:
    """The record's second part: budget spent, speed and held-out metrics."""
    return {
        "steps": state.step,
        "tokens": state.tokens,
        "train_seconds": round(state.seconds, 3),
        "tokens_per_second": state.tokens / state.seconds if state.seconds else None,
        "wall_seconds": round(wall_seconds, 3),
        "head_fit": state.head_fit,
        "before": state.before,
        "after": after,
    }


def run_pretrain(opts: PretrainOptions, cfg: TrainConfig) -> dict[str, Any]:
    """The whole run; returns the record written to ``OUT/pretrain_record.json``."""
    _check_out_dir(opts.out, opts.resume)
    started = _now()
    t0 = time.perf_counter()
    run = prepare_and_report(opts, cfg.objective, cfg.seed)
    if opts.report_only:
        return {"data_report": run.report}
    opts.out.mkdir(parents=True, exist_ok=True)
    _write_json(opts.out / REPORT_NAME, run.report)
    run.tokenizer.save_pretrained(opts.out)
    for note in run.notes:
        print(f"note: {note}")
    meta = {  # settings a resumed run must share with the interrupted one
        "corpus": opts.corpus,
        "model": opts.model,
        "from_scratch": opts.from_scratch,
        "block_size": opts.block_size,
        "train_blocks": len(run.train_blocks),
    }
    cfg = _settle_train_config(run, cfg)
    model = run.loaded.model
    state, after = train(
        model, run.tokenizer, run.train_blocks, run.held_blocks, cfg, opts.out, opts.resume, meta
    )
    model.save_pretrained(opts.out)
    carried = carry_unused_weights(run.loaded, opts.out)
    if carry_pooling_config(run.loaded.source_path, opts.out):
        print(
            "note: kept the base model's sentence pooling config (fine-tuning pools the same way)"
        )
    if carried:
        print(
            f"note: kept {len(carried)} weight(s) the LM model does not use: {', '.join(carried[:4])}"
        )
    record = {
        **_what_was_trained(opts, cfg, run, carried),
        **_how_it_went(state, after, time.perf_counter() - t0),
        "train_config": asdict(cfg),
        "history": state.history,
        "env": run_environment(),
        "started_at": started,
        "finished_at": _now(),
    }
    _write_json(opts.out / RECORD_NAME, record)
    return record


def carry_pooling_config(source: str | None, out: Path) -> bool:
    """Copy a sentence-transformers pooling config (`1_Pooling/`) from the base model's folder.

    `--pooling auto` reads it (`ptft_bench.models.pooling`): without it the adapted model would be
    fine-tuned on [CLS] while its base pools the mean, and a base-vs-adapted comparison would
    compare poolings, not pretraining.
    """
    src = Path(source) / "1_Pooling" if source else None
    if src is None or not (src / "config.json").is_file():
        return False
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    write_text(out / "1_Pooling" / "config.json", (src / "config.json").read_text())
    return True


def carry_unused_weights(loaded: LoadedLM, out: Path) -> list[str]:
    """Copy checkpoint weights the LM class does not use (BERT's pooler) into ``out``'s weights.

    ``AutoModelForMaskedLM`` drops ``pooler.*`` of a BERT checkpoint, and the sequence classifier
    of the fine-tuning benchmark uses the pooler: without this, the adapted model would start
    fine-tuning with a random pooler while the base model keeps its trained one, and the
    comparison would measure the pooler, not the adaptation. Returns the keys added.
    """
    if not loaded.unexpected or not loaded.source_path:
        return []
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = Path(loaded.source_path)
    src_files = sorted(src.glob("*.safetensors"))
    dst_files = sorted(out.glob("*.safetensors"))
    if not src_files or len(dst_files) != 1:
        print("note: not carrying unused weights (needs safetensors files, one output shard)")
        return []
    saved = load_file(str(dst_files[0]))
    prefix = getattr(loaded.model, "base_model_prefix", "")
    added = []
    for file in src_files:
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                if key not in loaded.unexpected:
                    continue
                name = key
                if prefix and not key.startswith(f"{prefix}.") and f"{prefix}.{key}" not in saved:
                    name = f"{prefix}.{key}"
                if name not in saved:
                    saved[name] = f.get_tensor(key).contiguous()
                    added.append(name)
    if added:
        save_with(dst_files[0], lambda path: save_file(saved, path, metadata={"format": "pt"}))
    return sorted(added)
