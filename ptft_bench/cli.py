"""`ptft-bench` command line: run, list, report, pretrain.

Precedence: command-line flags > suite file > defaults. Bad input prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ptft_bench.errors import UserError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


_FILE_TASK = re.compile(r"^(csv|tsv|jsonl|json|file|gen):", re.IGNORECASE)


def _tasks(value: str) -> list[str]:
    """Comma-separated task names; a comma inside a file task's options (``csv:PATH?text=a,b``)
    belongs to that task, so such pieces are joined back onto it."""
    out: list[str] = []
    for piece in (p.strip() for p in value.split(",")):
        if not piece:
            continue
        if (
            out
            and _FILE_TASK.match(out[-1])
            and "?" in out[-1]
            and not _FILE_TASK.match(piece)
            and not _is_builtin_task(piece)
        ):
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def _is_builtin_task(name: str) -> bool:
    from ptft_bench.tasks.spec import GENERATION_TASKS, GLUE_TASKS, MOVIE_TASKS

    return any(name.lower() in table for table in (GLUE_TASKS, MOVIE_TASKS, GENERATION_TASKS))


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {value!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptft-bench",
        description="Which fine-tuning strategy for my task and budget, and what does it cost?",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train every strategy of a suite and record the results")
    run.add_argument(
        "--suite",
        default="quick",
        help="bundled suite name or path to a .toml file (default: quick)",
    )
    run.add_argument("--tasks", type=_tasks, help="comma-separated task names (override the suite)")
    run.add_argument(
        "--strategies",
        nargs="+",
        metavar="NAME[:k=v,...]",
        help="strategies to run: the suite's variants of these names, or e.g. lora:r=16,alpha=32",
    )
    run.add_argument("--lrs", type=_floats, help="comma-separated learning rates for every variant")
    run.add_argument(
        "--trials",
        type=int,
        help="tune every strategy with this many trials per (task, model) (Optuna; the "
        "suite's [tuning] otherwise); 0 = untuned, at the listed learning rates",
    )
    run.add_argument("--seeds", type=_ints, help="comma-separated seeds")
    run.add_argument(
        "--model",
        "--models",
        dest="models",
        type=_csv,
        help="model spec(s): minilm-l6 (default), smollm2-135m (a decoder, offline; see "
        "docs/models.md), a local folder, or a hub id (needs PTFT_ONLINE=1)",
    )
    run.add_argument("--epochs", type=int)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--max-length", type=int)
    run.add_argument("--max-train-samples", type=int)
    run.add_argument("--max-eval-samples", type=int)
    run.add_argument(
        "--data-dir",
        help="GLUE folder in the glue_data/ layout (e.g. ../shared/data/glue); for e2e the "
        "shared data folder or its e2e/ folder",
    )
    run.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    run.add_argument(
        "--pooling",
        choices=["auto", "cls", "mean", "last"],
        help="what the head reads: auto (the model's own metadata: mean for sentence-"
        "transformers models such as minilm-l6, last for decoders, else cls), cls, mean, last",
    )
    run.add_argument(
        "--quantization",
        type=_csv,
        metavar="none|int8|nf4[,...]",
        help="store the frozen base quantized (bitsandbytes): nf4 = QLoRA's 4-bit, int8; a "
        "comma list compares them; strategies that train base weights refuse a quantized base",
    )
    run.add_argument(
        "--jobs",
        default="auto",
        help="runs at a time, each in a fresh process: N, or auto (default: one per GPU; on CPU "
        "one per core, 1 thread each); 0 = all runs in this process",
    )
    run.add_argument("--threads", type=int, help="CPU threads per run (default: cores / jobs)")
    run.add_argument("--out", help="run folder (default runs/<suite>)")
    run.add_argument("--retry-failed", action="store_true", help="re-run runs recorded as failed")
    run.add_argument("--shard", help="i/n: run only the i-th of n deterministic slices (0-based)")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    ls = sub.add_parser("list", help="show strategies, tasks and suites")
    ls.add_argument(
        "what", nargs="?", choices=["strategies", "tasks", "suites", "all"], default="all"
    )

    rep = sub.add_parser("report", help="write the report of one or more run folders")
    rep.add_argument("run_dirs", nargs="+", type=Path)
    rep.add_argument("--out", type=Path, help="output folder (default RUN_DIR/report)")
    rep.add_argument(
        "--format", default="md,html,csv", type=_csv, help="comma-separated: md,html,csv"
    )

    pre = sub.add_parser("pretrain", help="masked-LM / causal-LM (continued) pretraining")
    from ptft_bench.pretrain.cli import add_pretrain_arguments

    add_pretrain_arguments(pre)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return {"run": cmd_run, "list": cmd_list, "report": cmd_report, "pretrain": cmd_pretrain}[
            args.command
        ](args)
    except UserError as e:
        print(f"ptft-bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "ptft-bench: interrupted; finished runs are saved, run again to resume", file=sys.stderr
        )
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from ptft_bench.config import load_suite
    from ptft_bench.sweep.plan import make_plan

    overrides = {
        "tasks": args.tasks,
        "strategies": args.strategies,
        "lrs": args.lrs,
        "seeds": args.seeds,
        "models": args.models,
        "precision": args.precision,
        "pooling": args.pooling,
        "quantization": args.quantization,
        "output_dir": args.out,
        "tuning.trials": args.trials,
        "budget.epochs": args.epochs,
        "budget.max_steps": args.max_steps,
        "budget.batch_size": args.batch_size,
        "budget.max_length": args.max_length,
        "data.max_train_samples": args.max_train_samples,
        "data.max_eval_samples": args.max_eval_samples,
        "data.data_dir": args.data_dir,
    }
    if args.quiet:
        from ptft_bench.offline import quiet_libraries

        quiet_libraries()
    suite = load_suite(args.suite, overrides)
    plan = make_plan(suite, args.shard, args.retry_failed)
    from ptft_bench.sweep.loop import run_suite

    jobs = _job_layout(args)
    if args.dry_run:
        print("\n".join(plan.lines(_estimate_line(plan, jobs))))
        return 0

    def announce(line: str) -> None:
        if not args.quiet:
            print(f"ptft-bench: {line}", file=sys.stderr)

    res = run_suite(
        plan,
        progress=not args.quiet,
        write_report_at_end=not args.no_report,
        jobs=jobs,
        announce=announce,
        retry_failed=args.retry_failed,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:  # one summary, from the process that wrote records
        return 0
    print(
        f"suite {suite.name}: {res.planned} runs planned, {res.skipped} already done, "
        f"{res.ok} ok, {res.failed} failed, {res.seconds:.0f} s; records in {res.out / 'records'}"
    )
    _print_summary(res.out)
    return 0


def _estimate_line(plan, jobs) -> str:
    """The dry run's estimate (needs the tasks' token counts: tokenises, trains nothing)."""
    from ptft_bench.run.execute import SweepContext
    from ptft_bench.sweep.estimate import estimate
    from ptft_bench.sweep.loop import calibration_key, plan_work

    if not plan.todo and not plan.studies:
        return ""
    ctx = SweepContext(plan.suite.data, plan.suite.precision, progress=False)
    works = plan_work(plan, ctx)
    guess = estimate(list(works.values()), calibration_key(jobs, ctx), jobs.jobs if jobs else 1)
    return f"{jobs.describe() if jobs else 'in this process'}; {guess.describe()}"


def _job_layout(args: argparse.Namespace):
    """Worker processes for `--jobs`, or None to run in this process (`--jobs 0`, and under
    `accelerate launch`, whose processes train each run together)."""
    from ptft_bench.sweep.workers import layout

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: expected a positive number")
    if str(args.jobs) == "0" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return None
    return layout(args.jobs, args.threads)


def _print_summary(run_dir: Path) -> None:
    from ptft_bench.report import summary_table

    print(summary_table([run_dir]))


def cmd_list(args: argparse.Namespace) -> int:
    from ptft_bench.listing import print_listing

    print_listing(args.what)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    for d in args.run_dirs:
        if not (d / "records").is_dir():
            raise UserError(
                f"{d} has no records/ folder: pass a folder written by `ptft-bench run`"
            )
    bad = sorted(set(args.format) - {"md", "html", "csv"})
    if bad:
        raise UserError(f"--format {','.join(bad)}: allowed formats are md, html, csv")
    from ptft_bench.report import summary_table, write_report

    out = args.out or args.run_dirs[0] / "report"
    written = write_report(list(args.run_dirs), out, formats=set(args.format))
    print(summary_table(list(args.run_dirs)))
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ptft_bench.pretrain.cli import run_pretrain_command

    return run_pretrain_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
