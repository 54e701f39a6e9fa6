"""Before any run on this machine: how fast it trains this model, measured on the model itself.

A matmul benchmark over-predicted a first-time user's sweep 2-3.5x (27 min estimated, 7.7 min
run on an idle 2-core EPYC): small-encoder training reaches a utilisation no constant captures.
So the estimate's first guess times the real thing, briefly: the sweep's model loaded as a
classifier (its load time is the per-run start-up, with the process's own imports, timed in a
fresh interpreter), two full fine-tuning steps of a small batch after a warm-up step (seconds per
training FLOP, counted by the FLOPs model), and two evaluation passes (seconds per evaluation
FLOP), with the threads one run will have. The result is cached per machine, model and thread
count; runs of the sweep then replace it (`ptft_bench.sweep.estimate`).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import torch

BATCH, WIDTH = 8, 32  # a small step: ~2 s for SmolLM2-135M on one core
IMPORTS = "import torch, transformers, peft, ptft_bench.run.execute"


def measure(model: str, threads: int) -> tuple[np.ndarray, str]:
    """Seconds per (training FLOP, evaluation FLOP, run) of `model` here; raises on failure."""
    from ptft_bench.cost import flops
    from ptft_bench.models.load import load_classifier
    from ptft_bench.models.parts import find_parts

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        t0 = time.perf_counter()
        net = load_classifier(model, 2)
        load = time.perf_counter() - t0
        fm = flops.flops_model(net, parts=find_parts(net))
        vocab = net.get_input_embeddings().num_embeddings
        x = torch.randint(5, vocab, (BATCH, WIDTH))
        batch = {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x[:, 0] % 2}
        train = _train_seconds(net, batch) / flops.train_flops_per_step(fm, BATCH, WIDTH)
        evals = _eval_seconds(net, batch) / (
            flops.prefix_forward_flops(fm, WIDTH, len(fm.stages) - 1, BATCH) * BATCH * WIDTH
        )
    finally:
        torch.set_num_threads(before)
    per_run = load + _import_seconds()
    return np.array([train, evals, per_run]), f"a timed step of {model}"


def _train_seconds(net: torch.nn.Module, batch: dict) -> float:
    net.train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(3):  # the first is a warm-up
        t = time.perf_counter()
        net(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return float(np.mean(times[1:]))


@torch.no_grad()
def _eval_seconds(net: torch.nn.Module, batch: dict) -> float:
    net.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    net(**inputs)
    t = time.perf_counter()
    for _ in range(2):
        net(**inputs)
    return (time.perf_counter() - t) / 2


def _import_seconds() -> float:
    """A fresh worker's start: the interpreter and the libraries a run imports."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, timeout=300)
    return time.perf_counter() - t
