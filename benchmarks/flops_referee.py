"""The FLOPs model against torch's FlopCounterMode on the real all-MiniLM-L6-v2, strategy by strategy.

One training step (forward + backward, loss included; no optimizer step) on a batch of 32
random sequences of 27 tokens is counted by `torch.utils.flop_counter.FlopCounterMode` and
compared with what `ptft_bench.cost.meters` charges for it (`train_flops_per_step`, the number the
run's `FlopsMeter` adds up). With `--old-ref REF` the FLOPs model of `ptft_bench/cost/meters.py` at git
revision REF is shown beside it (per token x positions, as its meter charged a step).

The reference count runs attention in eager mode, so that FlopCounterMode sees the score matmuls.
The last column counts as the issue did (model in eval mode, SDPA attention): without dropout the
CPU runs PyTorch's fused attention kernel, which FlopCounterMode does not count, so that column
leaves the attention scores out.

    python benchmarks/flops_referee.py --old-ref b314000      # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ptft_bench.cost import flops
from ptft_bench.models.load import load_classifier
from ptft_bench.offline import quiet_libraries
from ptft_bench.strategy.registry import get_strategy

STRATEGIES = [
    "full",
    "lora",
    "prompt_tuning",
    "p_tuning",
    "prefix_tuning",
    "head_only",
    "ia3",
    "adapter",
]


def old_cost_module(ref: str):
    """`ptft_bench/cost/meters.py` as it was at git revision `ref`, imported under another name."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(
        ["git", "show", f"{ref}:ptft_bench/cost/meters.py"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "cost_old.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("cost_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_old"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def counted(model: torch.nn.Module, batch: dict, attention: str, train: bool = True) -> int:
    model.set_attn_implementation(attention)
    model.train(train)
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=27)
    ap.add_argument("--old-ref", help="git revision whose ptft_bench/cost/meters.py to show beside")
    ap.add_argument("--strategies", nargs="*", default=STRATEGIES)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    quiet_libraries()
    torch.set_num_threads(1)  # a shared machine; FlopCounterMode counts, it does not time
    old = old_cost_module(args.old_ref) if args.old_ref else None
    b, t = args.batch, args.tokens
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (b, t), generator=g),
        "attention_mask": torch.ones(b, t, dtype=torch.long),
        "labels": torch.randint(0, 2, (b,), generator=g),
    }
    head = f"{'strategy':14s} {'counted':>8s} {'new':>8s} {'new/cnt':>8s}"
    head += f" {'old':>8s} {'old/cnt':>8s}" if old else ""
    print(f"{args.model}, batch {b} x {t} tokens: GFLOP per training step (forward + backward)")
    print(f"{head} {'issue cnt':>9s}")
    for name in args.strategies:
        torch.manual_seed(0)
        model = get_strategy(name).apply(load_classifier(args.model, 2))
        eager = counted(model, batch, "eager") / 1e9
        sdpa = counted(model, batch, "sdpa", train=False) / 1e9
        new = flops.train_flops_per_step(flops.flops_model(model), b, t) / 1e9
        row = f"{name:14s} {eager:8.2f} {new:8.2f} {new / eager:8.3f}"
        if old:
            charged = old.train_flops_per_token(old.flops_model(model), t) * b * t / 1e9
            row += f" {charged:8.2f} {charged / eager:8.3f}"
        print(f"{row} {sdpa:9.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
