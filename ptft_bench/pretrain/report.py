"""The data report: documents and tokens in / out, drops per reason, lengths, vocabulary coverage."""

from __future__ import annotations

from typing import Any

from ptft_bench.pretrain.blocks import Blocks, Encoded
from ptft_bench.pretrain.corpus import SourceInfo
from ptft_bench.pretrain.filters import REASONS, CleanResult

# Histogram bin edges in tokens per document (the last bin is open-ended).
LENGTH_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def length_histogram(lengths: list[int]) -> dict[str, int]:
    """Counts of documents per token-length bin, keyed ``"lo-hi"`` (hi exclusive) or ``">=lo"``."""
    hist = {}
    for lo, hi in zip(LENGTH_EDGES, LENGTH_EDGES[1:]):
        hist[f"{lo}-{hi}"] = sum(1 for n in lengths if lo <= n < hi)
    hist[f">={LENGTH_EDGES[-1]}"] = sum(1 for n in lengths if n >= LENGTH_EDGES[-1])
    return hist


def unk_share(encoded: Encoded, unk_id: int | None) -> tuple[float, int]:
    """(share of tokens that are the unknown token, number of documents containing one)."""
    total = encoded.num_tokens
    if unk_id is None or total == 0:
        return 0.0, 0
    count = sum(ids.count(unk_id) for ids in encoded.ids)
    docs = sum(1 for ids in encoded.ids if unk_id in ids)
    return count / total, docs


def build_report(
    sources: list[SourceInfo],
    raw_tokens: int,
    clean: CleanResult,
    train_enc: Encoded,
    heldout_enc: Encoded,
    train_blocks: Blocks,
    heldout_blocks: Blocks,
    tokenizer,
    block_size: int,
) -> dict[str, Any]:
    """Everything the printed table and ``data_report.json`` show."""
    docs_in = sum(s.documents for s in sources)
    kept = len(clean.train) + len(clean.heldout)
    unk_id = tokenizer.unk_token_id
    # Byte-level BPE maps every byte to a token: its "unk" (often eos) never comes from coverage.
    if unk_id is not None and unk_id in (tokenizer.eos_token_id, tokenizer.bos_token_id):
        unk_id = None
    share, unk_docs = unk_share(train_enc, unk_id)
    lengths = [len(x) for x in train_enc.ids] + [len(x) for x in heldout_enc.ids]
    return {
        "sources": [vars(s) for s in sources],
        "documents_in": docs_in,
        "documents_out": kept,
        "documents_train": len(clean.train),
        "documents_heldout": len(clean.heldout),
        "dropped": clean.dropped,
        "dropped_words": clean.dropped_words,
        "normalisation_changed_documents": clean.normalised_changed,
        "boilerplate_lines_removed": clean.lines_removed,
        "boilerplate_examples": clean.boilerplate_lines[:5],
        "tokens_in": raw_tokens,
        "tokens_out": train_enc.num_tokens + heldout_enc.num_tokens,
        "tokens_train": train_enc.num_tokens,
        "tokens_heldout": heldout_enc.num_tokens,
        "block_size": block_size,
        "train_blocks": len(train_blocks),
        "heldout_blocks": len(heldout_blocks),
        "tail_tokens_dropped": train_blocks.dropped_tail_tokens
        + heldout_blocks.dropped_tail_tokens,
        "length_histogram": length_histogram(lengths),
        "unk_share": share,
        "unk_documents": unk_docs,
        "filters": clean.config,
    }


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report for the terminal."""
    rows = [
        ("documents in", f"{report['documents_in']:,}"),
        (
            "documents out",
            f"{report['documents_out']:,} ({report['documents_train']:,} train, {report['documents_heldout']:,} held-out)",
        ),
    ]
    for reason in REASONS:
        n = report["dropped"].get(reason, 0)
        if n:
            rows.append(
                (f"  dropped: {reason}", f"{n:,} docs, {report['dropped_words'][reason]:,} words")
            )
    if report["boilerplate_lines_removed"]:
        rows.append(("  boilerplate lines removed", f"{report['boilerplate_lines_removed']:,}"))
    rows += [
        ("normalisation changed", f"{report['normalisation_changed_documents']:,} docs"),
        ("tokens in", f"{report['tokens_in']:,}"),
        (
            "tokens out",
            f"{report['tokens_out']:,} ({report['tokens_train']:,} train, {report['tokens_heldout']:,} held-out)",
        ),
        (
            "blocks",
            f"{report['train_blocks']:,} train + {report['heldout_blocks']:,} held-out of {report['block_size']} tokens",
        ),
        ("tail tokens dropped", f"{report['tail_tokens_dropped']:,}"),
        (
            "[UNK] share",
            f"{report['unk_share']:.3%} of tokens, in {report['unk_documents']:,} docs",
        ),
    ]
    hist = report["length_histogram"]
    peak = max(hist.values()) or 1
    width = max(len(k) for k, _ in rows)
    lines = ["Corpus report", "-" * 60]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("tokens per document:")
    for label, n in hist.items():
        if n:
            lines.append(f"  {label:>10}  {n:>8,}  {'#' * max(1, round(30 * n / peak))}")
    return "\n".join(lines)


def records_table(folders: list[str]) -> str:
    """A markdown table of the held-out metrics before / after of pretraining output folders.

    ``python -c "from ptft_bench.pretrain.report import records_table; print(records_table([...]))"``
    (the chain script benchmarks/pretrain_then_finetune.sh writes it to runs/pretraining.md).
    """
    import json
    from pathlib import Path

    def num(d: dict | None, key: str, fmt: str) -> str:
        return format(d[key], fmt) if d and key in d else "-"

    rows = [
        "| model folder | objective | start | steps | tokens | seconds | held-out loss: fresh head | before | after | perplexity before -> after | masked acc. before -> after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for folder in folders:
        path = Path(folder) / "pretrain_record.json"
        if not path.exists():
            rows.append(f"| {folder} | (missing: no pretrain_record.json) |||||||||")
            continue
        r = json.loads(path.read_text())
        b, a = r.get("before") or {}, r.get("after") or {}
        fresh = (r.get("head_fit") or {}).get("fresh_head")
        start = f"scratch:{r['from_scratch']}" if r.get("from_scratch") else str(r.get("model"))
        rows.append(
            f"| {folder} | {r['objective']} | {start} | {r['steps']} | {r['tokens']:,} | "
            f"{r['train_seconds']:.0f} | {num(fresh, 'loss', '.3f')} | {num(b, 'loss', '.3f')} | "
            f"{num(a, 'loss', '.3f')} | {num(b, 'perplexity', '.1f')} -> {num(a, 'perplexity', '.1f')} | "
            f"{num(b, 'masked_accuracy', '.3f')} -> {num(a, 'masked_accuracy', '.3f')} |"
        )
    return "\n".join(rows)
