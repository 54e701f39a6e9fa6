"""Tokenise documents and pack them into fixed-length blocks with no padding.

Documents are concatenated into one token stream, each followed by a separator, and the stream is
cut into blocks:

- ``mlm``: each block is ``[CLS] + L-2 stream tokens + [SEP]`` (the shape BERT was pretrained on),
  documents separated by ``[SEP]``;
- ``clm``: each block is ``L`` stream tokens, documents separated by the end-of-text token.

The tail shorter than a block is dropped (and counted) rather than padded, so every position of
every block carries a real token. ``special_mask`` marks positions that masking must never select
(separators, and any token in ``tokenizer.all_special_ids``, which includes ``[UNK]``: predicting
"unknown" teaches nothing). ``offsets`` (character spans within each document, ``(0, 0)`` for
separators) are kept only for whole-word masking, which finds word boundaries from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ptft_bench.errors import UserError


@dataclass
class Encoded:
    """Token ids (and optionally character offsets) of each document, without special tokens."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(len(x) for x in self.ids)


@dataclass
class Blocks:
    """Packed blocks: ``input_ids`` [N, L], ``special_mask`` [N, L] bool, ``offsets`` [N, L, 2]."""

    input_ids: torch.Tensor
    special_mask: torch.Tensor
    offsets: torch.Tensor | None
    stream_tokens: int
    dropped_tail_tokens: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def features(self, index: list[int] | torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Rows as collator features (``input_ids``, ``special_tokens_mask``, ``offset_mapping``)."""
        feats = []
        for i in index:
            f = {"input_ids": self.input_ids[i], "special_tokens_mask": self.special_mask[i].long()}
            if self.offsets is not None:
                f["offset_mapping"] = self.offsets[i]
            feats.append(f)
        return feats


def tokenize_documents(
    tokenizer, texts: list[str], with_offsets: bool = False, batch: int = 1000
) -> Encoded:
    """Tokenise without special tokens or truncation (long documents are cut by packing)."""
    from transformers.utils import logging as hf_logging

    ids: list[list[int]] = []
    offsets: list[list[tuple[int, int]]] | None = [] if with_offsets else None
    verbosity = hf_logging.get_verbosity()
    # "Token indices sequence length is longer than the maximum" is expected: we pack, not truncate.
    hf_logging.set_verbosity_error()
    try:
        for start in range(0, len(texts), batch):
            enc = tokenizer(
                texts[start : start + batch],
                add_special_tokens=False,
                truncation=False,
                return_offsets_mapping=with_offsets,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
            ids.extend(enc["input_ids"])
            if offsets is not None:
                offsets.extend([list(map(tuple, o)) for o in enc["offset_mapping"]])
    finally:
        hf_logging.set_verbosity(verbosity)
    return Encoded(ids, offsets)


def separator_ids(tokenizer, objective: str) -> tuple[int | None, int]:
    """(block start token or None, document separator) for ``objective``."""
    if objective == "mlm":
        cls = (
            tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        )
        sep = (
            tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        )
        if cls is None or sep is None:
            raise UserError(
                "masked-LM packing needs a tokenizer with [CLS]/[SEP] (or bos/eos) tokens"
            )
        return cls, sep
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if sep is None:
        raise UserError("causal-LM packing needs a tokenizer with an end-of-text (eos) token")
    return None, sep


def pack_blocks(encoded: Encoded, tokenizer, block_size: int, objective: str) -> Blocks:
    """Concatenate documents (with separators) and cut full blocks of ``block_size`` tokens."""
    if objective not in ("mlm", "clm"):
        raise UserError(f"unknown objective {objective!r}: use mlm or clm")
    start_id, sep_id = separator_ids(tokenizer, objective)
    body = block_size - (2 if objective == "mlm" else 0)
    if body < 1:
        raise UserError(f"--block-size {block_size} is too small: use at least 8")
    pieces, off_pieces = [], []
    for i, ids in enumerate(encoded.ids):
        pieces.append(np.asarray(ids, dtype=np.int64))
        pieces.append(np.asarray([sep_id], dtype=np.int64))
        if encoded.offsets is not None:
            off_pieces.append(np.asarray(encoded.offsets[i], dtype=np.int64).reshape(-1, 2))
            off_pieces.append(np.zeros((1, 2), dtype=np.int64))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    n_blocks = len(stream) // body
    used = n_blocks * body
    rows = torch.from_numpy(stream[:used].reshape(n_blocks, body).copy())
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids) | {sep_id}))
    special = torch.isin(rows, special_ids)
    offsets = None
    if encoded.offsets is not None:
        offsets = torch.from_numpy(
            np.concatenate(off_pieces)[:used].reshape(n_blocks, body, 2).copy()
        )
    if objective == "mlm":
        rows = torch.cat(
            [torch.full((n_blocks, 1), start_id), rows, torch.full((n_blocks, 1), sep_id)], dim=1
        )
        edge = torch.ones(n_blocks, 1, dtype=torch.bool)
        special = torch.cat([edge, special, edge], dim=1)
        if offsets is not None:
            zero = torch.zeros(n_blocks, 1, 2, dtype=torch.long)
            offsets = torch.cat([zero, offsets, zero], dim=1)
    return Blocks(rows, special, offsets, len(stream), len(stream) - used)
