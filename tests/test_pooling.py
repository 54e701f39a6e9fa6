"""Pooling: each mode gives exactly the masked mean / last real token / first token, with
padding on either side; decoders score their last real token (token ids or, under prompt tuning,
embeddings); `auto` follows the model's metadata; the run id changes with pooling; frozen-prefix
caching stays exact; the linear probe equals scikit-learn's own fit."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from ptft_bench.config import suite_from_dict
from ptft_bench.models import pooling
from ptft_bench.models.features import extract, head_linear
from ptft_bench.models.parts import find_parts
from ptft_bench.run import caching
from ptft_bench.strategy.registry import get_strategy
from ptft_bench.sweep.plan import expand
from ptft_bench.tasks import encode as D
from tests.tiny_models import ARCHS, DECODERS, VOCAB_SIZE, tiny_model


def _head_input(model, batch) -> torch.Tensor:
    """What the head's last Linear reads (the classifier of BERT), captured by a hook."""
    found = head_linear(find_parts(model))
    linear = found[1] if not isinstance(found, str) else model.classifier.dense
    seen = []
    hook = linear.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        model(**batch)
    hook.remove()
    return seen[-1]


def _padded_batch(left: bool) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB_SIZE, (3, 7), generator=g)
    lengths = [7, 4, 2]
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        if left:
            mask[r, 7 - n :] = 1
        else:
            mask[r, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    return {"input_ids": ids, "attention_mask": mask}


def _last_hidden(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return find_parts(model).backbone(**batch).last_hidden_state


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
@pytest.mark.parametrize("mode", ["mean", "last", "cls"])
def test_each_pooling_reads_exactly_its_vector(mode, left):
    base = tiny_model("bert").eval()
    batch = _padded_batch(left)
    hidden, mask = _last_hidden(base, batch), batch["attention_mask"]
    expected = []
    for r in range(3):
        rows = hidden[r][mask[r].bool()]
        expected.append({"mean": rows.mean(0), "last": rows[-1], "cls": hidden[r, 0]}[mode])
    expected = torch.stack(expected)
    model = pooling.install(copy.deepcopy(base), mode)
    got = _head_input(model, batch)
    if mode == "cls":  # the model's own head: the pooler's dense + tanh over token 0
        pooler = base.bert.pooler
        expected = pooler.activation(pooler.dense(expected))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_native_pooling_changes_nothing():
    base = tiny_model("bert").eval()
    model = pooling.install(copy.deepcopy(base), "cls")
    batch = _padded_batch(False)
    torch.testing.assert_close(model(**batch).logits, base(**batch).logits)
    assert model.ptft_pooling == "cls" and type(model.bert.pooler) is type(base.bert.pooler)


def test_mean_pooling_bypasses_the_cls_pooler():
    model = pooling.install(tiny_model("bert"), "mean")
    assert isinstance(model.bert.pooler, pooling.FirstToken)
    assert not [n for n, _ in model.named_parameters() if "pooler" in n]


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_pooling_on_every_architecture(arch):
    model = pooling.install(tiny_model(arch).eval(), "mean")
    batch = _padded_batch(False)
    out = model(**batch).logits
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    # the padding does not leak in: a padded example scores like the same example unpadded
    short = {k: v[2:3, :2] for k, v in batch.items()}
    torch.testing.assert_close(model(**short).logits, out[2:3], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
@pytest.mark.parametrize("arch", DECODERS)
def test_decoders_score_the_last_real_token(arch, left):
    """The score is read at the last non-padding token, whichever side the padding is on: by the
    model's own head (from pad_token_id) and by `last` pooling (from the attention mask)."""
    base = tiny_model(arch).eval()
    batch = _padded_batch(left)  # pads are token 0, the tiny decoders' pad_token_id
    hidden, mask = _last_hidden(base, batch), batch["attention_mask"]
    last = torch.stack([hidden[r][mask[r].bool()][-1] for r in range(3)])
    model = pooling.install(copy.deepcopy(base), "last")  # what load_classifier does
    with torch.no_grad():
        got, own, expected = model(**batch).logits, base(**batch).logits, model.score(last)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(own, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt"])
def test_prompt_tuning_on_a_decoder_reads_the_last_real_token(arch):
    """With `inputs_embeds` (prompt tuning) transformers reads the last position, a pad under
    right padding; installed `last` pooling reads the last real token."""

    def prompted(install: bool):
        model = tiny_model(arch)
        model = pooling.install(model, "last") if install else model
        torch.manual_seed(0)
        return get_strategy("prompt_tuning", num_virtual_tokens=4).apply(model).eval()

    batch = _padded_batch(left=False)
    short = {k: v[2:3, :2] for k, v in batch.items()}  # the third example, unpadded
    with torch.no_grad():
        model = prompted(install=True)
        torch.testing.assert_close(model(**short).logits, model(**batch).logits[2:3])
        model = prompted(install=False)
        assert not torch.allclose(model(**short).logits, model(**batch).logits[2:3])


def test_auto_follows_the_model_metadata(tmp_path):
    bert_cfg = tiny_model("bert").config
    assert pooling.resolve("auto", None, bert_cfg)[0] == "cls"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})
    )
    assert pooling.resolve("auto", tmp_path, bert_cfg)[0] == "mean"
    assert pooling.resolve("cls", tmp_path, bert_cfg)[0] == "cls"  # an explicit choice wins
    from transformers import GPT2Config

    assert pooling.resolve("auto", None, GPT2Config(n_layer=1))[0] == "last"
    from transformers import ModernBertConfig

    assert pooling.resolve("auto", None, ModernBertConfig(classifier_pooling="mean"))[0] == "mean"
    with pytest.raises(ValueError, match="pooling must be one of"):
        pooling.resolve("max", None, bert_cfg)


def test_the_default_model_reads_its_mean():
    from ptft_bench.models.load import model_pooling

    mode, why = model_pooling("minilm-l6")
    assert mode == "mean" and "sentence-transformers" in why


def _spec(pooling_mode: str):
    raw = {"name": "t", "tasks": ["rotten_tomatoes"]}
    raw["strategies"] = [{"name": "full", "lrs": [5e-5]}]
    (spec,) = expand(suite_from_dict({**raw, "pooling": pooling_mode}, {}))
    return spec


def test_run_id_changes_with_pooling():
    ids = {m: _spec(m).run_id for m in ("cls", "mean", "last")}
    assert len(set(ids.values())) == 3
    assert _spec("auto").run_id == ids["mean"]  # minilm-l6 declares mean pooling
    # cls keeps the ids runs had before pooling existed (old folders resume)
    assert "pooling" not in _spec("cls").key and _spec("mean").key["pooling"] == "mean"


def _split(n: int = 12, seed: int = 0) -> D.EncodedSplit:
    rng = np.random.default_rng(seed)
    ids = [
        np.concatenate([[2], rng.integers(5, VOCAB_SIZE, size=rng.integers(3, 20)), [3]])
        for _ in range(n)
    ]
    return D.EncodedSplit(ids, None, rng.integers(0, 2, size=n))


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("name,params", [("head_only", {}), ("top_k", {"k": 1})])
def test_cached_logits_equal_uncached_with_mean_pooling(arch, name, params):
    model = pooling.install(tiny_model(arch, num_layers=3), "mean")
    strategy = get_strategy(name, **params)
    model = strategy.apply(model)
    parts = find_parts(model)
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    plan = caching.plan_cache(parts, trainable, changes_trainable_set=False)
    assert isinstance(plan, caching.CachePlan), plan
    splits = {"validation": _split()}
    cache = caching.FrozenPrefixCache(parts, plan, torch.device("cpu"))
    cache.build(splits, pad_id=0, batch_size=5)
    assert caching.max_logit_difference(cache, splits["validation"], "validation", 0, n=12) < 1e-5


@pytest.mark.parametrize(
    "arch,mode,head", [("bert", "mean", "classifier"), ("llama", "last", "score")]
)
def test_linear_probe_equals_scikit_learn_and_chooses_on_validation_only(arch, mode, head):
    """On a decoder the probe gives the bias-free score layer a bias (the intercept)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ptft_bench.tasks import get_spec

    torch.manual_seed(0)
    model = pooling.install(tiny_model(arch), mode)
    strategy = get_strategy("linear_probe", strengths=(0.01, 1.0))
    model = strategy.apply(model)
    linear = head_linear(find_parts(model))[1]
    splits = {name: _split(40, seed) for name, seed in (("train", 1), ("validation", 2))}
    feats = {
        k: (extract(model, linear, s, 0, 8, torch.device("cpu")), s.labels)
        for k, s in splits.items()
    }
    spec = get_spec("rotten_tomatoes")
    info = strategy.fit_features(model, feats, spec)
    assert set(info["validation_by_strength"]) == {0.01, 1.0}
    chosen = info["chosen_strength"]
    # the referee: scikit-learn's own pipeline on the same features, at the chosen strength
    scaler = StandardScaler().fit(feats["train"][0])
    ref = LogisticRegression(C=chosen, max_iter=2000).fit(
        scaler.transform(feats["train"][0]), feats["train"][1]
    )
    test = _split(30, 3)
    x_test = extract(model, linear, test, 0, 8, torch.device("cpu"))
    batch = D.collate(test, np.arange(30), 0)
    batch.pop("labels")
    with torch.no_grad():
        ours = model.eval()(**batch).logits.argmax(-1).numpy()
    np.testing.assert_array_equal(ours, ref.predict(scaler.transform(x_test)))
    # only the head's Linear is trainable (what a checkpoint keeps)
    assert {n for n, _ in strategy.trainable_named_parameters(model)} == {
        f"{head}.weight",
        f"{head}.bias",
    }


def test_linear_probe_refuses_a_head_with_a_hidden_layer():
    reason = get_strategy("linear_probe").supports(tiny_model("roberta"))
    assert reason and "2 Linear layers" in reason
    with pytest.raises(ValueError, match="use head_only"):
        get_strategy("linear_probe").apply(tiny_model("roberta"))


def test_continued_pretraining_keeps_the_base_models_pooling(tmp_path):
    from ptft_bench.pretrain.pipeline import carry_pooling_config

    base, out = tmp_path / "base", tmp_path / "adapted"
    (base / "1_Pooling").mkdir(parents=True)
    (base / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    out.mkdir()
    assert carry_pooling_config(str(base), out)
    assert pooling.sentence_transformers_pooling(out) == "mean"
    assert not carry_pooling_config(str(tmp_path / "no-such-model"), tmp_path / "other")
