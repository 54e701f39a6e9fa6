"""Tiny random sequence-classification models built from configs (no download, no network).

Shared by every strategy test: `tiny_model("bert")` gives a 3-layer, hidden-32 BERT classifier in
a few milliseconds. The five architectures cover the structural variety strategies must handle:
BERT (pooler used by the head), RoBERTa (two-layer head, no pooler), DistilBERT (`transformer.layer`
instead of `encoder.layer`, pre-classifier outside the backbone), ELECTRA (embedding projection
outside the embeddings module) and DeBERTa-v2 (relative-position embeddings shared by all layers).
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    PreTrainedModel,
    RobertaConfig,
)

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the threads'
# spin-waiting made every forward/backward ~25x slower (0.7 s instead of 0.03 s a step).
torch.set_num_threads(1)

ARCHS: list[str] = ["bert", "roberta", "distilbert", "electra", "deberta_v2"]

VOCAB_SIZE = 100
HIDDEN = 32
HEADS = 2
INTERMEDIATE = 64
MAX_POSITIONS = 64


def tiny_config(arch: str, num_labels: int = 2, num_layers: int = 3):
    """The config of a tiny `arch` model (dropout off so that two forwards agree)."""
    common = dict(
        vocab_size=VOCAB_SIZE, max_position_embeddings=MAX_POSITIONS, num_labels=num_labels
    )
    bert_like = dict(
        hidden_size=HIDDEN,
        num_hidden_layers=num_layers,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **common,
    )
    if arch == "bert":
        return BertConfig(**bert_like)
    if arch == "roberta":
        # RoBERTa offsets positions by pad_token_id + 1, so it needs two extra positions.
        return RobertaConfig(
            **{**bert_like, "max_position_embeddings": MAX_POSITIONS + 2}, pad_token_id=1
        )
    if arch == "electra":
        # embedding_size != hidden_size adds `embeddings_project`, a backbone child outside the
        # embeddings module: strategies must still place it somewhere.
        return ElectraConfig(embedding_size=16, **bert_like)
    if arch == "deberta_v2":
        return DebertaV2Config(
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            max_relative_positions=-1,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            pooler_hidden_size=HIDDEN,
            pooler_dropout=0.0,
            type_vocab_size=0,
            **bert_like,
        )
    if arch == "distilbert":
        return DistilBertConfig(
            dim=HIDDEN,
            n_layers=num_layers,
            n_heads=HEADS,
            hidden_dim=INTERMEDIATE,
            dropout=0.0,
            attention_dropout=0.0,
            seq_classif_dropout=0.0,
            **common,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; known: {', '.join(ARCHS)}")


def tiny_model(
    arch: str, num_labels: int = 2, num_layers: int = 3, seed: int = 0
) -> PreTrainedModel:
    """A freshly initialised tiny `arch` sequence-classification model (same seed, same weights)."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(
        tiny_config(arch, num_labels, num_layers)
    )
    return model.eval()


def tiny_batch(batch_size: int = 4, seq_len: int = 8, num_labels: int = 2, seed: int = 0) -> dict:
    """Random token ids (avoiding the special ids 0-2), a full attention mask and labels."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB_SIZE, (batch_size, seq_len), generator=g)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": torch.randint(0, num_labels, (batch_size,), generator=g),
    }
