"""Small named model configs for pretraining from scratch, and tokenizers trained on the corpus.

``bert-tiny`` / ``bert-mini`` are BERT encoders for masked LM (WordPiece tokenizer);
``gpt-tiny`` / ``gpt-mini`` are GPT-2 decoders for causal LM (byte-level BPE tokenizer). Each is
small enough to train for a few hundred steps on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ptft_bench.errors import UserError


@dataclass(frozen=True)
class ScratchConfig:
    """A named from-scratch architecture: family (bert | gpt2), objective and sizes."""

    name: str
    family: str
    objective: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int = 512
    description: str = ""


SCRATCH_CONFIGS: dict[str, ScratchConfig] = {
    c.name: c
    for c in (
        ScratchConfig(
            "bert-tiny", "bert", "mlm", 2, 128, 2, 512, description="2 layers, hidden 128"
        ),
        ScratchConfig(
            "bert-mini", "bert", "mlm", 4, 256, 4, 1024, description="4 layers, hidden 256"
        ),
        ScratchConfig(
            "gpt-tiny", "gpt2", "clm", 2, 128, 4, 512, description="2 layers, hidden 128"
        ),
        ScratchConfig(
            "gpt-mini", "gpt2", "clm", 4, 256, 4, 1024, description="4 layers, hidden 256"
        ),
    )
}


def get_scratch_config(name: str) -> ScratchConfig:
    """The named config, or a UserError listing the known ones."""
    if name not in SCRATCH_CONFIGS:
        raise UserError(
            f"unknown --from-scratch config {name!r}: choose one of {', '.join(SCRATCH_CONFIGS)}"
        )
    return SCRATCH_CONFIGS[name]


def build_scratch_model(cfg: ScratchConfig, tokenizer, seed: int = 0):
    """A randomly initialised model of ``cfg`` sized to ``tokenizer`` (same seed, same weights)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if cfg.family == "bert":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=cfg.hidden,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.intermediate,
            max_position_embeddings=cfg.max_positions,
            pad_token_id=tokenizer.pad_token_id or 0,
        )
        return BertForMaskedLM(config)
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=cfg.hidden,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        n_inner=cfg.intermediate,
        n_positions=cfg.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        # GPT2ForSequenceClassification needs a pad id to find the last token of each row.
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def train_tokenizer(texts: list[str], family: str, vocab_size: int = 8000) -> Any:
    """Train a tokenizer on ``texts``: WordPiece (BERT, uncased) or byte-level BPE (GPT-2).

    Returns a transformers fast tokenizer that ``save_pretrained`` / ``AutoTokenizer`` round-trip.
    """
    if vocab_size < 100:
        raise UserError(f"--vocab-size {vocab_size} is too small: use at least 100")
    if family == "bert":
        return _train_wordpiece(texts, vocab_size)
    if family == "gpt2":
        return _train_byte_level_bpe(texts, vocab_size)
    raise UserError(f"no tokenizer trainer for model family {family!r}")


def _train_wordpiece(texts: list[str], vocab_size: int) -> Any:
    """BERT's uncased WordPiece, with ``[CLS] A [SEP] (B [SEP])`` added around inputs."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        texts, trainer=WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def _train_byte_level_bpe(texts: list[str], vocab_size: int) -> Any:
    """GPT-2's byte-level BPE: every byte is in the alphabet, so nothing is ever unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<pad>",
        model_max_length=1024,
    )
