"""ptft-bench vs the Hugging Face `Trainer`: the same fine-tune, timed the same way, in one process.

Three sides run the *same* fine-tune (model, train/test rows, strategy, epochs, batch size 32,
learning rate, linear schedule with 6 % warmup, weight decay 0.01, grad-clip 1.0, seed):

  A  `Trainer`, pad-128     as `run_glue.py` sets it up: padding="max_length", max_length=128
  B  `Trainer`, dynamic     the same, tokenised without padding + `DataCollatorWithPadding`
  C  ptft-bench             `ptft_bench.sweep.loop.run_one` (its Python API) on a one-run suite

LoRA on the Trainer side is peft's `LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
lora_dropout=0.1, target_modules=["query", "value"])` (classifier in modules_to_save), the same
as ptft-bench's `lora` strategy; head-only freezes everything but the classifier and the pooler,
which is what ptft-bench's `head_only` trains.

What is timed (the same on every side, wall clock, `time.perf_counter`):
  from the model's `from_pretrained` (done once per run on every side; it is in both) through
  training to the test-set predictions. Trainer: load + strategy + `Trainer(...)` +
  `trainer.train()` + `trainer.predict(test)`. ptft-bench: the whole `run_one(...)` call, which
  loads the model, applies the strategy, trains, evaluates the validation split after every
  epoch (work the Trainer side does not do: eval_strategy="no"), restores the best epoch and
  predicts the test split. Tokenisation is done once per process before timing on every side
  (the Trainer's `dataset.map`, ptft-bench's `encode_task` cache) and reported separately.
  The sides alternate (A, B, C, A, B, C, ...) so that machine noise hits all of them alike;
  the table shows the median over repeats.

Run (the lead runs it on a quiet machine; the full default takes tens of minutes on 2 cores):

    python benchmarks/vs_hf_trainer.py --out benchmarks/results.json
    python benchmarks/vs_hf_trainer.py --quick              # smoke test, about a minute
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CPU benchmark: hide any GPU before torch is imported, so all three sides use the same device.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "minilm-l6"
TASK = "rotten_tomatoes"

# name -> (ptft-bench strategy, params, lr). Learning rates are the quick suite's.
CONFIGS: dict[str, tuple[str, dict[str, Any], float]] = {
    "full": ("full", {}, 5e-5),
    "lora": ("lora", {"r": 8, "alpha": 16, "dropout": 0.1, "targets": ["query", "value"]}, 1e-3),
    "head_only": ("head_only", {}, 3e-3),
}

# Targets printed beside the measured speed-ups: (vs pad-128, vs dynamic); None = no target.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "full": (3.0, 1.3),
    "lora": (3.0, 1.3),
    "head_only@3": (5.0, None),
}

SIDES = ("trainer_pad128", "trainer_dynamic", "ptft_bench")


@dataclass
class Case:
    label: str  # e.g. "full", "head_only@20"
    config: str
    epochs: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs", default="full,lora,head_only", help="comma-separated: full,lora,head_only"
    )
    p.add_argument("--epochs", type=int, help="epochs for full and lora (default 3)")
    p.add_argument("--head-epochs", help="comma-separated epochs for head_only (default 3,20)")
    p.add_argument("--max-train-samples", type=int, help="training rows (default 2000)")
    p.add_argument("--max-eval-samples", type=int, help="caps validation and test (default 1000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--pad128-max-epochs",
        type=int,
        default=None,
        help="skip the Trainer pad-128 side for cases with more epochs than this (it is the "
        "slowest side; e.g. head_only@20 takes ~15 min on 2 cores); the table shows n/a",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr",
        action="append",
        default=[],
        metavar="CONFIG=LR",
        help="override a config's learning rate, e.g. --lr lora=5e-4 (repeatable)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the cores this process may use, os.sched_getaffinity)",
    )
    p.add_argument(
        "--out", type=Path, help="write every raw timing, accuracy and the environment here (JSON)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 200 train / 200 eval examples, 1 epoch everywhere (explicit flags win)",
    )
    args = p.parse_args(argv)
    defaults = {
        "epochs": 3,
        "head_epochs": "3,20",
        "max_train_samples": 2000,
        "max_eval_samples": 1000,
    }
    if args.quick:
        defaults = {
            "epochs": 1,
            "head_epochs": "1",
            "max_train_samples": 200,
            "max_eval_samples": 200,
        }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.config_list = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in args.config_list if c not in CONFIGS]
    if bad:
        p.error(f"unknown config(s) {bad}; choose from {', '.join(CONFIGS)}")
    args.head_epoch_list = [int(x) for x in args.head_epochs.split(",") if x.strip()]
    args.lr_overrides = {}
    for item in args.lr:
        name, eq, value = item.partition("=")
        if not eq or name not in CONFIGS:
            p.error(f"--lr {item}: expected CONFIG=LR with CONFIG in {', '.join(CONFIGS)}")
        args.lr_overrides[name] = float(value)
    return args


def cases(args: argparse.Namespace) -> list[Case]:
    out = []
    for c in args.config_list:
        if c == "head_only":
            out += [Case(f"head_only@{e}", c, e) for e in args.head_epoch_list]
        else:
            out.append(Case(c, c, args.epochs))
    return out


# --------------------------------------------------------------------------------------------
# Trainer side
# --------------------------------------------------------------------------------------------
class TrainerSide:
    """Tokenised datasets (both paddings) built once; one `run` per timed fine-tune."""

    def __init__(self, task, model_path: str, tokenizer) -> None:
        from datasets import Dataset

        self.task = task
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.num_labels = task.spec.num_labels
        t0 = time.perf_counter()
        self.data: dict[str, dict[str, Any]] = {}
        for padding in ("max_length", False):
            sets = {}
            for split in ("train", "test"):
                frame = getattr(task, split)
                ds = Dataset.from_dict(
                    {
                        "text_a": frame["text_a"].astype(str).tolist(),
                        "label": frame["label"].astype(int).tolist(),
                    }
                )
                ds = ds.map(
                    lambda b, padding=padding: tokenizer(
                        b["text_a"], padding=padding, max_length=128, truncation=True
                    ),
                    batched=True,
                    remove_columns=["text_a"],
                )
                sets[split] = ds
            self.data["pad128" if padding else "dynamic"] = sets
        self.tokenise_seconds = time.perf_counter() - t0

    def run(
        self,
        config: str,
        lr: float,
        epochs: int,
        batch_size: int,
        seed: int,
        padding: str,
        threads: int,
    ) -> dict[str, Any]:
        import torch
        from transformers import (
            AutoModelForSequenceClassification,
            DataCollatorWithPadding,
            Trainer,
            TrainingArguments,
            set_seed,
        )
        from transformers.utils import logging as hf_logging

        from ptft_bench.tasks.metrics import compute_metrics

        hf_logging.set_verbosity_error()
        sets = self.data[padding]
        with tempfile.TemporaryDirectory(prefix="vs-trainer-") as tmp:
            t0 = time.perf_counter()
            set_seed(seed)  # run_glue.py seeds before loading the model: the new head is seeded
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, num_labels=self.num_labels
            )
            t_loaded = time.perf_counter()
            if config == "lora":
                from peft import LoraConfig, get_peft_model

                model = get_peft_model(
                    model,
                    LoraConfig(
                        task_type="SEQ_CLS",
                        r=8,
                        lora_alpha=16,
                        lora_dropout=0.1,
                        target_modules=["query", "value"],
                    ),
                )
            elif config == "head_only":
                for name, p in model.named_parameters():
                    p.requires_grad = name.startswith(("classifier.", "bert.pooler."))
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            args = TrainingArguments(
                output_dir=tmp,
                per_device_train_batch_size=batch_size,
                num_train_epochs=epochs,
                learning_rate=lr,
                seed=seed,
                eval_strategy="no",
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                logging_strategy="no",
                lr_scheduler_type="linear",
                warmup_steps=0.06,  # transformers 5: a float in [0, 1) is the warmup ratio
                weight_decay=0.01,
                dataloader_num_workers=0,
                disable_tqdm=True,
            )
            collator = DataCollatorWithPadding(self.tokenizer) if padding == "dynamic" else None
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=sets["train"],
                data_collator=collator,
                processing_class=self.tokenizer,
            )
            t1 = time.perf_counter()
            train_out = trainer.train()
            t2 = time.perf_counter()
            pred = trainer.predict(sets["test"])
            t3 = time.perf_counter()
        torch.set_num_threads(threads)  # the Trainer may touch thread settings; keep them equal
        metrics = compute_metrics(self.task.spec, pred.predictions, pred.label_ids)
        del trainer, model
        gc.collect()
        return {
            "seconds": t3 - t0,
            "load_seconds": t_loaded - t0,
            "setup_seconds": t1 - t_loaded,
            "train_seconds": t2 - t1,
            "eval_seconds": t3 - t2,
            "train_runtime_reported": train_out.metrics.get("train_runtime"),
            "steps": train_out.global_step,
            "trainable_params": trainable,
            "test": metrics,
            "accuracy": metrics.get("accuracy"),
        }


# --------------------------------------------------------------------------------------------
# ptft-bench side
# --------------------------------------------------------------------------------------------
class PtftSide:
    def __init__(self, args: argparse.Namespace) -> None:
        from ptft_bench.config import DataConfig
        from ptft_bench.run.execute import SweepContext

        self.args = args
        data = DataConfig(None, args.max_train_samples, args.max_eval_samples)
        self.ctx = SweepContext(data, "fp32", progress=False)
        self.tmp = tempfile.TemporaryDirectory(prefix="vs-ptft-")

    def suite(self, config: str, lr: float, epochs: int):
        from ptft_bench.config import suite_from_dict

        name, params, _ = CONFIGS[config]
        a = self.args
        return suite_from_dict(
            {
                "name": "vs-hf-trainer",
                "tasks": [TASK],
                "models": [MODEL],
                "seeds": [a.seed],
                "strategies": [{"name": name, "params": params, "lrs": [lr]}],
                "budget": {
                    "epochs": epochs,
                    "batch_size": a.batch_size,
                    "max_length": 128,
                    "warmup_ratio": 0.06,
                    "weight_decay": 0.01,
                },
                "data": {
                    "max_train_samples": a.max_train_samples,
                    "max_eval_samples": a.max_eval_samples,
                },
                "precision": "fp32",
                "output_dir": self.tmp.name,
            },
            {},
        )

    def prepare(self) -> float:
        """Load the task and tokenise it (ptft-bench caches both), outside the timed runs."""
        t0 = time.perf_counter()
        self.ctx.encoded(TASK, MODEL, 128)
        return time.perf_counter() - t0

    def run(self, config: str, lr: float, epochs: int) -> dict[str, Any]:
        from ptft_bench.run.execute import execute
        from ptft_bench.sweep.plan import expand

        suite = self.suite(config, lr, epochs)
        (spec,) = expand(suite)
        t0 = time.perf_counter()
        record = execute(spec, self.ctx).record
        # execute also measures inference latency after training: not part of the fine-tune
        seconds = time.perf_counter() - t0 - (record.inference or {}).get("measure_seconds", 0.0)
        self.ctx.accelerator.free_memory()
        gc.collect()
        test = record.metrics["test"]
        return {
            "seconds": seconds,
            "train_seconds": record.train_seconds,
            "eval_seconds": record.eval_seconds,
            "steps": record.steps,
            "trainable_params": record.trainable_params,
            "padding_share": record.padding_share,
            "best_epoch": record.best_epoch,
            "test": test,
            "accuracy": test.get("accuracy"),
            "run_id": record.run_id,
        }


# --------------------------------------------------------------------------------------------
def environment_info(threads: int) -> dict[str, Any]:
    from ptft_bench.env import describe

    return describe(torch_threads=threads)


def _warm_up(model_path: str, tokenizer) -> None:
    """One forward/backward pass so one-time kernel / thread-pool set-up hits no timed side."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    batch = tokenizer(
        ["a warm-up sentence"] * 32, padding="max_length", max_length=128, return_tensors="pt"
    )
    out = model(**batch, labels=torch.zeros(32, dtype=torch.long))
    out.loss.backward()
    del model


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from ptft_bench.models.load import load_tokenizer, resolve_model_path
    from ptft_bench.offline import quiet_libraries, set_offline_defaults
    from ptft_bench.tasks import load_task

    set_offline_defaults()
    quiet_libraries()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    env = environment_info(threads)
    print(
        f"vs_hf_trainer: {TASK}, {MODEL}, {args.max_train_samples} train / {args.max_eval_samples} test, "
        f"batch {args.batch_size}, {threads} threads, repeats {args.repeats}",
        flush=True,
    )

    # The very rows ptft-bench trains on (same call, same cache) feed the Trainer too.
    task = load_task(
        TASK, max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples
    )
    model_path = resolve_model_path(MODEL)
    tokenizer = load_tokenizer(MODEL)
    trainer_side = TrainerSide(task, model_path, tokenizer)
    ptft = PtftSide(args)
    ptft_tokenise = ptft.prepare()
    _warm_up(model_path, tokenizer)
    print(
        f"tokenised once (untimed): Trainer {trainer_side.tokenise_seconds:.1f} s, "
        f"ptft-bench {ptft_tokenise:.1f} s; train rows {len(task.train)}, test rows {len(task.test)}; "
        f"data fingerprint {task.fingerprint}",
        flush=True,
    )

    raw: list[dict[str, Any]] = []
    for case in cases(args):
        lr = args.lr_overrides.get(case.config, CONFIGS[case.config][2])
        for rep in range(args.repeats):
            for side in SIDES:
                if (
                    side == "trainer_pad128"
                    and args.pad128_max_epochs is not None
                    and case.epochs > args.pad128_max_epochs
                ):
                    continue
                t_wall = time.perf_counter()
                if side == "ptft_bench":
                    res = ptft.run(case.config, lr, case.epochs)
                else:
                    res = trainer_side.run(
                        case.config,
                        lr,
                        case.epochs,
                        args.batch_size,
                        args.seed,
                        "pad128" if side == "trainer_pad128" else "dynamic",
                        threads,
                    )
                torch.set_num_threads(threads)
                res.update(
                    case=case.label,
                    config=case.config,
                    epochs=case.epochs,
                    lr=lr,
                    side=side,
                    repeat=rep,
                    wall_including_bookkeeping=time.perf_counter() - t_wall,
                )
                raw.append(res)
                print(
                    f"  {case.label:<13} rep {rep} {side:<16} {res['seconds']:8.1f} s  "
                    f"acc {_fmt(res['accuracy'], '.4f')}",
                    flush=True,
                )

    summary = summarise(raw, cases(args))
    print()
    print(table(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "what_is_timed": (
                        "wall clock from from_pretrained to test predictions, per fine-tune: Trainer = load + "
                        "strategy + Trainer(...) + trainer.train() + trainer.predict(test); ptft-bench = the "
                        "whole run_one(...) call (load, strategy, train, validation each epoch, best-epoch "
                        "restore, test predictions). Tokenisation once per process, untimed."
                    ),
                    "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
                    "targets": {
                        k: {"vs_pad128": a, "vs_dynamic": b} for k, (a, b) in TARGETS.items()
                    },
                    "tokenise_seconds": {
                        "trainer": trainer_side.tokenise_seconds,
                        "ptft_bench": ptft_tokenise,
                    },
                    "data": {
                        "task": TASK,
                        "model": MODEL,
                        "fingerprint": task.fingerprint,
                        "num_train": len(task.train),
                        "num_test": len(task.test),
                    },
                    "environment": env,
                    "summary": summary,
                    "raw": raw,
                },
                indent=1,
                default=str,
            )
        )
        print(f"\nwrote {args.out}")
    return 0


