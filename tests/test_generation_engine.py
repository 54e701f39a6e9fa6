"""Generation runs, engine side: the loss is on target tokens only, batched greedy decoding is
the model's own greedy search, forgetting of the unchanged base model is exactly 0, the LM head
is not a task head, and strategies that need one refuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptft_bench.models.parts import find_parts
from ptft_bench.run import forgetting
from ptft_bench.run.generation import constant_output, generate_ids
from ptft_bench.strategy.registry import get_strategy, strategy_class
from ptft_bench.tasks import encode as D
from tests.tiny_models import VOCAB_SIZE, tiny_causal_lm


def _pairs(prompts: list[list[int]], targets: list[list[int]]) -> D.EncodedSplit:
    ids = [np.asarray(p + t, dtype=np.int32) for p, t in zip(prompts, targets)]
    labels = [np.asarray([-100] * len(p) + t, dtype=np.int32) for p, t in zip(prompts, targets)]
    return D.EncodedSplit(ids, None, np.zeros(len(ids)), token_labels=labels)


def test_prompt_tokens_carry_no_loss():
    """The model's loss on a collated batch equals a cross-entropy over the target tokens alone,
    computed by hand; perturbing what the model predicts at prompt positions changes nothing."""
    model = tiny_causal_lm("llama")
    prompts, targets = [[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17]]
    batch = D.collate(_pairs(prompts, targets), np.arange(2), pad_id=0)
    loss = model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    by_hand, n = 0.0, 0
    for r, (p, t) in enumerate(zip(prompts, targets)):
        for j, token in enumerate(t):
            position = len(p) + j - 1  # the position that predicts target token j
            by_hand -= torch.log_softmax(logits[r, position], -1)[token].item()
            n += 1
    assert loss.item() == pytest.approx(by_hand / n, rel=1e-5)
    assert (batch["labels"][0, :4] == -100).all() and (batch["labels"][1, :2] == -100).all()
    assert (batch["labels"][0, 7:] == -100).all()  # padding


def test_the_pairs_put_labels_on_the_target_and_its_end_token_only():
    from ptft_bench.models.load import load_tokenizer
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    tok = load_tokenizer("minilm-l6")
    tok.eos_token = "[SEP]"
    split = D._pairs(tok, ["name[The Eagle], food[Thai]"], ["The Eagle serves Thai food."], 128)
    prompt = D._prompt_ids(tok, ["name[The Eagle], food[Thai]"], 128)[0]
    labels, ids = split.token_labels[0], split.input_ids[0]
    assert (labels[: len(prompt)] == -100).all()
    assert (labels[len(prompt) :] == ids[len(prompt) :]).all() and labels[-1] == tok.eos_token_id


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_greedy_decoding_is_the_models_greedy_search(arch):
    """Left-padded batches sorted by length give, per prompt, exactly what `generate` gives on
    that prompt alone (no padding)."""
    model = tiny_causal_lm(arch)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, VOCAB_SIZE, size=n).astype(np.int32) for n in (3, 9, 5, 12, 7)]
    split = D.EncodedSplit(prompts, None, np.arange(5))
    batched = generate_ids(
        model, split, 0, None, torch.device("cpu"), max_new_tokens=6, batch_size=3
    )
    for p, got in zip(prompts, batched):
        x = torch.from_numpy(p.astype(np.int64))[None]
        alone = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=6,
                               do_sample=False, pad_token_id=0)  # fmt: skip
        assert got == alone[0, len(p) :].tolist()


class _CharTokenizer:
    """Text -> ids without a vocabulary file (the general-text slice needs only this)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + (ord(c) % (VOCAB_SIZE - 3)) for c in text]}


def test_forgetting_of_the_unchanged_base_model_is_exactly_zero(tmp_path, monkeypatch):
    text = tmp_path / "general.txt"
    text.write_text("the quick brown fox jumps over the lazy dog . " * 400)
    monkeypatch.setenv("PTFT_GENERAL_TEXT", str(text))
    model = tiny_causal_lm("llama")
    parts = find_parts(model)
    tok = _CharTokenizer()
    before = forgetting.lm_loss(parts, tok, torch.device("cpu"), _nothing)
    after = forgetting.lm_loss(parts, tok, torch.device("cpu"), _nothing)
    result = forgetting.forgetting(before, after, parts)
    assert result["delta"] == 0.0 and before > 0


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_forgetting_uses_the_models_own_loss_and_tied_embeddings(tmp_path, monkeypatch):
    """The general-text loss equals the causal LM's own loss with labels; a decoder classifier
    with tied embeddings, sharing the backbone, gets the same number through them."""
    from transformers import AutoModelForSequenceClassification

    text = tmp_path / "general.txt"
    text.write_text("a b c d e f g h " * 600)
    monkeypatch.setenv("PTFT_GENERAL_TEXT", str(text))
    lm = tiny_causal_lm("llama", tie_word_embeddings=True)
    lm.tie_weights()
    parts = find_parts(lm)
    tok = _CharTokenizer()
    ours = forgetting.lm_loss(parts, tok, torch.device("cpu"), _nothing)
    blocks = torch.from_numpy(forgetting._blocks(str(text), tok))
    with torch.no_grad():
        own = np.mean([lm(input_ids=b[None], labels=b[None]).loss.item() for b in blocks])
    assert ours == pytest.approx(own, rel=1e-5)
    clf = AutoModelForSequenceClassification.from_config(lm.config)
    clf.model.load_state_dict(lm.model.state_dict())
    assert forgetting.lm_loss(find_parts(clf), tok, torch.device("cpu"), _nothing) == pytest.approx(
        ours, rel=1e-5
    )
    assert forgetting.why_not(find_parts(clf)) is None


def test_an_encoder_classifier_has_no_forgetting_number():
    from tests.tiny_models import tiny_model

    parts = find_parts(tiny_model("bert"))
    assert "no language-model head" in forgetting.why_not(parts)
    assert "omitted" in forgetting.forgetting(None, None, parts)


def test_the_lm_head_is_not_a_task_head():
    lm = tiny_causal_lm("llama")
    parts = find_parts(lm)
    assert parts.head == {} and list(parts.lm_head) == ["lm_head"] and parts.is_causal_lm
    model = get_strategy("top_k", k=1).apply(lm)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("lm_head") for n in trainable)
    assert all(n.startswith(("model.layers.1.", "model.norm")) for n in trainable)


@pytest.mark.parametrize("name", ["head_only", "linear_probe"])
def test_strategies_that_need_a_task_head_refuse_generation(name):
    reason = strategy_class(name).supports_task("generation")
    assert reason and "task head" in reason
    assert strategy_class("lora").supports_task("generation") is None


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt_tuning", "prefix_tuning"])
def test_peft_methods_wrap_a_causal_lm_for_generation(name):
    lm = tiny_causal_lm("llama")
    model = get_strategy(name).apply(lm)
    assert type(model).__name__ == "PeftModelForCausalLM"
    x = torch.randint(3, VOCAB_SIZE, (2, 5))
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=3,
                         do_sample=False, pad_token_id=0)  # fmt: skip
    assert out.shape[1] >= 5 + 1


def test_the_constant_output_is_a_fixed_training_target():
    targets = ["a b c", "a", "a b c d e", "a b"]
    assert constant_output(targets) == "a b c"
    assert constant_output(targets) == constant_output(list(targets))
