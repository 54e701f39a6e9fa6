"""The report on generation tasks: the bootstrap kernel recomputes corpus BLEU (chrF, ROUGE-L,
exact match) on each resample exactly as sacrebleu / rouge-score do on the expanded resample; a
generation sweep (records written with RunStore, texts and per-input statistics as a real run
stores them) gets a leaderboard ranked by BLEU with intervals, an answer, example generations
(escaped), generation cost and forgetting; classification reports show forgetting or why not.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptft_bench.records.record import RunRecord
from ptft_bench.records.store import RunStore
from ptft_bench.report import build, write_report
from ptft_bench.report.sections.cost import cost_section
from ptft_bench.report.sections.generations import generations_sections, literal
from ptft_bench.report.stats import significance as sig
from ptft_bench.tasks import generation_metrics as G

# ---- the kernel against sacrebleu and rouge-score on expanded resamples ---------------------

WORDS = "the a cat dog sat ran on under mat rug quickly slowly red blue".split()


def _corpus(rng: np.random.Generator, n: int) -> tuple[list[str], list[list[str]]]:
    """Hypotheses and 1-3 references per input, sharing words so n-grams match now and then."""
    refs = [
        [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(rng.integers(1, 4))]
        for _ in range(n)
    ]
    hyps = []
    for r in refs:
        words = r[0].split()
        keep = rng.random(len(words)) < 0.7
        hyps.append(" ".join(w for w, k in zip(words, keep) if k) or "the")
    hyps[3] = refs[3][0]  # an exact match
    return hyps, refs


def _plain(metric: str, hyps: list[str], refs: list[list[str]]) -> float:
    """The corpus metric by sacrebleu / rouge-score themselves, not by our statistics."""
    import sacrebleu
    from rouge_score.rouge_scorer import RougeScorer

    streams = G.reference_streams(refs)
    if metric == "bleu":
        return sacrebleu.corpus_bleu(hyps, streams).score / 100
    if metric == "chrf":
        return sacrebleu.corpus_chrf(hyps, streams).score / 100
    if metric == "rouge_l":
        scorer = RougeScorer(["rougeL"])
        return float(
            np.mean([scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)])
        )
    return float(
        np.mean([G.normalize(h) in {G.normalize(x) for x in r} for h, r in zip(hyps, refs)])
    )


def _stats_block(hyps, refs, metric) -> np.ndarray:
    """One run's (n, k) statistics of ``metric``, as the report slices them from the stored matrix."""
    block = np.asarray(G.example_stats(hyps, refs, [metric])[metric], dtype=np.float32)
    return block[:, None] if block.ndim == 1 else block


