"""A generation sweep end to end on a tiny causal LM: records, stored generations whose scores
sacrebleu and rouge-score recompute, forgetting, generation cost, refusals and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptft_bench.tasks import generation_metrics as G
from tests.e2e_fixtures import cli_env, make_generation_task, make_tiny_causal_lm_dir

STRATEGIES = ["full", "lora", "prompt_tuning", "head_only"]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **cli_env(),
        "PTFT_CACHE": str(root / "cache"),
        "PTFT_GENERAL_TEXT": str(root / "wiki.txt"),
    }
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
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    (root / "wiki.txt").write_text("The history of the city begins in the Roman period . " * 300)
    model, task = make_tiny_causal_lm_dir(root), make_generation_task(root)
    res = _cli(root, "--tasks", task, "--model", str(model), "--strategies", *STRATEGIES,
               "--lrs", "1e-2", "--epochs", "1", "--batch-size", "8", "--out", "runs/g")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    out = root / "runs" / "g"
    records = {}
    for p in (out / "records").glob("*.json"):
        r = json.loads(p.read_text())
        records[r["strategy"]] = r
    return out, records


def test_every_strategy_that_fits_a_decoder_runs_and_the_head_ones_refuse(sweep):
    _, records = sweep
    assert sorted(records) == sorted(STRATEGIES)
    for name in ("full", "lora", "prompt_tuning"):
        assert records[name]["status"] == "ok", records[name].get("error")
    assert records["head_only"]["status"] == "failed"
    assert "task head" in records["head_only"]["error"]


def test_stored_scores_are_what_sacrebleu_and_rouge_score_give_for_the_stored_texts(sweep):
    import sacrebleu
    from rouge_score import rouge_scorer

    out, records = sweep
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for name in ("full", "lora", "prompt_tuning"):
        r = records[name]
        texts = json.loads((out / r["predictions"]["texts"]).read_text())
        refs = _references(out, r)
        for split in ("validation", "test"):
            hyps, rs = texts[split], refs[split]
            streams = [[x[i] if i < len(x) else None for x in rs] for i in range(max(map(len, rs)))]
            bleu = sacrebleu.corpus_bleu(hyps, streams).score / 100
            chrf = sacrebleu.corpus_chrf(hyps, streams).score / 100
            rouge = np.mean([scorer.score_multi(x, h)["rougeL"].fmeasure for h, x in zip(hyps, rs)])
            m = r["metrics"][split]
            assert m["bleu"] == pytest.approx(bleu, abs=1e-9)
            assert m["chrf"] == pytest.approx(chrf, abs=1e-9)
            assert m["rouge_l"] == pytest.approx(rouge, abs=1e-9)
            # the per-input statistics the report resamples give the same corpus scores
            with np.load(out / r["predictions"]["file"]) as z:
                stats = z[f"pred_{split}"]
            for metric, (a, b) in r["generation"]["columns"].items():
                block = stats[:, a:b] if b - a > 1 else stats[:, a]
                assert G.from_stats(metric, block, np.ones(len(stats)))[0] == pytest.approx(
                    m[metric], abs=1e-6
                )


def _references(out: Path, record: dict) -> dict[str, list[list[str]]]:
    from ptft_bench.tasks import load_task

    task = load_task(record["task"])
    return {
        "validation": list(task.validation["references"]),
        "test": list(task.test["references"]),
    }


def test_forgetting_generation_cost_and_the_merge_check_are_recorded(sweep):
    _, records = sweep
    for name in ("full", "lora", "prompt_tuning"):
        f = records[name]["forgetting"]
        assert f["delta"] == pytest.approx(f["loss"] - f["base_loss"]) and f["base_loss"] > 0
        model = records[name]["inference"]["model"]
        assert model["time_to_first_token_ms"] > 0 and model["tokens_per_second_batch1"] > 0
    lora = records["lora"]["inference"]
    assert lora["merged_max_logit_difference"] < 1e-4 and "merged" in lora
    assert records["full"]["inference"]["same_architecture_as_base"]
    # the loss was on the target tokens: validation reports it, and it picked the best epoch
    assert records["full"]["metrics"]["validation"]["loss"] > 0


def test_bad_generation_data_gets_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "bad.csv").write_text("mr,ref\nname[A],\n")
    model = make_tiny_causal_lm_dir(tmp_path)
    for task in (
        f"gen:{tmp_path / 'bad.csv'}?prompt=mr&target=text",
        f"gen:{tmp_path / 'nope.csv'}",
    ):
        res = _cli(tmp_path, "--tasks", task, "--model", str(model), "--out", "runs/bad")
        assert res.returncode == 2, res.stderr
        lines = [x for x in res.stderr.strip().splitlines() if x]
        assert len(lines) == 1 and lines[0].startswith("ptft-bench: error:"), res.stderr
        assert not (tmp_path / "runs" / "bad").exists()


def test_an_encoder_cannot_generate(tmp_path):
    from tests.e2e_fixtures import make_tiny_model_dir

    task = make_generation_task(tmp_path)
    res = _cli(tmp_path, "--tasks", task, "--model", str(make_tiny_model_dir(tmp_path)),
               "--strategies", "full", "--out", "runs/enc")  # fmt: skip
    assert res.returncode == 2 and "need a decoder" in res.stderr
    assert not (tmp_path / "runs" / "enc").exists()
