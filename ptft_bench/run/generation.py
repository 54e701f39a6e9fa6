"""Generation tasks after training: decode the inputs, score the text, keep per-input evidence.

Decoding is batched greedy search (`model.generate`, beams optional) with a budget of new
tokens, stopping at the end-of-text token; prompts are padded on the left so every row
continues from its own last position, and batches are sorted by prompt length. The texts are
scored with the task's metrics (`ptft_bench.tasks.generation_metrics`: sacrebleu's BLEU and chrF,
rouge-score's ROUGE-L, exact match; multi-reference), and each input's sufficient statistics are
kept so that the report's paired bootstrap can resample inputs and recompute the corpus metric.

The floor is a constant output: one training target (the one of median length, a fixed choice)
written for every input; a run "learned" when its validation score beats that constant's, with a
bootstrap interval over the validation inputs, and it "collapsed" when it wrote one text for all.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptft_bench.tasks import encode as D
from ptft_bench.tasks import generation_metrics as G

MAX_NEW_TOKENS = 64  # E2E references are one or two sentences (at most ~60 tokens)
GEN_BATCH = 16
BOOTSTRAP, BOOTSTRAP_SEED = 1000, 0


@torch.inference_mode()
def generate_ids(
    model: torch.nn.Module,
    split: D.EncodedSplit,
    pad_id: int,
    eos_id: int | None,
    device: torch.device,
    autocast: Any = contextlib.nullcontext,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = GEN_BATCH,
    num_beams: int = 1,
) -> list[list[int]]:
    """The new token ids (up to, without, the end-of-text token) of every prompt, in order."""
    model.eval()
    out: list[list[int]] = [[] for _ in range(len(split))]
    for idx in D.eval_batches(split.lengths, batch_size):
        batch = {k: v.to(device) for k, v in D.collate_prompts(split, idx, pad_id).items()}
        with autocast():
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=num_beams,
                pad_token_id=pad_id,
                eos_token_id=eos_id,
            )
        new = generated[:, batch["input_ids"].shape[1] :]
        for i, row in zip(idx, new.cpu().tolist()):
            out[i] = _until_eos(row, eos_id)
    return out


def decode(
    model: torch.nn.Module, split: D.EncodedSplit, tokenizer: Any, device, autocast, **kwargs
) -> list[str]:
    """Greedy (or beam) continuations of every prompt of `split` as text, in the split's order."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = generate_ids(model, split, pad_id, tokenizer.eos_token_id, device, autocast, **kwargs)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]


def _until_eos(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos)] if eos is not None and eos in ids else ids


@dataclass
class Scored:
    """One split's decoded texts, corpus metrics and per-input statistics."""

    texts: list[str]
    metrics: dict[str, float]
    stats: dict[str, np.ndarray]  # metric -> (n, k) or (n,) sufficient statistics

    def matrix(self) -> tuple[np.ndarray, dict[str, list[int]]]:
        """The statistics side by side, (n, columns), and each metric's column range."""
        blocks, columns, at = [], {}, 0
        for metric in sorted(self.stats):
            block = np.asarray(self.stats[metric], dtype=np.float64)
            block = block[:, None] if block.ndim == 1 else block
            columns[metric] = [at, at + block.shape[1]]
            blocks.append(block)
            at += block.shape[1]
        return np.concatenate(blocks, axis=1), columns


def score_texts(texts: list[str], references: list[list[str]]) -> Scored:
    return Scored(texts, G.score(texts, references), G.example_stats(texts, references))


def constant_output(train_targets: list[str]) -> str:
    """The floor's one text for every input: the training target of median length."""
    if not train_targets:
        return ""
    order = sorted(range(len(train_targets)), key=lambda i: (len(train_targets[i]), i))
    return train_targets[order[len(order) // 2]]


def baseline(train_targets: list[str], references: dict[str, list[list[str]]]) -> dict[str, Any]:
    """The constant output's metrics on each evaluated split (the record's `baseline`)."""
    text = constant_output(train_targets)
    out: dict[str, Any] = {"kind": "constant output", "value": text}
    for split, refs in references.items():
        out[split] = G.score([text] * len(refs), refs)
    return out


def learning_check(
    primary: str, scored: Scored, refs: list[list[str]], constant: str, history: list[dict]
) -> dict[str, Any]:
    """Did the run learn? On validation: its score against the constant output's, with a
    bootstrap interval over inputs (the corpus metric recomputed on each resample)."""
    collapsed = len(scored.texts) > 1 and len(set(scored.texts)) == 1
    floor = G.example_stats([constant] * len(refs), refs)[primary]
    n = len(refs)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    w = rng.multinomial(n, np.full(n, 1 / n), size=BOOTSTRAP).astype(np.float64)
    draws = G.from_stats(primary, scored.stats[primary], w) - G.from_stats(primary, floor, w)
    ones = np.ones((1, n))
    value = float(
        (G.from_stats(primary, scored.stats[primary], ones) - G.from_stats(primary, floor, ones))[0]
    )
    lo, hi = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
    reasons = []
    if collapsed:
        reasons.append("collapsed: the same text for every validation input")
    elif not lo > 0:
        reasons.append(
            f"validation {primary} gain over the constant output {value:+.3f} [{lo:+.3f}, "
            f"{hi:+.3f}] does not exclude 0"
        )
    losses = [h["loss"] for h in history if "loss" in h and h["loss"] is not None]
    first, last = (losses[0], losses[-1]) if losses else (math.nan, math.nan)
    return {
        "learned": not reasons,
        "collapsed": collapsed,
        "reasons": reasons,
        "first_loss": first,
        "last_loss": last,
        "split": "validation",
        "gain": {
            "metric": primary,
            "value": value,
            "interval": [lo, hi],
            "over": "constant output",
        },
    }
