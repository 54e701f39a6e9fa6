"""peft strategies (strategies/lora.py, strategies/peft_methods.py) on tiny models and MiniLM."""

from __future__ import annotations

import json

import pytest
import torch

from ptft_bench import get_strategy
from ptft_bench.models.parts import find_parts
from ptft_bench.models.projections import find_projections
from ptft_bench.strategy.callbacks import TrainState
from ptft_bench.strategy.registry import StrategyContext
from tests.tiny_models import ARCHS, tiny_batch, tiny_model

SHORTCUTS = [
    "lora",
    "ia3",
    "prompt_tuning",
    "p_tuning",
    "prefix_tuning",
    "adalora",
    "loha",
    "lokr",
    "vera",
    "oft",
]


def _logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _train_steps(strategy, model, batch, steps: int = 2) -> None:
    model.train()
    opt = torch.optim.AdamW(strategy.param_groups(model, lr=1e-2))
    for _ in range(steps):
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("arch", ARCHS)
def test_projections_found_in_every_block(arch):
    roles = find_projections(find_parts(tiny_model(arch)))
    # gated MLPs (SwiGLU: Llama, Mistral, Qwen) have two input projections, gate and up
    gated = arch in ("llama", "mistral", "qwen2", "qwen3")
    expected = {r: 3 * (2 if gated and r == "ffn_in" else 1) for r in roles}
    assert {r: len(v) for r, v in roles.items()} == expected


@pytest.mark.parametrize("name", SHORTCUTS)
def test_shortcut_trains_only_method_and_head(name):
    model = tiny_model("bert")
    strategy = get_strategy(name)
    peft_model = strategy.apply(model)
    peft_model.train()
    peft_model(**tiny_batch()).loss.backward()
    trainable = {n for n, _ in strategy.trainable_named_parameters(peft_model)}
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    assert any("classifier" in n for n in trainable), "the head must train"
    assert not any("pooler" in n or "word_embeddings" in n for n in trainable)
    groups = strategy.param_groups(peft_model, lr=1e-3)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(
        id(p) for _, p in strategy.trainable_named_parameters(peft_model)
    )


def test_lora_counts_on_minilm_match_peft():
    from ptft_bench.models.load import load_classifier
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    strategy = get_strategy("lora", r=8, targets="query,value")
    model = strategy.apply(load_classifier("minilm-l6", 2))
    named = strategy.trainable_named_parameters(model)
    assert sum(p.numel() for n, p in named if "lora_" in n) == 73_728  # 6 x 2 x (384*8 + 8*384)
    assert sum(p.numel() for _, p in named) == model.get_nb_trainable_parameters()[0]
    assert sum(p.numel() for n, p in named if "classifier" in n) == 384 * 2 + 2


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_starts_as_the_base_model(arch):
    batch = tiny_batch()
    base = _logits(tiny_model(arch), batch)
    adapted = get_strategy("lora", targets="all-linear", dropout=0.0).apply(tiny_model(arch))
    torch.testing.assert_close(_logits(adapted, batch), base, rtol=0, atol=0)


def test_lora_all_linear_leaves_the_distilbert_head_alone():
    strategy = get_strategy("lora", targets="all-linear")
    model = strategy.apply(tiny_model("distilbert"))
    lora_modules = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert len(lora_modules) == 3 * 6  # q, k, v, out, lin1, lin2 in each of the 3 blocks
    assert not any("classifier" in n for n in lora_modules)
    trainable = {n for n, _ in strategy.trainable_named_parameters(model)}
    assert any("pre_classifier" in n for n in trainable)


@pytest.mark.parametrize(
    "params", [{"use_rslora": True}, {"use_dora": True}, {"targets": ["ffn_in", "ffn_out"]}]
)
def test_lora_variants_run(params):
    strategy = get_strategy("lora", **params)
    model = strategy.apply(tiny_model("roberta"))
    model.train()
    model(**tiny_batch()).loss.backward()
    assert all(p.grad is not None for _, p in strategy.trainable_named_parameters(model))