@pytest.mark.parametrize("metric", G.GENERATION_METRICS)
def test_the_kernel_is_the_corpus_metric_of_each_expanded_resample(metric):
    rng = np.random.default_rng(11)
    n = 40
    hyps, refs = _corpus(rng, n)
    other, _ = _corpus(np.random.default_rng(12), n)
    runs = np.stack([_stats_block(hyps, refs, metric), _stats_block(other, refs, metric)])
    idx = sig.bootstrap_indices(n, 6, seed=3)
    idx[0] = 5  # one input drawn n times
    idx[1] = np.where(np.arange(n) < n // 2, 3, 7)  # two inputs only (one of them exact)
    got = sig.metric_resampled(metric, runs, np.zeros(n), idx)
    assert got.shape == (2, 6)
    # BLEU and chrF statistics are counts (exact in float32, as stored); ROUGE-L is stored as a
    # float32 per-input value
    tol = 1e-12 if metric in G.SACREBLEU_METRICS else 1e-6
    for s, texts in enumerate((hyps, other)):
        want = [_plain(metric, [texts[i] for i in row], [refs[i] for i in row]) for row in idx]
        np.testing.assert_allclose(got[s], want, rtol=tol, atol=tol)
    # one run, (n, k): the same numbers
    np.testing.assert_allclose(sig.metric_resampled(metric, runs[0], np.zeros(n), idx), got[0])
    # the whole test set is the corpus score
    ones = np.arange(n)[None]
    assert sig.metric_resampled(metric, runs[0], np.zeros(n), ones)[0] == pytest.approx(
        G.score(hyps, refs, [metric])[metric], abs=tol
    )


def test_bleu_on_a_resample_is_not_the_mean_of_sentence_scores():
    """Corpus BLEU pools n-gram counts: averaging per-input BLEU would be a different number."""
    rng = np.random.default_rng(5)
    hyps, refs = _corpus(rng, 30)
    block = _stats_block(hyps, refs, "bleu")
    corpus = sig.metric_resampled("bleu", block, np.zeros(30), np.arange(30)[None])[0]
    sentence = np.mean([G.score([h], [r], ["bleu"])["bleu"] for h, r in zip(hyps, refs)])
    assert corpus == pytest.approx(_plain("bleu", hyps, refs))
    assert abs(corpus - sentence) > 0.01


def test_a_generation_gap_uses_the_seed_rules_of_classification():
    rng = np.random.default_rng(2)
    n = 50
    hyps, refs = _corpus(rng, n)
    good = np.stack([_stats_block(hyps, refs, "bleu")] * 3)
    bad = np.stack(
        [_stats_block(_corpus(np.random.default_rng(s), n)[0], refs, "bleu") for s in (7, 8, 9)]
    )
    g = sig.gap("bleu", good, bad, np.zeros(n), n_boot=300, seed=1)
    assert g.method == sig.BY_SEED_T and g.low <= g.observed <= g.high
    with pytest.raises(ValueError, match="statistics of shape"):
        sig.metric_resampled("bleu", good[0, :, :5][None], np.zeros(n - 1), np.arange(n - 1)[None])


# ---- a generation sweep, written as a real run writes it ------------------------------------

NAMES = ["The Eagle", "Aromi", "Zizzi", "Loch Fyne", "Cotto", "Alimentum", "Bibimbap House",
         "Blue Spice", "Giraffe", "Wildwood", "The Mill", "Strada"]  # fmt: skip
FOODS = ["Thai", "Italian", "French", "Chinese", "Indian", "English"]
AREAS = ["riverside", "city centre", "north", "south", "market square"]
HOSTILE = "<script>alert(1)</script> **bold** `tick` {§answer} | pipe"
# variant: (strategy, probability of writing a reference, trainable params, serving, forgetting)
VARIANTS = {
    "full": ("full", 0.9, 1_000_000, {"model": 10.0}, 0.40),
    "lora(r=8)": ("lora", 0.85, 2_000, {"model": 14.0, "merged": 10.4}, 0.08),
    "ia3": ("ia3", 0.5, 200, {"model": 13.0, "merged": 10.2}, 0.02),
    "prompt_tuning": ("prompt_tuning", 0.1, 640, {"model": 12.0}, 0.0),
}
SEEDS = (0, 1)


def write_generation_task(root: Path) -> str:
    """A data-to-text CSV of 360 inputs with two references each; its task string."""
    path = root / "d2t.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["mr", "ref"])
        for name, food, area in itertools.product(NAMES, FOODS, AREAS):
            mr = f"name[{name}], food[{food}], area[{area}]"
            w.writerow([mr, f"{name} serves {food} food in the {area} area."])
            w.writerow([mr, f"{name} is a {food} restaurant near the {area}."])
    return f"gen:{path}?prompt=mr&target=ref"


def _texts(refs: list[list[str]], quality: float, rng: np.random.Generator) -> list[str]:
    out = []
    for r in refs:
        text = r[int(rng.integers(0, len(r)))]
        if rng.random() > quality:  # a worse text: words dropped, the end cut off
            words = text.split()
            text = " ".join(words[: max(2, len(words) // 2)])
        out.append(text)
    return out


def _inference(serving: dict[str, float], strategy: str) -> dict:
    def one(ttft: float) -> dict:
        return {"time_to_first_token_ms": ttft, "tokens_per_second_batch1": 1000 / ttft,
                "tokens_per_second_batched": 8000 / ttft, "batch_size": 8, "new_tokens": 32}  # fmt: skip

    out = {"model": one(serving["model"]), "same_architecture_as_base": strategy == "full"}
    if "merged" in serving:
        out["merged"] = one(serving["merged"])
        out["merged_max_logit_difference"] = 1e-6
    return out


def write_generation_sweep(root: Path) -> Path:
    """Records, predictions (per-input statistics) and texts of 4 variants x 2 seeds."""
    from ptft_bench.run.generation import baseline, learning_check, score_texts
    from ptft_bench.tasks import load_task

    task = write_generation_task(root)
    data = load_task(task, max_train_samples=1000, max_eval_samples=1000)
    refs = {
        "validation": list(data.validation["references"]),
        "test": list(data.test["references"]),
    }
    floor = baseline(list(data.train["target"]), refs)
    store = RunStore(root / "runs")
    for (variant, (strategy, quality, trainable, serving, forgot)), seed in itertools.product(
        VARIANTS.items(), SEEDS
    ):
        rng = np.random.default_rng([len(variant), seed])
        scored = {split: score_texts(_texts(r, quality, rng), r) for split, r in refs.items()}
        if variant == "prompt_tuning" and seed == 0:  # the worst variant's first seed
            texts = list(scored["test"].texts)
            texts[0] = HOSTILE
            scored["test"] = score_texts(texts, refs["test"])
        history = [{"step": 1, "epoch": 0, "loss": 3.0}, {"step": 2, "epoch": 0, "loss": 2.0}]
        check = learning_check(
            "bleu", scored["validation"], refs["validation"], floor["value"], history
        )
        predictions, columns = {}, {}
        for split, sc in scored.items():
            matrix, columns = sc.matrix()
            predictions[split] = {"pred": matrix, "label": np.zeros(len(matrix)), "texts": sc.texts}
        rec = RunRecord.from_dict(
            {
                "run_id": f"gen-{strategy}-s{seed}",
                "suite": "gen-unit",
                "task": task,
                "model": "tiny-llama",
                "strategy": strategy,
                "strategy_family": strategy,
                "variant": variant,
                "lr": 1e-3,
                "seed": seed,
                "status": "ok",
                "data": {"data_dir": None, "max_train_samples": 1000, "max_eval_samples": 1000},
                "quantization": "none",
                "primary_metric": "bleu",
                "task_info": {
                    "primary_metric": "bleu",
                    "metrics": list(G.GENERATION_METRICS),
                    "num_train": len(data.train),
                    "num_test": len(data.test),
                    "num_validation": len(data.validation),
                    "is_regression": False,
                },  # fmt: skip
                "metrics": {
                    "validation": {**scored["validation"].metrics, "loss": 2.0, "neg_loss": -2.0},
                    "test": scored["test"].metrics,
                },
                "baseline": floor,
                "learning_check": check,
                "history": history,
                "forgetting": {
                    "base_loss": 3.0,
                    "loss": 3.0 + forgot,
                    "delta": forgot,
                    "text": "wikitext2.test.tokens: the first 16 blocks",
                },  # fmt: skip
                "inference": _inference(serving, strategy),
                "generation": {
                    "max_new_tokens": 64,
                    "num_beams": 1,
                    "columns": columns,
                    "constant": floor["value"],
                },  # fmt: skip
                "trainable_params": trainable,
                "total_params": 1_000_000,
                "train_seconds": 10.0,
                "train_flops": 1e12 * (1 + trainable / 1e6),
                "train_tokens_per_second": 1000.0,
                "peak_memory_bytes": 2**28,
            }
        )
        store.write(rec, predictions=predictions)
    return root / "runs"


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    root = tmp_path_factory.mktemp("genreport")
    runs = write_generation_sweep(root)
    return runs, build([runs])


def test_the_leaderboard_ranks_by_bleu_with_intervals(gen):
    runs, data = gen
    lb = data.leaderboard
    assert set(lb["primary_metric"]) == {"bleu"}
    records = [json.loads(p.read_text()) for p in (runs / "records").glob("*.json")]
    for _, r in lb.iterrows():
        mine = [x for x in records if x["variant"] == r["variant"]]
        assert r["test_mean"] == pytest.approx(
            100 * np.mean([x["metrics"]["test"]["bleu"] for x in mine])
        )
        assert {"bleu", "chrf", "rouge_l", "exact_match"} <= set(r["test_metrics"])
    ranked = lb[lb["rank"].notna()].sort_values("rank")
    assert list(ranked["test_mean"]) == sorted(ranked["test_mean"], reverse=True)
    ev = data.evidence.task(lb["task"].iloc[0], "tiny-llama")
    assert ev.metric == "bleu" and ev.comparison is not None and not ev.missing
    assert ev.comparison.best == ranked["variant"].iloc[0]
    for v in ev.samples.runs:
        assert ev.samples.runs[v].shape[1:] == (len(ev.samples.labels), 10)  # BLEU's statistics
        # the bootstrap's observed score is the recorded corpus BLEU
        assert 100 * ev.samples.score(v) == pytest.approx(
            lb.set_index("variant").loc[v, "test_mean"]
        )
        lo, hi = ev.samples.score_interval(v)
        assert lo < ev.samples.score(v) < hi
    worst = ranked["variant"].iloc[-1]
    row = ev.row(worst)
    assert row.to_best.observed < 0 and np.isfinite(row.to_best.sim_low)
    assert row.to_best.method == sig.BY_SEED_T


def test_the_report_answers_shows_examples_cost_and_forgetting(gen, tmp_path):
    runs, data = gen
    paths = write_report([runs], tmp_path / "report")
    md, page = paths["md"].read_text(), paths["html"].read_text()
    # the answer: a pick on the generation task, by BLEU, among the variants that learned
    from ptft_bench.report.recommend import recommendations

    best = next(r for r in recommendations(data.leaderboard, data.evidence) if r.kind == "")
    assert best.variant in {"full", "lora(r=8)"} and best.tasks == (
        data.leaderboard["task"].iloc[0],
    )
    answer = md.split("## 2.")[0]
    assert f"`{best.variant}`" in answer or f"**{best.variant}**" in answer
    assert "nothing to recommend" not in answer
    # example generations: three inputs with references, the best and the worst variant
    part = md.split("Example generations")[1].split("\n## ")[0]
    assert part.count("**Test input ") == 3 and part.count("References: ") == 3
    assert "Best: `full`" in part or "Best: `lora(r=8)`" in part
    assert "Worst: `prompt_tuning`" in part
    assert "**Floor**: constant output (always `" in part
    assert "name[" in part  # the prompt, read again from the task
    # escaped: markup in a generated text is shown, not interpreted, in both renderings
    assert literal(HOSTILE) in part
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{§" not in md
    # generation cost and forgetting
    cost = md.split("Cost")[-1]
    for header in (
        "time to first token",
        "first token × base",
        "tokens/s, batch 1",
        "tokens/s, batched",
    ):
        assert header in cost
    assert "1.04×" in cost  # lora served merged: 10.4 ms over the full model's 10 ms
    assert "Δ loss (forgetting)" in cost and "+0.400" in cost and "+0.080" in cost
    summary = pd.read_csv(paths["csv"])
    for col in ("test_rouge_l_mean_points", "test_chrf_mean_points", "tokens_per_second_batch1",
                "first_token_overhead", "forgetting_delta"):  # fmt: skip
        assert summary[col].notna().all(), col


def test_examples_without_the_task_data_still_show_the_texts(gen, tmp_path):
    runs, data = gen
    lb = data.leaderboard.copy()
    moved = []
    for runs_ in lb["selected_runs"]:
        moved.append(
            [
                (s, _with_task(r, "gen:/nowhere/d2t.csv?prompt=mr&target=ref"), src)
                for s, r, src in runs_
            ]
        )
    lb["selected_runs"] = moved
    secs = generations_sections(lb)
    text = " ".join(b.text for s in secs for b in s.blocks if hasattr(b, "text"))
    items = " ".join(i for s in secs for b in s.blocks for i in getattr(b, "items", []))
    assert "Inputs and references not shown: the task could not be read again" in text
    assert "Best: `" in items and "References" not in items


def test_examples_refuse_references_that_are_not_the_ones_the_run_scored(gen, monkeypatch):
    from ptft_bench.report.sections import generations

    _, data = gen
    prompts, refs = generations.task_inputs(generations.picks_of(data.leaderboard)[0])
    shifted = (prompts[1:] + prompts[:1], refs[1:] + refs[:1])  # same count, other order
    monkeypatch.setattr(generations, "_task_test", lambda *a: shifted)
    text = " ".join(
        b.text
        for s in generations_sections(data.leaderboard)
        for b in s.blocks
        if hasattr(b, "text")
    )
    assert "are not the ones the run scored" in text


def _with_task(record: RunRecord, task: str) -> RunRecord:
    import dataclasses

    return dataclasses.replace(record, task=task)


def test_no_generation_section_without_generation_runs():
    lb = pd.DataFrame({"primary_metric": ["accuracy"], "test_mean": [80.0]})
    assert generations_sections(lb) == []


def test_literal_texts_are_one_code_span():
    assert literal("") == "(empty)"
    assert literal("a\n\n b") == "`a b`"
    out = literal("x ` y ** z {§k}")
    assert out.count("`") == 2 and "**" not in out and "{§" not in out


# ---- forgetting on classification records ----------------------------------------------------


def test_the_cost_section_shows_forgetting_of_decoder_classifiers_and_why_not_otherwise(tmp_path):
    try:
        from test_report import make_records, write_sweep
    except ImportError:
        from tests.test_report import make_records, write_sweep

    records = make_records(seeds=(0,))
    for r in records:
        if r["model"] == "domain":
            r["forgetting"] = {
                "omitted": "BertModel has no language-model head (a classifier encoder)"
            }
        else:
            delta = 0.3 if r["strategy"] == "full" else 0.01
            r["forgetting"] = {"base_loss": 4.0, "loss": 4.0 + delta, "delta": delta, "text": "w"}
    data = build(write_sweep(tmp_path, records), statistics=False)
    sec = cost_section(data.leaderboard)
    tables = [b for b in sec.blocks if getattr(b, "caption", "").startswith("Forgetting:")]
    assert tables and all("`domain`" not in t.caption for t in tables)
    assert any(c.text == "+0.300" for t in tables for row in t.rows for c in row)
    paragraphs = " ".join(b.text for b in sec.blocks if type(b).__name__ == "Paragraph")
    assert (
        "Forgetting omitted (BertModel has no language-model head (a classifier encoder): "
        in paragraphs
    )
