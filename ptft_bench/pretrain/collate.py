"""Batches for masked-LM and causal-LM training.

Masked LM uses transformers' ``DataCollatorForLanguageModeling`` (15% of eligible tokens
selected; of those 80% ``[MASK]``, 10% random, 10% unchanged; labels ``-100`` elsewhere). Two
things about it in transformers 5 that matter here (read from its source):

- whole-word masking needs ``offset_mapping`` in the features (word boundaries are gaps between
  character spans) and selects *words* with probability p on their first token, then masks every
  token of a selected word;
- with ``whole_word_mask=True`` its ``__post_init__`` forces ``mask_replace_prob=1`` (all
  ``[MASK]``, no random / unchanged tokens), although ``torch_mask_tokens`` handles 80/10/10 for
  whole words perfectly well. :class:`MLMCollator` restores the requested split after
  ``__post_init__`` so that both modes follow BERT's 80/10/10 recipe.

Masking randomness comes from the collator's own ``torch.Generator``. The training loop reseeds it
from (seed, step) for every batch, so a resumed run masks exactly as an uninterrupted one would.

Causal LM: labels are the inputs shifted left (``labels[:, t] = input_ids[:, t+1]``, last position
``-100``). Unlike Hugging Face's convention (the model shifts), labels here are already aligned
with positions, so one loss function serves both objectives: project hidden states only where
``labels != -100``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from transformers import DataCollatorForLanguageModeling


@dataclass
class MLMCollator(DataCollatorForLanguageModeling):
    """``DataCollatorForLanguageModeling`` that keeps 80/10/10 under whole-word masking too."""

    def __post_init__(self) -> None:
        requested = (self.mask_replace_prob, self.random_replace_prob)
        with warnings.catch_warnings():
            # The parent warns that it overrides the split for whole words; we undo that below.
            warnings.simplefilter("ignore")
            super().__post_init__()
        self.mask_replace_prob, self.random_replace_prob = map(float, requested)

    def reseed(self, seed: int) -> None:
        """Restart the masking generator from ``seed`` (one call per batch in training)."""
        self.generator = torch.Generator().manual_seed(int(seed))


def make_mlm_collator(
    tokenizer,
    probability: float = 0.15,
    whole_word: bool = False,
    seed: int = 0,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
) -> MLMCollator:
    """A masked-LM collator for packed-block features (see :mod:`ptft_bench.pretrain.blocks`)."""
    collator = MLMCollator(
        tokenizer=tokenizer,
        mlm=True,
        whole_word_mask=whole_word,
        mlm_probability=probability,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        seed=seed,
        return_tensors="pt",
    )
    collator.reseed(seed)
    return collator


def mlm_batch(
    collator: MLMCollator, features: list[dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Mask a list of block features into ``input_ids`` / ``labels`` (tensors are not modified)."""
    # The collator masks in place; clone so the packed blocks stay clean for the next epoch.
    feats = [{k: v.clone() for k, v in f.items()} for f in features]
    if not collator.whole_word_mask:
        for f in feats:
            f.pop("offset_mapping", None)
    ids = torch.stack([f["input_ids"] for f in feats])
    special = torch.stack([f["special_tokens_mask"] for f in feats])
    offsets = (
        torch.stack([f["offset_mapping"] for f in feats]) if collator.whole_word_mask else None
    )
    # Blocks are full length, so padding is a no-op: call the masking step directly with the
    # special-token mask from packing (the collator's own fallback would re-derive it per row).
    input_ids, labels = collator.torch_mask_tokens(
        ids, special_tokens_mask=special, offset_mapping=offsets
    )
    return {"input_ids": input_ids, "labels": labels}


def causal_batch(input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token targets aligned with positions: ``labels[:, t] = input_ids[:, t + 1]``."""
    labels = torch.full_like(input_ids, -100)
    labels[:, :-1] = input_ids[:, 1:]
    return {"input_ids": input_ids.clone(), "labels": labels}
