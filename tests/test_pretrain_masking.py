"""Masked-LM collator statistics, whole-word masking and causal labels (pretrain/collate.py)."""

from __future__ import annotations

import random

import pytest
import torch

from ptft_bench.models.load import resolve_model_path
from ptft_bench.offline import set_offline_defaults
from ptft_bench.pretrain.blocks import pack_blocks, tokenize_documents
from ptft_bench.pretrain.collate import causal_batch, make_mlm_collator, mlm_batch

WORDS = (
    "the film is an unbelievably overwrought melodrama yet its performances remain "
    "astonishingly heartfelt and the cinematography breathtaking despite a screenplay riddled "
    "with contrivances anthropomorphic characterisation and incomprehensible subplots"
).split()


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    set_offline_defaults()
    return AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6"))


@pytest.fixture(scope="module")
def blocks(tokenizer):
    """~130k tokens of packed text (block 128) with offsets, as training sees them."""
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(4000)]
    enc = tokenize_documents(tokenizer, docs, with_offsets=True)
    return pack_blocks(enc, tokenizer, 128, "mlm")


def _mask_all(collator, blocks):
    """Mask every block once; returns (original ids, masked ids, labels)."""
    ids, labels = [], []
    for start in range(0, len(blocks), 64):
        index = list(range(start, min(len(blocks), start + 64)))
        out = mlm_batch(collator, blocks.features(index))
        ids.append(out["input_ids"])
        labels.append(out["labels"])
    return blocks.input_ids, torch.cat(ids), torch.cat(labels)


def test_mlm_selects_15_percent_with_80_10_10_split(tokenizer, blocks):
    assert blocks.input_ids.numel() >= 100_000
    collator = make_mlm_collator(tokenizer, 0.15, whole_word=False, seed=1)
    orig, masked, labels = _mask_all(collator, blocks)
    eligible = ~blocks.special_mask
    selected = labels != -100
    assert abs(selected.sum() / eligible.sum() - 0.15) < 0.005
    # Special tokens are never selected; labels are -100 exactly where not selected and hold
    # the original token where selected.
    assert not (selected & blocks.special_mask).any()
    assert torch.equal(labels[selected], orig[selected])
    n = selected.sum()
    to_mask = (masked == tokenizer.mask_token_id) & selected
    unchanged = (masked == orig) & selected
    random_ = selected & ~to_mask & ~unchanged
    assert abs(to_mask.sum() / n - 0.8) < 0.015
    # A random replacement can draw the original token: count it as "unchanged" (p = 1/30522).
    assert abs(unchanged.sum() / n - 0.1) < 0.015
    assert abs(random_.sum() / n - 0.1) < 0.015
    # Positions not selected are untouched.
    assert torch.equal(masked[~selected], orig[~selected])


def test_padding_and_special_tokens_never_selected(tokenizer):
    """The public collator call on ragged examples pads; padding must never be masked."""
    collator = make_mlm_collator(tokenizer, 0.5, seed=0)
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(400)]
    feats = [tokenizer(t, return_special_tokens_mask=True) for t in texts]
    batch = collator(feats)
    labels, ids = batch["labels"], batch["input_ids"]
    pad = batch["attention_mask"] == 0
    assert pad.any()
    selected = labels != -100
    assert not (selected & pad).any()
    for special in (tokenizer.cls_token_id, tokenizer.sep_token_id):
        assert not (selected & (ids == special)).any()
    assert selected.sum() > 0


def test_whole_word_masking_masks_whole_words(tokenizer, blocks):
    collator = make_mlm_collator(tokenizer, 0.15, whole_word=True, seed=2)
    _, masked, labels = _mask_all(collator, blocks)
    selected = labels != -100
    ids = blocks.input_ids
    # Every "##" continuation is selected exactly when the token before it is.
    cont = torch.tensor(
        [t.startswith("##") for t in tokenizer.convert_ids_to_tokens(range(len(tokenizer)))]
    )
    is_cont = cont[ids]
    # A block can start mid-word (packing cuts anywhere): such a piece right after [CLS] is a word
    # of its own.
    is_cont[:, 0] = False
    is_cont[:, 1:] &= ~blocks.special_mask[:, :-1]
    prev_selected = torch.zeros_like(selected)
    prev_selected[:, 1:] = selected[:, :-1]
    assert torch.equal(selected[is_cont], prev_selected[is_cont])
    assert is_cont.sum() > 1000  # the test text really has multi-piece words
    eligible = ~blocks.special_mask
    assert abs(selected.sum() / eligible.sum() - 0.15) < 0.02  # words, so a looser share
    # 80/10/10 is kept for whole words (transformers alone would force 100% [MASK]).
    share_mask = ((masked == tokenizer.mask_token_id) & selected).sum() / selected.sum()
    assert abs(share_mask - 0.8) < 0.02


def test_masking_is_reproducible_from_seed(tokenizer, blocks):
    a = make_mlm_collator(tokenizer, seed=5)
    b = make_mlm_collator(tokenizer, seed=6)
    b.reseed(5)
    feats = blocks.features(list(range(8)))
    assert torch.equal(mlm_batch(a, feats)["labels"], mlm_batch(b, feats)["labels"])
    assert torch.equal(blocks.input_ids[:8], torch.stack([f["input_ids"] for f in feats]))


def test_causal_labels_are_inputs_shifted():
    ids = torch.arange(20).reshape(2, 10)
    batch = causal_batch(ids)
    assert torch.equal(batch["input_ids"], ids)
    assert torch.equal(batch["labels"][:, :-1], ids[:, 1:])
    assert (batch["labels"][:, -1] == -100).all()