@pytest.mark.parametrize(
    "name", ["lora", "ia3", "prompt_tuning", "prefix_tuning", "adalora", "vera"]
)
def test_save_then_load_gives_identical_logits(name):
    batch = tiny_batch()
    strategy = get_strategy(name)
    trained = strategy.apply(tiny_model("bert"))
    _train_steps(strategy, trained, batch)
    state = strategy.trainable_state_dict(trained)
    assert not any("base_model.model" in k or ".default." in k for k in state)
    fresh_strategy = get_strategy(name, **strategy.to_dict()["params"])
    fresh = fresh_strategy.apply(tiny_model("bert"))
    fresh_strategy.load_trainable_state_dict(fresh, state)
    torch.testing.assert_close(_logits(fresh, batch), _logits(trained, batch), rtol=0, atol=0)


def test_load_rejects_a_state_from_another_config():
    strategy = get_strategy("lora", r=4)
    state = strategy.trainable_state_dict(strategy.apply(tiny_model("bert")))
    other = get_strategy("lora", targets="query")
    with pytest.raises(ValueError, match="does not fit"):
        other.load_trainable_state_dict(other.apply(tiny_model("bert")), state)


@pytest.mark.parametrize(
    "name, params, words",
    [
        ("lora", {"r": 0}, ["r must be"]),
        ("lora", {"dropout": 1.5}, ["dropout"]),
        ("lora", {"rank": 8}, ["rank", "allowed"]),
        ("ia3", {"nonsense": 1}, ["nonsense"]),
        ("prompt_tuning", {"num_virtual_token": 5}, ["num_virtual_token", "num_virtual_tokens"]),
        ("peft", {"method": "lorra"}, ["lorra", "'lora'"]),
        ("adalora", {"init_r": "many"}, ["init_r"]),
    ],
)
def test_bad_parameters_are_named(name, params, words):
    with pytest.raises(ValueError) as err:
        get_strategy(name, **params)
    for w in words:
        assert w in str(err.value)


def test_unknown_target_is_named_at_apply():
    with pytest.raises(ValueError, match="'nope'"):
        get_strategy("lora", targets="nope").apply(tiny_model("bert"))


def test_any_peft_method_by_name_and_json_round_trip():
    strategy = get_strategy("peft", method="boft", boft_block_size=4)
    model = strategy.apply(tiny_model("bert"))
    model.train()
    model(**tiny_batch()).loss.backward()
    params = json.loads(json.dumps(strategy.to_dict()))["params"]
    assert params["method"] == "boft" and params["boft_block_size"] == 4
    assert get_strategy("peft", **params).to_dict() == strategy.to_dict()
    shortcut = get_strategy("prompt_tuning", num_virtual_tokens=5)
    again = get_strategy("prompt_tuning", **json.loads(json.dumps(shortcut.to_dict()))["params"])
    assert again.to_dict() == shortcut.to_dict()


def test_prefix_tuning_reports_unsupported_architectures():
    cls = type(get_strategy("prefix_tuning"))
    assert cls.supports(tiny_model("bert")) is None
    assert "past_key_values" in cls.supports(tiny_model("distilbert"))
    with pytest.raises(ValueError, match="past_key_values"):
        get_strategy("prefix_tuning").apply(tiny_model("distilbert"))


def test_adalora_schedule_and_rank_allocation():
    strategy = get_strategy("adalora")
    base = tiny_model("bert")
    model = strategy.apply(base, StrategyContext.of(base, total_steps=10))
    cfg = model.peft_config["default"]
    assert (cfg.total_step, cfg.tinit, cfg.tfinal) == (10, 1, 2)
    (callback,) = strategy.callbacks()
    opt = torch.optim.AdamW(strategy.param_groups(model, lr=1e-2))
    model.train()
    for step in range(1, 11):
        model(**tiny_batch(seed=step)).loss.backward()
        opt.step()
        callback.on_step_end(TrainState(model=model, optimizer=opt, global_step=step))
        opt.zero_grad()
    assert cfg.rank_pattern  # the budget was allocated
    with pytest.raises(RuntimeError, match="zero_grad"):
        callback.on_step_end(TrainState(model=model, optimizer=opt, global_step=11))


def test_wrapping_a_model_prints_no_library_deprecation_after_process_setup():
    """`ptft-bench run` without --quiet printed transformers' FutureWarning (peft reads the
    deprecated `is_gradient_checkpointing`) once per run; the process setup hides that one."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from ptft_bench.offline import set_offline_defaults

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        set_offline_defaults()
        get_peft_model(tiny_model("bert"), LoraConfig(target_modules=["query"]))
        warnings.warn("another library's FutureWarning", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "is_gradient_checkpointing" in m]
    assert "another library's FutureWarning" in messages  # only that one warning is hidden
