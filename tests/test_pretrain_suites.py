"""Pretraining as a benchmark axis: the dapt / scratch suites, evaluation-text exclusion, the
head fit, the untrained (--max-steps 0) output and weights carried past the LM class (pooler)."""

from __future__ import annotations

import random

import pytest
import torch

from ptft_bench.config import load_suite
from ptft_bench.pretrain.blocks import pack_blocks, tokenize_documents
from ptft_bench.pretrain.configs import build_scratch_model, get_scratch_config, train_tokenizer
from ptft_bench.pretrain.corpus import Document
from ptft_bench.pretrain.filters import CleanConfig, clean_corpus, text_key
from ptft_bench.pretrain.loop import (
    TrainConfig,
    eval_batches,
    fit_head,
    head_only_parameters,
    train,
)
from ptft_bench.sweep.plan import expand

WORDS = "the a film movie is was good bad great dull plot actor scene story funny slow".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "suite, models, strategies",
    [
        ("dapt", ["minilm-l6", "runs/dapt-rt"], {"full", "head_only", "lora", "bitfit"}),
        (
            "scratch",
            ["runs/scratch-models/bert-tiny-random", "runs/scratch-models/bert-tiny-mlm"],
            {"full", "head_only"},
        ),
    ],
)
def test_pretraining_suites_expand_for_both_models(suite, models, strategies):
    cfg = load_suite(suite)
    assert cfg.models == models
    specs = expand(cfg)
    assert {s.model for s in specs} == set(models)
    for model in models:  # every strategy once per model: a like-for-like comparison
        assert {s.variant.name for s in specs if s.model == model} == strategies
    assert len({s.run_id for s in specs}) == len(specs) == len(models) * len(strategies)


def test_text_key_matches_across_tokenisations():
    raw = "The Rock is destined to be the 21st Century's new ``Conan'' and that's that."
    tokenised = "the rock is destined to be the 21st century's new \" conan \" and that's that ."
    assert text_key(raw) == text_key(tokenised)
    assert text_key(raw) != text_key("The Rock is destined to be great.")


def test_eval_overlap_documents_are_dropped_and_counted():
    docs = [
        Document(t, "t")
        for t in (
            "A quietly moving film about grief and the people it leaves behind.",
            "Too long, too loud and far too pleased with itself to be any fun.",
            "Every frame is gorgeous, and the story never lets the images carry it alone.",
        )
    ]
    exclude = {text_key("too long , too loud and far too pleased with itself to be any fun .")}
    cfg = CleanConfig(heldout=0.0, near_dup_threshold=0.0)
    result = clean_corpus(docs, cfg, exclude)
    assert result.dropped["eval_overlap"] == 1
    assert len(result.train) == 2
    assert all("too loud" not in d.text for d in result.train)
    assert clean_corpus(docs, cfg).dropped["eval_overlap"] == 0


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_mlm():
    tok = train_tokenizer(_texts(300, 0), "bert", vocab_size=120)
    blocks = pack_blocks(tokenize_documents(tok, _texts(300, 0), True), tok, 32, "mlm")
    held = pack_blocks(tokenize_documents(tok, _texts(40, 1), True), tok, 32, "mlm")
    return tok, blocks, held


def test_fit_head_trains_only_the_head_and_restores_flags(tiny_mlm):
    tok, blocks, held = tiny_mlm
    model = build_scratch_model(get_scratch_config("bert-tiny"), tok, seed=0)
    head = {id(p) for p in head_only_parameters(model)}
    assert head and id(model.get_input_embeddings().weight) not in head  # tied decoder stays put
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(max_steps=1, batch_size=4, fit_head_steps=3, fit_head_lr=1e-2, progress=False)
    info = fit_head(model, blocks, eval_batches(held, tok, cfg), tok, cfg, torch.device("cpu"))
    assert info["steps"] == 3 and "loss" in info["fresh_head"]
    for name, p in model.named_parameters():
        assert p.requires_grad
        changed = not torch.equal(p, before[name])
        assert changed == (id(p) in head), name


def test_max_steps_zero_writes_the_initial_model(tiny_mlm, tmp_path):
    tok, blocks, held = tiny_mlm
    model = build_scratch_model(get_scratch_config("bert-tiny"), tok, seed=0)
    ref = build_scratch_model(get_scratch_config("bert-tiny"), tok, seed=0)
    cfg = TrainConfig(max_steps=0, batch_size=4, progress=False)
    state, after = train(model, tok, blocks, held, cfg, tmp_path)
    assert state.step == 0 and after == state.before
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name  # same seed, same weights: step 0 of a pretraining run


def test_weights_the_lm_class_drops_are_carried_to_the_output(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from ptft_bench.pretrain.heads import load_lm
    from ptft_bench.pretrain.pipeline import carry_unused_weights

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    base = BertModel(config)  # like all-MiniLM-L6-v2: encoder + pooler, no MLM head
    base.save_pretrained(tmp_path / "base")
    loaded = load_lm(str(tmp_path / "base"), "mlm")
    assert loaded.new_head and any(k.startswith("pooler.") for k in loaded.unexpected)
    loaded.model.save_pretrained(tmp_path / "out")
    added = carry_unused_weights(loaded, tmp_path / "out")
    assert added == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    clf = BertForSequenceClassification.from_pretrained(tmp_path / "out", num_labels=2)
    torch.testing.assert_close(clf.bert.pooler.dense.weight, base.pooler.dense.weight)
