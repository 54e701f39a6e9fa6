"""Each run's memory is its own: in fresh worker processes, full fine-tuning's increment over
the pre-model baseline exceeds LoRA's and head-only's, and the same configuration measures the
same (within 5%, or a few MiB for small increments), however the sweep is ordered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from e2e_fixtures import make_csv_task

from ptft_bench.cli import main


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A random BERT big enough (11M parameters) that optimizer state dwarfs allocator noise."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from ptft_bench.models.load import load_tokenizer
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    root = tmp_path_factory.mktemp("memory")
    tok = load_tokenizer("minilm-l6")
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=64,
    )
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(root / "bert-11m")
    tok.save_pretrained(root / "bert-11m")
    make_csv_task(root, n=96)
    return root


def run(work: Path, out: Path, *strategies: str) -> dict[str, dict]:
    argv = [
        "run",
        "--tasks",
        f"csv:{work / 'reviews.csv'}?text=review&label=sentiment",
        "--model",
        str(work / "bert-11m"),
        "--strategies",
        *strategies,
        "--lrs",
        "1e-4",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--max-length",
        "32",
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-report",
        "--quiet",
    ]
    assert main(argv) == 0
    recs = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    return {r["strategy"]: r for r in recs}


def test_run_memory_orders_strategies_and_repeats(work, tmp_path):
    first = run(work, tmp_path / "a", "full", "lora", "head_only")
    again = run(work, tmp_path / "b", "head_only", "full")
    mem = {s: r["run_memory_bytes"] for s, r in first.items()}
    assert all(r["env"]["worker"] == "fresh process" for r in first.values())
    assert mem["full"] > mem["lora"] > 0 and mem["full"] > mem["head_only"] > 0, mem
    # full fine-tuning holds gradients and two Adam moments of every weight: 3 x 44 MB here
    assert mem["full"] - mem["lora"] > 100 * 2**20, mem
    # The resident set is sampled every 50 ms and moves in allocator-sized steps: small
    # increments (head-only's ~45 MB) agree to a few MiB, large ones to 5%.
    for strategy in ("full", "head_only"):
        a, b = first[strategy]["run_memory_bytes"], again[strategy]["run_memory_bytes"]
        assert abs(a - b) <= max(0.05 * max(a, b), 8 * 2**20), (strategy, a, b)
