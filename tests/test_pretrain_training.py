"""Sparse vs full LM loss, exact resume, the output folder, the MiniLM head and CLI errors."""

from __future__ import annotations

import argparse
import json
import random

import pytest
import torch

from ptft_bench.errors import UserError
from ptft_bench.pretrain.blocks import pack_blocks, tokenize_documents
from ptft_bench.pretrain.collate import causal_batch, make_mlm_collator, mlm_batch
from ptft_bench.pretrain.configs import build_scratch_model, get_scratch_config, train_tokenizer
from ptft_bench.pretrain.heads import lm_loss, split_lm
from ptft_bench.pretrain.loop import TrainConfig, train

WORDS = "the a film movie is was good bad great dull plot actor scene story funny slow".split()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models on a shared CPU: one thread avoids OpenMP spinning against other processes.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def texts(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) for _ in range(n)]


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def setup(request):
    family = request.param
    name, objective = ("bert-tiny", "mlm") if family == "bert" else ("gpt-tiny", "clm")
    tok = train_tokenizer(texts(), family, vocab_size=120)
    enc = tokenize_documents(tok, texts(), with_offsets=objective == "mlm")
    blocks = pack_blocks(enc, tok, 32, objective)
    held = pack_blocks(
        tokenize_documents(tok, texts(40, 1), objective == "mlm"), tok, 32, objective
    )
    return name, objective, tok, blocks, held


def test_sparse_projection_loss_equals_full(setup):
    name, objective, tok, blocks, _ = setup
    model = build_scratch_model(get_scratch_config(name), tok, seed=0).eval()
    assert split_lm(model) is not None
    index = list(range(8))
    if objective == "mlm":
        batch = mlm_batch(make_mlm_collator(tok, seed=3), blocks.features(index))
    else:
        batch = causal_batch(blocks.input_ids[index])
    sparse = lm_loss(model, batch, sparse=True)
    full = lm_loss(model, batch, sparse=False)
    torch.testing.assert_close(sparse.loss, full.loss, rtol=1e-6, atol=1e-6)
    assert sparse.num_correct == full.num_correct and sparse.num_targets == full.num_targets
    if objective == "clm":
        # Same as the model's own shifted loss (Hugging Face shifts labels = input_ids inside).
        ref = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        torch.testing.assert_close(sparse.loss, ref, rtol=1e-6, atol=1e-6)
    # Gradients agree too: the sparse path trains the same thing.
    sparse.loss.backward()
    g_sparse = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    lm_loss(model, batch, sparse=False).loss.backward()
    g_full = [p.grad for p in model.parameters() if p.grad is not None]
    for a, b in zip(g_sparse, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_reaches_the_same_weights(setup, tmp_path):
    name, objective, tok, blocks, held = setup
    cfg = TrainConfig(
        objective=objective,
        batch_size=4,
        max_steps=6,
        lr=1e-3,
        warmup_steps=2,
        save_every=2,
        progress=False,
    )

    def fresh():
        return build_scratch_model(get_scratch_config(name), tok, seed=0)  # dropout stays on

    straight = fresh()
    s1, after1 = train(straight, tok, blocks, held, cfg, tmp_path / "a")
    first = fresh()
    train(first, tok, blocks, held, cfg, tmp_path / "b", stop_after=3)
    torch.manual_seed(123)  # disturb every RNG the checkpoint must restore
    random.seed(9)
    resumed = build_scratch_model(get_scratch_config(name), tok, seed=7)
    s2, after2 = train(resumed, tok, blocks, held, cfg, tmp_path / "b", resume=True)
    assert s1.step == s2.step == 6 and s1.tokens == s2.tokens
    w1, w2 = _weights(straight), _weights(resumed)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert after1 == after2 and s1.before == s2.before
    assert [h["loss"] for h in s1.history] == [h["loss"] for h in s2.history]


def test_resume_with_changed_settings_is_refused(setup, tmp_path):
    name, objective, tok, blocks, held = setup
    cfg = TrainConfig(objective=objective, batch_size=4, max_steps=4, progress=False)
    model = build_scratch_model(get_scratch_config(name), tok)
    train(model, tok, blocks, held, cfg, tmp_path, stop_after=2)
    other = TrainConfig(objective=objective, batch_size=8, max_steps=4, progress=False)
    with pytest.raises(UserError, match="settings differ"):
        train(model, tok, blocks, held, other, tmp_path, resume=True)


def _cli_args(**kw) -> argparse.Namespace:
    from ptft_bench.pretrain.cli import add_pretrain_arguments

    parser = argparse.ArgumentParser()
    add_pretrain_arguments(parser)
    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            argv.append(flag)
        elif isinstance(v, list):
            argv += [flag, *v]
        else:
            argv += [flag, str(v)]
    return parser.parse_args(argv)


def test_from_scratch_output_folder_loads_for_classification(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ptft_bench.pretrain.cli import run_pretrain_command

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts(400)))
    out = tmp_path / "out"
    args = _cli_args(
        from_scratch="bert-tiny",
        corpus=[str(corpus)],
        out=out,
        vocab_size=150,
        block_size=32,
        batch_size=4,
        max_steps=3,
        heldout=0.2,
        no_progress=True,
        threads=1,
    )
    assert run_pretrain_command(args) == 0
    record = json.loads((out / "pretrain_record.json").read_text())
    assert record["steps"] == 3 and record["objective"] == "mlm"
    assert {"loss", "perplexity", "masked_accuracy"} <= set(record["before"]) and record["after"]
    assert record["corpus_stats"]["documents_in"] == 400
    assert (out / "data_report.json").exists()
    clf = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    tok = AutoTokenizer.from_pretrained(out)
    logits = clf(**tok(["a good film"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)
    with pytest.raises(UserError, match="--resume"):
        run_pretrain_command(args)  # the folder already holds a run


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(objective="clm", from_scratch="bert-tiny"), "is a mlm model"),
        (dict(whole_word_mask=True, objective="clm", from_scratch="gpt-tiny"), "whole-word"),
        (dict(max_steps=None), "no budget"),
        (dict(heldout=1.5), "heldout"),
    ],
)
def test_cli_bad_input_is_a_user_error(tmp_path, kw, message):
    from ptft_bench.pretrain.cli import run_pretrain_command

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts(50)))
    base = dict(corpus=[str(corpus)], out=tmp_path / "o", max_steps=1, no_progress=True)
    args = _cli_args(**{k: v for k, v in {**base, **kw}.items() if v is not None})
    with pytest.raises(UserError, match=message):
        run_pretrain_command(args)


def test_minilm_gets_a_fresh_head_tied_to_its_embeddings():
    from ptft_bench.models.load import resolve_model_path
    from ptft_bench.offline import set_offline_defaults
    from ptft_bench.pretrain.heads import load_lm

    set_offline_defaults()
    loaded = load_lm(resolve_model_path("minilm-l6"), "mlm", "minilm-l6")
    model = loaded.model
    assert loaded.new_head and loaded.tied
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert "tied to the input word embeddings" in loaded.notes[0]
