"""Tokenise once, batch by length, pad per batch.

Tokenisation is cached per (task data, tokenizer, max length) in the process and on disk, so a
sweep tokenises each task once however many strategies, learning rates and seeds it runs.
Batches are padded to their own longest example, and training batches are drawn from buckets of
similar length, which removes most padding on short-text tasks (padding share is reported).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptft_bench import atomic

_MEMORY_CACHE: dict[str, dict[str, EncodedSplit]] = {}


@dataclass
class EncodedSplit:
    """One tokenised split: variable-length token id arrays and the labels.

    Generation tasks: training / validation pairs carry `token_labels` (the target's token ids
    after the prompt, -100 on the prompt: the loss is on the target only), and the inputs to
    decode carry their `references` (one list of texts per input; `input_ids` is the prompt).
    """

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray
    token_labels: list[np.ndarray] | None = None
    references: list[list[str]] | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))

    def __len__(self) -> int:
        return len(self.input_ids)


def cache_dir() -> Path:
    return Path(os.environ.get("PTFT_CACHE", Path.home() / ".cache" / "ptft_bench")) / "tokens"


def tokenizer_fingerprint(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    h = hashlib.sha256(repr((type(tokenizer).__name__, vocab)).encode())
    h.update(repr(getattr(tokenizer, "model_input_names", [])).encode())
    return h.hexdigest()[:16]


def encode_task(task, tokenizer, max_length: int, use_disk: bool = True) -> dict[str, EncodedSplit]:
    """Tokenise train / validation / test of `task` (a TaskData), cached.

    A generation task gives "train" and "validation" (prompt + target pairs, for the loss) and
    "inputs_validation" / "inputs_test" (the prompts to decode, with their references).
    """
    generation = getattr(task.spec, "is_generation", False)
    template = getattr(tokenizer, "chat_template", None) or ""
    kind = f"gen|{hashlib.sha256(template.encode()).hexdigest()[:12]}" if generation else "cls"
    key = hashlib.sha256(
        f"{task.fingerprint}|{tokenizer_fingerprint(tokenizer)}|{max_length}|{kind}".encode()
    ).hexdigest()[:24]
    if key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = cache_dir() / f"{key}.pt"
    if use_disk and path.exists():
        try:
            out = torch.load(path, weights_only=False)
            _MEMORY_CACHE[key] = out
            return out
        except Exception:  # a corrupt cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    if generation:
        out = encode_generation(task, tokenizer, max_length)
    else:
        out = {
            name: encode_frame(getattr(task, name), tokenizer, max_length)
            for name in ("train", "validation", "test")
        }
        # Further test splits (MNLI: "test_mismatched") are scored like `test`.
        for name, frame in task.extra_tests.items():
            out[name] = encode_frame(frame, tokenizer, max_length)
    _MEMORY_CACHE[key] = out
    if use_disk:
        atomic.save_torch(path, out)
    return out


def encode_frame(frame, tokenizer, max_length: int) -> EncodedSplit:
    a = frame["text_a"].astype(str).tolist()
    b = frame["text_b"].astype(str).tolist() if "text_b" in frame.columns else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length, padding=False)
    ids = [np.asarray(x, dtype=np.int32) for x in enc["input_ids"]]
    tt = None
    if "token_type_ids" in enc:
        tt = [np.asarray(x, dtype=np.int8) for x in enc["token_type_ids"]]
    labels = frame["label"].to_numpy()
    labels = labels.astype(np.float32) if labels.dtype.kind == "f" else labels.astype(np.int64)
    return EncodedSplit(ids, tt, labels)


# -- generation ----------------------------------------------------------------------------------
def prompt_text(tokenizer, prompt: str) -> str:
    """The prompt as the model expects it: its chat template where it has one (an instruction-
    tuned model answers its own format), else the prompt and a new line."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt + "\n"


def _prompt_ids(tokenizer, prompts: list[str], max_length: int) -> list[np.ndarray]:
    templated = bool(getattr(tokenizer, "chat_template", None))  # the template has its tokens
    texts = [prompt_text(tokenizer, p) for p in prompts]
    enc = tokenizer(texts, add_special_tokens=not templated, padding=False)["input_ids"]
    # a prompt keeps its end (where the answer starts) if it must be cut
    return [np.asarray(x[-(max_length // 2) :], dtype=np.int32) for x in enc]


def _pairs(tokenizer, prompts: list[str], targets: list[str], max_length: int) -> EncodedSplit:
    eos = tokenizer.eos_token_id
    prompt_ids = _prompt_ids(tokenizer, prompts, max_length)
    target_ids = tokenizer(targets, add_special_tokens=False, padding=False)["input_ids"]
    ids, token_labels = [], []
    for p, t in zip(prompt_ids, target_ids):
        t = np.asarray([*t, *([eos] if eos is not None else [])], dtype=np.int32)
        t = t[: max(1, max_length - len(p))]
        ids.append(np.concatenate([p, t]).astype(np.int32))
        token_labels.append(np.concatenate([np.full(len(p), -100, np.int32), t]))
    return EncodedSplit(ids, None, np.zeros(len(ids), np.int64), token_labels=token_labels)


def encode_generation(task, tokenizer, max_length: int) -> dict[str, EncodedSplit]:
    """Pairs for the loss (every reference of a validation input is a pair) and prompts to decode."""
    out = {
        "train": _pairs(
            tokenizer, list(task.train["prompt"]), list(task.train["target"]), max_length
        )
    }
    val = task.validation
    prompts = [p for p, refs in zip(val["prompt"], val["references"]) for _ in refs]
    targets = [r for refs in val["references"] for r in refs]
    out["validation"] = _pairs(tokenizer, prompts, targets, max_length)
    for name, frame in (("validation", val), ("test", task.test)):
        ids = _prompt_ids(tokenizer, list(frame["prompt"]), max_length)
        refs = [list(r) for r in frame["references"]]
        out[f"inputs_{name}"] = EncodedSplit(ids, None, np.arange(len(ids)), references=refs)
    return out


def collate_prompts(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Prompts padded on the left (generation continues from the last position of each row)."""
    seqs = [split.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = s
        mask[r, width - len(s) :] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def collate(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples `idx` to their own longest length."""
    seqs = [split.input_ids[i] for i in idx]
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if split.token_type_ids is not None:
        tt = np.zeros((len(seqs), width), dtype=np.int64)
        for r, i in enumerate(idx):
            tt[r, : len(split.token_type_ids[i])] = split.token_type_ids[i]
        batch["token_type_ids"] = torch.from_numpy(tt)
    if split.token_labels is not None:  # a generation pair: the loss on the target tokens only
        labels = np.full((len(seqs), width), -100, dtype=np.int64)
        for r, i in enumerate(idx):
            labels[r, : len(split.token_labels[i])] = split.token_labels[i]
        batch["labels"] = torch.from_numpy(labels)
    else:
        batch["labels"] = torch.from_numpy(split.labels[idx])
    return batch


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket_batches: int = 50
) -> list[np.ndarray]:
    """Training batches of similar length: every example exactly once per epoch.

    Shuffle, cut into buckets of `bucket_batches` batches, sort each bucket by length, cut it into
    batches, then shuffle the batches (the same idea as transformers' LengthGroupedSampler, but
    returning whole batches so the batch order is shuffled across buckets too).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * max(1, bucket_batches)
    batches = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def random_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches sorted by length (order does not matter, padding does)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of padded positions over all positions fed to the model."""
    real = sum(int(lengths[b].sum()) for b in batches)
    total = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / total if total else 0.0
