"""A tiny random BERT saved as a local model folder, for fast end-to-end runs without downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def make_tiny_model_dir(root: Path, layers: int = 2) -> Path:
    """Save a tiny random BERT with the packaged MiniLM tokenizer (no network needed)."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    from ptft_bench.models.load import load_tokenizer
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    out = root / "tiny-bert"
    if (out / "config.json").exists():
        return out
    tok = load_tokenizer("minilm-l6")
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    # seeded: the same tiny model on every machine and in every test, so a test's outcome does not
    # hang on which random initialisation this call happened to draw
    with torch.random.fork_rng():
        torch.manual_seed(int(os.environ.get("PTFT_TINY_SEED", "0")))
        model = AutoModelForSequenceClassification.from_config(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_csv_task(root: Path, n: int = 120) -> Path:
    """A small, learnable sentiment CSV: the label is in the words."""
    pos = ["great", "wonderful", "superb", "moving", "brilliant"]
    neg = ["awful", "boring", "terrible", "dull", "bad"]
    rows = []
    for i in range(n):
        words = pos if i % 2 else neg
        rows.append(
            {
                "review": f"a {words[i % 5]} film , really {words[(i + 2) % 5]}",
                "sentiment": "pos" if i % 2 else "neg",
            }
        )
    path = root / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tiny_workspace(root: Path) -> Path:
    """`root` with the tiny BERT folder and the CSV task: what the end-to-end tests run on."""
    make_tiny_model_dir(root)
    make_csv_task(root)
    return root


def cli_env() -> dict[str, str]:
    """The environment of a `python -m ptft_bench` subprocess: offline, one thread, this repo."""
    env = {k: v for k, v in os.environ.items() if k not in ("PTFT_ONLINE", "HF_HUB_OFFLINE")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def make_tiny_causal_lm_dir(root: Path, layers: int = 2) -> Path:
    """Save a tiny random Llama causal LM with the packaged MiniLM tokenizer (no network); its
    end-of-text token is [SEP]."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ptft_bench.models.load import load_tokenizer
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    out = root / "tiny-llama"
    if (out / "config.json").exists():
        return out
    tok = load_tokenizer("minilm-l6")
    tok.eos_token = "[SEP]"
    cfg = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.cls_token_id,
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_generation_task(root: Path, n: int = 60) -> str:
    """A small data-to-text CSV (two references per input) and its task string."""
    foods = ["Thai", "Italian", "French", "Chinese", "Indian", "English"]
    names = ["The Eagle", "Aromi", "Zizzi", "Loch Fyne", "Cotto"]
    rows = []
    for i in range(n):
        name, food = names[i % len(names)], foods[i % len(foods)]
        mr = f"name[{name}], food[{food}]"
        rows += [
            {"mr": mr, "ref": f"{name} serves {food} food."},
            {"mr": mr, "ref": f"{name} is a {food} restaurant."},
        ]
    path = root / "d2t.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return f"gen:{path}?prompt=mr&target=ref"
