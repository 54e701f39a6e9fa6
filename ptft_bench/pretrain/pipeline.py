"""One pretraining run end to end: corpus -> report -> blocks -> model -> train -> output folder.

The output folder holds the model (with its LM head), the tokenizer, ``data_report.json``,
``pretrain_record.json`` and ``checkpoints/``; it loads as ``--model DIR`` in the fine-tuning
benchmark (``AutoModelForSequenceClassification`` drops the LM head).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ptft_bench.errors import UserError
from ptft_bench.pretrain.blocks import pack_blocks, tokenize_documents
from ptft_bench.pretrain.configs import build_scratch_model, get_scratch_config, train_tokenizer
from ptft_bench.pretrain.corpus import read_corpus
from ptft_bench.pretrain.filters import CleanConfig, clean_corpus, text_key
from ptft_bench.pretrain.heads import LoadedLM, head_is_tied, load_lm
from ptft_bench.pretrain.loop import TrainConfig, list_checkpoints, train
from ptft_bench.pretrain.report import build_report, format_report

RECORD_NAME = "pretrain_record.json"
REPORT_NAME = "data_report.json"


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


def _env() -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    try:
        import datasketch

        sketch = getattr(datasketch, "__version__", "unknown")
    except ImportError:
        sketch = None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "datasketch": sketch,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "device_name": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a temporary file, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume or not out.exists():
        return
    if (out / RECORD_NAME).exists() or list_checkpoints(out):
        raise UserError(
            f"--out {out} already holds a pretraining run: pass --resume to continue it, or pick a new --out"
        )


def _tokenizer_and_model(opts: PretrainOptions, objective: str, texts: list[str], seed: int):
    """(tokenizer, LoadedLM or None for from-scratch (built later), notes)."""
    from ptft_bench.models import load_tokenizer, resolve_model_path

    out = opts.out
    if opts.from_scratch:
        cfg = get_scratch_config(opts.from_scratch)
        if cfg.objective != objective:
            raise UserError(
                f"--from-scratch {cfg.name} is a {cfg.objective} model: use --objective {cfg.objective}"
            )
        if opts.resume and (out / "tokenizer_config.json").exists():
            # The tokenizer of the interrupted run, not a retrained one: ids must not move.
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(out)
            source = "saved with the interrupted run"
        elif opts.model:
            tokenizer, source = load_tokenizer(opts.model), f"taken from {opts.model}"
        else:
            tokenizer = train_tokenizer(texts, cfg.family, opts.vocab_size)
            kind = "WordPiece" if cfg.family == "bert" else "byte-level BPE"
            source = f"{kind} trained on the corpus (vocab {len(tokenizer)})"
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


def prepare_and_report(opts: PretrainOptions, objective: str, seed: int):
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
        max_pos = getattr(loaded.model.config, "max_position_embeddings", None) or getattr(
            loaded.model.config, "n_positions", None
        )
        if max_pos and opts.block_size > max_pos:
            raise UserError(
                f"--block-size {opts.block_size} exceeds the model's {max_pos} positions"
            )
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
    return tokenizer, loaded, notes, report, train_blocks, held_blocks


def run_pretrain(opts: PretrainOptions, cfg: TrainConfig) -> dict[str, Any]:
    """The whole run; returns the record written to ``OUT/pretrain_record.json``."""
    _check_out_dir(opts.out, opts.resume)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    tokenizer, loaded, notes, report, train_blocks, held_blocks = prepare_and_report(
        opts, cfg.objective, cfg.seed
    )
    if opts.report_only:
        return {"data_report": report}
    opts.out.mkdir(parents=True, exist_ok=True)
    _write_json(opts.out / REPORT_NAME, report)
    tokenizer.save_pretrained(opts.out)
    for note in notes:
        print(f"note: {note}")
    meta = {
        "corpus": opts.corpus,
        "model": opts.model,
        "from_scratch": opts.from_scratch,
        "block_size": opts.block_size,
        "train_blocks": len(train_blocks),
    }
    if len(held_blocks) == 0:
        print("note: no full held-out block: before/after metrics are skipped (raise --heldout)")
    if cfg.fit_head_steps and not loaded.new_head:
        print("note: the model has its own LM head: --fit-head-steps is ignored")
        cfg = replace(cfg, fit_head_steps=0)
    if cfg.max_steps == 0:
        print("note: --max-steps 0: writing the initial model without training")
    state, after = train(
        loaded.model, tokenizer, train_blocks, held_blocks, cfg, opts.out, opts.resume, meta
    )
    loaded.model.save_pretrained(opts.out)
    carried = carry_unused_weights(loaded, opts.out)
    if carried:
        print(
            f"note: kept {len(carried)} weight(s) the LM model does not use: {', '.join(carried[:4])}"
        )
    record = {
        "schema_version": 1,
        "objective": cfg.objective,
        "model": opts.model or ("minilm-l6" if not opts.from_scratch else None),
        "from_scratch": opts.from_scratch,
        "new_head": loaded.new_head,
        "head_tied_to_embeddings": loaded.tied,
        "notes": notes,
        "carried_weights": carried,
        "corpus": opts.corpus,
        "exclude_eval_of": opts.exclude_eval_of,
        "corpus_stats": {
            k: report[k]
            for k in (
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
        },
        "block_size": opts.block_size,
        "steps": state.step,
        "tokens": state.tokens,
        "train_seconds": round(state.seconds, 3),
        "tokens_per_second": state.tokens / state.seconds if state.seconds else None,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "head_fit": state.head_fit,
        "before": state.before,
        "after": after,
        "train_config": asdict(cfg),
        "history": state.history,
        "env": _env(),
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(opts.out / RECORD_NAME, record)
    return record


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
        tmp = dst_files[0].with_name(f".{dst_files[0].name}.tmp")
        save_file(saved, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, dst_files[0])
    return sorted(added)