def summarise(raw: list[dict[str, Any]], case_list: list[Case]) -> list[dict[str, Any]]:
    out = []
    for case in case_list:
        row: dict[str, Any] = {"case": case.label, "epochs": case.epochs}
        for side in SIDES:
            rs = [r for r in raw if r["case"] == case.label and r["side"] == side]
            if not rs:  # side skipped (--pad128-max-epochs)
                row[f"{side}_seconds"] = row[f"{side}_accuracy"] = None
                continue
            row[f"{side}_seconds"] = statistics.median(r["seconds"] for r in rs)
            accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
            row[f"{side}_accuracy"] = statistics.median(accs) if accs else None
        c = row["ptft_bench_seconds"]
        a, b = row["trainer_pad128_seconds"], row["trainer_dynamic_seconds"]
        row["speedup_vs_pad128"] = a / c if c and a is not None else None
        row["speedup_vs_dynamic"] = b / c if c and b is not None else None
        target = TARGETS.get(case.label, (None, None))
        row["target_vs_pad128"], row["target_vs_dynamic"] = target
        row["meets_targets"] = all(
            t is None or s is None or s >= t  # a skipped side (None) is reported as n/a
            for s, t in (
                (row["speedup_vs_pad128"], target[0]),
                (row["speedup_vs_dynamic"], target[1]),
            )
        )
        out.append(row)
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = (
        "config",
        "Trainer pad-128 s",
        "Trainer dynamic s",
        "ptft-bench s",
        "x vs pad-128",
        "x vs dynamic",
        "acc pad-128",
        "acc dynamic",
        "acc ptft-bench",
    )
    rows = [head]
    for r in summary:

        def ratio(key: str, target: float | None, r: dict[str, Any] = r) -> str:
            s = r[key]
            if s is None:
                return "n/a (side skipped)"
            txt = _fmt(s, ".2f") + "x"
            if target is not None:
                txt += (
                    f" (target >={target:g}x {'ok' if s is not None and s >= target else 'MISSED'})"
                )
            return txt

        rows.append(
            (
                r["case"],
                _fmt(r["trainer_pad128_seconds"]),
                _fmt(r["trainer_dynamic_seconds"]),
                _fmt(r["ptft_bench_seconds"]),
                ratio("speedup_vs_pad128", r["target_vs_pad128"]),
                ratio("speedup_vs_dynamic", r["target_vs_dynamic"]),
                _fmt(r["trainer_pad128_accuracy"], ".4f"),
                _fmt(r["trainer_dynamic_accuracy"], ".4f"),
                _fmt(r["ptft_bench_accuracy"], ".4f"),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
