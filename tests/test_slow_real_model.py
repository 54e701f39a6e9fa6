"""Runs on the real pretrained model (all-MiniLM-L6-v2): deselected by default, `pytest -m slow`."""

import json

import pytest

from ptft_bench.cli import main

pytestmark = pytest.mark.slow


def test_full_finetuning_of_minilm_learns_rotten_tomatoes(tmp_path):
    """Full fine-tuning on 1,000 examples lands far above chance (about 4 minutes on 2 cores)."""
    rc = main(
        [
            "run",
            "--strategies",
            "full",
            "--max-train-samples",
            "1000",
            "--epochs",
            "2",
            "--max-eval-samples",
            "500",
            "--out",
            str(tmp_path),
            "--quiet",
            "--no-report",
        ]
    )
    assert rc == 0
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert rec["status"] == "ok"
    assert rec["metrics"]["test"]["accuracy"] > 0.72


def test_head_only_with_cache_matches_uncached_quality(tmp_path):
    """The cached path (eval-mode backbone) and the uncached one reach similar accuracy."""
    accs = {}
    for mode in ("auto", "off"):
        suite = tmp_path / f"{mode}.toml"
        suite.write_text(
            f'tasks = ["rotten_tomatoes"]\n[data]\nmax_train_samples = 1000\nmax_eval_samples = 500\n'
            f'[budget]\nepochs = 2\nfrozen_cache = "{mode}"\n'
            f'[[strategies]]\nname = "head_only"\nlrs = [3e-3]\n'
        )
        out = tmp_path / mode
        assert (
            main(["run", "--suite", str(suite), "--out", str(out), "--quiet", "--no-report"]) == 0
        )
        (rec,) = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
        assert rec["frozen_cache"]["used"] is (mode == "auto")
        accs[mode] = rec["metrics"]["test"]["accuracy"]
    assert abs(accs["auto"] - accs["off"]) < 0.05
