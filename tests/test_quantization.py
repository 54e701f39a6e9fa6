"""Quantized frozen bases (QLoRA): the base stays quantized and untouched while LoRA on it learns,
strategies that train base weights refuse with one line, and costs count the logical model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ptft_bench.models.parts import count_parameters, find_parts
from ptft_bench.strategy.registry import get_strategy, strategy_class
from tests.e2e_fixtures import cli_env, make_csv_task, make_tiny_causal_lm_dir

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="pip install bitsandbytes>=0.50"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_causal_lm_dir(tmp_path_factory.mktemp("q"))


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(1000, 2000, (n, 6), generator=g)
    ids[:, 2] = 3000 + labels  # the label is one token of the input: learnable
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.mark.parametrize("kind", ["nf4", "int8"])
def test_lora_learns_on_a_quantized_base_that_stays_quantized_and_untouched(folder, kind):
    from ptft_bench.models import quantize
    from ptft_bench.models.load import load_classifier

    model = load_classifier(str(folder), 2, quantization=kind)
    assert quantize.kind_of(model) == kind
    stored = {n: w.clone() for n, w in quantize.quantized_layers(model).items()}
    assert stored and all(w.dtype in (torch.uint8, torch.int8) for w in stored.values())
    strategy = get_strategy("lora", r=4)
    model = strategy.apply(model)
    params = [p for g in strategy.param_groups(model, 1e-2) for p in g["params"]]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    batch = _batch()
    model.train()
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::5]
    after = {_plain(n): w for n, w in quantize.quantized_layers(model).items()}
    assert set(after) == set(stored)  # every base layer still quantized, none added or lost
    for name, w in stored.items():
        assert after[name].dtype == w.dtype and torch.equal(after[name], w), f"{name} changed"
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n
                   and "score" not in n)  # fmt: skip


def _plain(name: str) -> str:
    """A layer's name without peft's wrapping (`base_model.model.`, `.base_layer`)."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_a_four_bit_weight_counts_its_logical_parameters(folder):
    from ptft_bench.models.load import load_classifier

    plain, packed = (
        load_classifier(str(folder), 2),
        load_classifier(str(folder), 2, quantization="nf4"),
    )
    assert count_parameters(packed) == count_parameters(plain)
    assert find_parts(packed).num_layers == find_parts(plain).num_layers


@pytest.mark.parametrize(
    "name", ["full", "bitfit", "top_k", "discriminative_lr", "gradual_unfreezing"]
)
def test_strategies_that_train_base_weights_refuse_a_quantized_base(name):
    reason = strategy_class(name).supports_quantization("nf4")
    assert (
        reason
        and "quantized" in reason
        and strategy_class(name).supports_quantization("none") is None
    )


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt_tuning", "adapter", "head_only", "vera"])
def test_strategies_on_a_frozen_base_accept_it(name):
    assert strategy_class(name).supports_quantization("int8") is None


def _run(root, *args):
    cmd = [
        sys.executable,
        "-m",
        "ptft_bench",
        "run",
        "--jobs",
        "0",
        "--quiet",
        "--no-report",
        *args,
    ]
    env = {**cli_env(), "PTFT_CACHE": str(root / "cache")}
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)


def test_a_quantization_axis_runs_what_can_run_and_refuses_the_rest_in_one_line(tmp_path, folder):
    task = f"csv:{make_csv_task(tmp_path)}?text=review&label=sentiment"
    common = ["--tasks", task, "--model", str(folder), "--epochs", "1", "--lrs", "1e-2"]
    res = _run(
        tmp_path, *common, "--strategies", "full", "--quantization", "nf4", "--out", "runs/no"
    )
    assert (
        res.returncode == 2 and res.stderr.count("\n") == 1 and "full on a nf4 base" in res.stderr
    )
    assert not (tmp_path / "runs" / "no").exists()
    res = _run(tmp_path, *common, "--strategies", "lora", "full", "--quantization", "none,nf4",
               "--out", "runs/q")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs/q/records").glob("*.json")]
    got = sorted((r["variant"], r["quantization"], r["status"]) for r in records)
    assert got == [
        ("full", "none", "ok"),
        ("lora(r=8)", "none", "ok"),
        ("lora(r=8) [nf4]", "nf4", "ok"),
    ]
    by = {r["variant"]: r for r in records}
    assert by["lora(r=8) [nf4]"]["run_id"] != by["lora(r=8)"]["run_id"]
    assert by["lora(r=8) [nf4]"]["total_params"] == by["lora(r=8)"]["total_params"]
    assert by["lora(r=8) [nf4]"]["train_flops"] == by["lora(r=8)"]["train_flops"]
    # merging into a 4-bit base re-quantizes: the merged copy serves, a little differently
    diff = by["lora(r=8) [nf4]"]["inference"]["merged_max_logit_difference"]
    assert np.isfinite(diff) and diff >= by["lora(r=8)"]["inference"]["merged_max_logit_difference"]
