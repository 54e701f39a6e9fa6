"""Quantized frozen bases (QLoRA and its 8-bit cousin): the base model's Linear layers stored in
4-bit NF4 (Dettmers et al. 2023) or 8-bit integers (LLM.int8(), Dettmers et al. 2022), through
bitsandbytes, the library transformers and peft support for it.

bitsandbytes 0.50 runs both kinds forward and backward on the CPU as on CUDA, so the same path
serves both; on CUDA NF4 computes in bf16, on the CPU in fp32 (the CPU's fast dtype here). Only
the frozen base is quantized: the task head, the LM head and whatever a strategy adds (LoRA
matrices, IA3 vectors, prompts, adapters) stay in full precision. Strategies that train the base
weights themselves (full, BitFit, top-k, the layer-wise ones) cannot train quantized weights and
refuse (`Strategy.supports_quantization`).
"""

from __future__ import annotations

from typing import Any

import torch

QUANTIZATIONS = ("none", "int8", "nf4")
# modules a classifier or causal LM keeps in full precision: its heads (trained or tied)
KEEP_FULL_PRECISION = ["score", "classifier", "pre_classifier", "lm_head", "pooler"]


def check(kind: str) -> None:
    """Raise ValueError for an unknown kind or a missing backend (with what to install)."""
    if kind not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {kind!r}")
    if kind != "none":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ValueError(
                f"quantization {kind} needs bitsandbytes: pip install 'ptft-bench[quant]' (bitsandbytes>=0.50)"
            ) from None


def loading_kwargs(kind: str) -> dict[str, Any]:
    """What `from_pretrained` needs to load a base quantized (empty for "none")."""
    if kind == "none":
        return {}
    from transformers import BitsAndBytesConfig

    check(kind)
    if kind == "nf4":
        compute = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=False,
            llm_int8_skip_modules=KEEP_FULL_PRECISION,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_FULL_PRECISION)
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return {"quantization_config": config, "device_map": {"": device}}


def kind_of(model: torch.nn.Module) -> str:
    """ "nf4", "int8" or "none": what the model's base weights are stored in."""
    base = getattr(model, "get_base_model", lambda: model)()
    if getattr(base, "is_loaded_in_4bit", False):
        return "nf4"
    if getattr(base, "is_loaded_in_8bit", False):
        return "int8"
    return "none"


def quantized_layers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Name -> stored (packed) weight of every bitsandbytes layer: what must stay untouched."""
    import bitsandbytes as bnb

    kinds = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    return {n: m.weight.data for n, m in model.named_modules() if isinstance(m, kinds)}
