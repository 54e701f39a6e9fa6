"""Hugging Face `peft` methods as strategies: the method's modules plus the classification head train.

    get_strategy("ia3")                                        # a shortcut with literature defaults
    get_strategy("prompt_tuning", num_virtual_tokens=50)       # fields of peft's own config class
    get_strategy("peft", method="boft", boft_block_size=4)     # any peft method by name

Target modules are found by structure (`ptft_bench.models.projections`), not by peft's per-architecture
table, so every method gets the same roles ("query", "value", "ffn_out", ...) on every encoder
and decoder (DistilBERT is absent from peft's table; on GPT-2, GPT-NeoX and ModernBERT "query",
"key" and "value" all name the fused q/k/v projection). LoHa, LoKr and OFT cannot wrap GPT-2's
`Conv1D` layers and refuse it (`supports`); prefix tuning refuses a backbone without
`past_key_values` (ModernBERT). On decoders with grouped-query attention peft sizes prefix
tuning's key/value prefixes for the key/value heads. The head (`find_parts(model).head`,
e.g. DistilBERT's `pre_classifier` + `classifier`) is always in `modules_to_save`; a backbone pooler
stays frozen, as in peft's own sequence-classification setup. `lora` lives in `strategies/lora.py`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ptft_bench.models import quantize
from ptft_bench.models.parts import ModelParts, find_parts, is_conv1d
from ptft_bench.models.projections import find_projections, resolve_targets
from ptft_bench.strategy.callbacks import TrainCallback, TrainState
from ptft_bench.strategy.registry import (
    ADDS_LAYERS,
    ADDS_TOKENS,
    ParamInfo,
    Strategy,
    StrategyContext,
    coerce_value,
    list_strategies,
    register_strategy,
    strategy_class,
)

# Fields of peft's configs that this module sets itself (or that make no sense in a benchmark).
_MANAGED = {
    "peft_type", "task_type", "inference_mode", "base_model_name_or_path", "revision",
    "auto_mapping", "target_modules", "modules_to_save", "peft_version",
}  # fmt: skip


# peft methods whose layers wrap only torch's Linear / Conv / Embedding, not transformers'
# `Conv1D` (GPT-2's layers): peft raises "Target module ... Conv1D ... not supported".
_NO_CONV1D = {"loha": "LoHa", "lokr": "LoKr", "oft": "OFT"}


def method_supports(method: str | None, parts: ModelParts) -> str | None:
    """None if peft `method` runs on the model of `parts`, else the reason it cannot."""
    backbone = parts.backbone
    if method == "prefix_tuning":
        if "past_key_values" not in inspect.signature(backbone.forward).parameters:
            return f"prefix tuning needs past_key_values, which {type(backbone).__name__} lacks"
    if method in _NO_CONV1D and any(is_conv1d(m) for b in parts.blocks for m in b.modules()):
        return (
            f"peft's {_NO_CONV1D[method]} cannot wrap the Conv1D layers of "
            f"{type(backbone).__name__} (only Linear / Conv); use lora, adalora, ia3 or vera"
        )
    return None


def peft_config_class(method: str) -> type:
    """peft's config class for a method name such as "lora", "ia3" or "prefix_tuning"."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    by_name = {str(k.value).lower(): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    if method.lower() not in by_name:
        close = difflib.get_close_matches(method.lower(), list(by_name), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown peft method {method!r}.{hint} Known: {', '.join(sorted(by_name))}."
        )
    return by_name[method.lower()]


@dataclass
class PeftStrategyConfig:
    """Parameters of a peft strategy; `options` holds fields of peft's config class."""

    method: str = field(default="lora", metadata={"help": "peft method, e.g. lora, ia3, boft"})
    targets: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "modules to adapt: roles (query, key, value, attn_out, ffn_in, ffn_out), "
            "'all-linear' or module-name suffixes; None = the method's default; ignored by "
            "prompt-learning methods"
        },
    )
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "fields of the peft config class, e.g. r=8"}
    )

    def __post_init__(self) -> None:
        cls = peft_config_class(self.method)
        fields = {f.name for f in dataclasses.fields(cls)} - _MANAGED
        unknown = sorted(set(self.options) - fields)
        if unknown:
            hints = [difflib.get_close_matches(u, list(fields), n=1) for u in unknown]
            said = ", ".join(
                f"{u}" + (f" (did you mean {h[0]}?)" if h else "") for u, h in zip(unknown, hints)
            )
            raise ValueError(f"peft method {self.method!r}: unknown option(s) {said}")
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # some peft configs use hints that do not resolve; skip coercion then
            hints = {}
        self.options = {
            k: coerce_value(v, hints.get(k), f"{self.method}.{k}") for k, v in self.options.items()
        }
        if self.targets is not None and not self.targets:
            raise ValueError(f"peft method {self.method!r}: targets must not be empty")
        # peft's own checks (bad values raise here); AdaLoRA's step count comes later from the loop.
        needs_steps = self.method == "adalora" and "total_step" not in self.options
        self.peft_config(target_modules=None, **({"total_step": 1000} if needs_steps else {}))

    def peft_config(self, target_modules: list[str] | None, **extra: Any) -> Any:
        """peft's config object; peft's validation errors become ValueErrors naming the method."""
        cls = peft_config_class(self.method)
        kwargs = {"task_type": "SEQ_CLS", **self.options, **extra}
        if target_modules is not None:
            kwargs["target_modules"] = target_modules
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"peft method {self.method!r}: {e}") from None


class PeftStrategy(Strategy):
    """A peft method plus the classification head. Subclasses fix `method` and defaults."""

    family = "peft"
    config_class = PeftStrategyConfig
    trains_on_quantized_base = True  # QLoRA: the adapter in full precision on a frozen base
    multi_adapter = True  # the base stays frozen: peft serves several adapters over one base
    serving = ADDS_LAYERS  # unless merged (`mergeable`, set per method) or a prompt method
    default_lrs = (5e-4, 1e-3)
    method: ClassVar[str | None] = None  # fixed by shortcuts; None = taken from the parameters
    defaults: ClassVar[dict[str, Any]] = {}  # our defaults for peft fields (literature values)
    default_targets: ClassVar[tuple[str, ...]] = ("query", "value")

    def __init__(self, **params: Any) -> None:
        super().__init__(**self.normalise_params(params))

    @classmethod
    def normalise_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Flat keywords that are not our own fields are peft options: get_strategy("ia3", x=1)."""
        params = dict(params)
        own = {f.name for f in dataclasses.fields(PeftStrategyConfig)}
        options = {**cls.defaults, **params.pop("options", {})}
        options.update({k: params.pop(k) for k in list(params) if k not in own})
        if cls.method is not None:
            if params.get("method", cls.method) != cls.method:
                raise ValueError(f"{cls.name}: method is fixed to {cls.method!r}")
            params["method"] = cls.method
        return {**params, "options": options}

    @property
    def peft_params(self) -> PeftStrategyConfig:
        """The peft method, targets and peft options this strategy runs."""
        return self.config

    @classmethod
    def param_info(cls) -> list[ParamInfo]:
        """Shortcuts show their own defaults and peft's config class, not the generic fields."""
        if cls.method is None or cls.config_class is not PeftStrategyConfig:  # generic; lora
            return super().param_info()
        from peft import PromptLearningConfig

        info = []
        if not issubclass(peft_config_class(cls.method), PromptLearningConfig):
            info.append(
                ParamInfo(
                    "targets",
                    "list[str]",
                    list(cls.default_targets),
                    "modules to "
                    "adapt (roles query, key, value, attn_out, ffn_in, ffn_out, "
                    "or 'all-linear')",
                )
            )
        info += [
            ParamInfo(k, type(v).__name__, v, "peft config field") for k, v in cls.defaults.items()
        ]
        cfg = peft_config_class(cls.method).__name__
        info.append(ParamInfo("...", "", None, f"any other field of peft.{cfg}"))
        return info

    @classmethod
    def supports(cls, model: nn.Module) -> str | None:
        """None if the method runs on `model`, else the reason it cannot (for test skips)."""
        return method_supports(cls.method, find_parts(model))

    # -- the contract -------------------------------------------------------------------------
    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        from peft import get_peft_model

        context = self.bind(model, context)
        parts = context.parts
        reason = method_supports(self.peft_params.method, parts)
        if reason:
            raise ValueError(f"{self.name}: {reason}")
        peft_cfg = self._build_peft_config(context)
        head = list(parts.head)
        if quantize.kind_of(model) != "none":
            from peft import prepare_model_for_kbit_training

            # QLoRA's preparation: norms in fp32, gradients reach the adapter through frozen
            # quantized layers (no gradient checkpointing: a memory / time trade of its own)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if hasattr(peft_cfg, "modules_to_save"):
            peft_cfg.modules_to_save = list(head)  # a copy: peft appends its own names to it
        wrapped = get_peft_model(model, peft_cfg)
        # Prompt-learning configs have no modules_to_save: train the head in place.
        for name in head:
            head_module = wrapped.base_model.get_submodule(name)
            if not any(p.requires_grad for p in head_module.parameters()):
                head_module.requires_grad_(True)
        return wrapped

    def callbacks(self) -> list[TrainCallback]:
        return [AdaLoraAllocator()] if self.peft_params.method == "adalora" else []

    def _build_peft_config(self, context: StrategyContext) -> Any:
        params, parts = self.peft_params, context.parts
        cfg_cls = peft_config_class(params.method)
        fields = {f.name for f in dataclasses.fields(cfg_cls)}
        extra: dict[str, Any] = {}
        target_modules = None
        if "target_modules" in fields:
            target_modules = resolve_targets(parts, params.targets or self.default_targets)
            if "fan_in_fan_out" in fields and "fan_in_fan_out" not in params.options:
                # GPT-2's Conv1D stores its weight transposed (peft would set this and warn)
                modules = dict(parts.model.named_modules())
                extra["fan_in_fan_out"] = any(is_conv1d(modules[t]) for t in target_modules)
        if "feedforward_modules" in fields and "feedforward_modules" not in params.options:
            ffn = {n for r in ("ffn_in", "ffn_out") for n in find_projections(parts)[r]}
            extra["feedforward_modules"] = [t for t in target_modules or [] if t in ffn]
        if "num_virtual_tokens" in fields:
            prefix = params.method == "prefix_tuning"
            extra.update(self._prompt_dims(parts, prefix, params.options))
        if params.method == "adalora":
            extra.update(self._adalora_schedule(context.total_steps))
        if parts.is_causal_lm:  # a generation task: peft's causal-LM wrapper (prompts, generate)
            extra["task_type"] = "CAUSAL_LM"
        return params.peft_config(target_modules, **extra)

    @staticmethod
    def _prompt_dims(parts: ModelParts, prefix: bool, options: dict[str, Any]) -> dict[str, Any]:
        # peft reads these from config.to_dict(), which misses DistilBERT's aliases (n_layers,
        # dim); and prompts are prepended to the input embeddings, whose width differs from the
        # hidden size in ELECTRA (prefix tuning's keys/values use the hidden size).
        cfg = parts.backbone.config
        embed_dim = parts.model.get_input_embeddings().embedding_dim
        dims = {
            "num_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "token_dim": cfg.hidden_size if prefix else embed_dim,
        }
        return {k: v for k, v in dims.items() if k not in options}

    def _adalora_schedule(self, total_steps: int | None) -> dict[str, Any]:
        # AdaLoRA prunes ranks between tinit and total_step - tfinal. Without a step count from
        # the loop we assume 1000 steps; warm-up 10 % and final 20 % follow the spirit of the
        # paper's schedule (Zhang et al. 2023: no pruning early, budget fixed at the end).
        opts = self.config.options
        total = int(opts.get("total_step") or total_steps or 1000)
        return {
            "total_step": total,
            "tinit": opts.get("tinit", total // 10),
            "tfinal": opts.get("tfinal", total // 5),
        }

    def merged(self, model: nn.Module) -> nn.Module | None:
        """peft's `merge_and_unload` on a copy (LoRA family, IA3, ...); None for prompt methods."""
        config = getattr(model, "active_peft_config", None)
        if config is None or config.is_prompt_learning:
            return None  # not a peft model, or virtual tokens that cannot fold into weights
        try:
            return copy.deepcopy(model).merge_and_unload()
        except (ValueError, NotImplementedError, AttributeError, TypeError):
            return None  # a method peft cannot merge

    # -- saving: names without peft's wrapper segments ---------------------------------------
    def trainable_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Adapter + head tensors, named like `bert.encoder.layer.0...lora_A.weight`."""
        return {
            clean_name(n): p.detach().cpu().clone()
            for n, p in self.trainable_named_parameters(model)
        }

    def load_trainable_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        params = {clean_name(n): p for n, p in self.trainable_named_parameters(model)}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"{self.name}: state does not fit the model (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); apply the same strategy config first"
            )
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(state[n])

    def to_dict(self) -> dict[str, Any]:
        """Flat parameters (peft options beside `targets`), so get_strategy(**params) round-trips."""
        params: dict[str, Any] = {"targets": self.config.targets, **self.config.options}
        if self.method is None:
            params["method"] = self.config.method
        if params["targets"] is not None:
            params["targets"] = list(params["targets"])
        return {"name": self.name, "params": params}


_WRAPPER_SEGMENT = re.compile(r"\.(default|modules_to_save)(?=\.)")


def clean_name(name: str) -> str:
    """peft's parameter name without wrapper segments (`base_model.model.`, `.default`, ...)."""
    name = name.removeprefix("base_model.model.")
    return _WRAPPER_SEGMENT.sub("", name)


class AdaLoraAllocator(TrainCallback):
    """AdaLoRA's rank reallocation; needs gradients, so the loop runs it before zero_grad()."""

    def on_step_end(self, state: TrainState) -> None:
        tuner = state.model.base_model
        if not any(p.grad is not None for n, p in tuner.named_parameters() if "lora_E" in n):
            raise RuntimeError(
                "AdaLoRA's on_step_end needs the step's gradients: call callbacks after "
                "optimizer.step() and before optimizer.zero_grad()"
            )
        tuner.update_and_allocate(state.global_step)


@register_strategy("peft")
class GenericPeft(PeftStrategy):
    description = "Any peft method by name (method=...), with its own config fields, + head."

    @classmethod
    def capabilities(cls, params: dict[str, Any] | None = None) -> dict[str, bool | str]:
        """Those of the shortcut that runs the same method (lora for the default method); for
        a method without one, a prompt method adds tokens and any other adds layers (whether
        peft merges it is not declared here, so it is not claimed)."""
        method = str((params or {}).get("method") or PeftStrategyConfig.method)
        for info in list_strategies():
            shortcut = strategy_class(info.name)
            if shortcut is not cls and getattr(shortcut, "method", None) == method:
                return shortcut.capabilities()
        from peft import PromptLearningConfig

        out = super().capabilities()
        prompt = issubclass(peft_config_class(method), PromptLearningConfig)
        return out | {"serving": ADDS_TOKENS if prompt else ADDS_LAYERS}


# The peft methods under their own names, with our defaults (a variant is a config delta).
# Families are the report's colour groups: weight-update reparametrisations ("lora"), soft
# prompts ("prompt"), activation scaling ("scaling"). Learning rates: IA3 (Liu et al. 2022,
# T-Few) trains scaling vectors at 3e-3; prompt tuning (Lester et al. 2021) used 0.3; P-tuning v2 /
# prefix tuning on encoders (Liu et al. 2022) 5e-3..1e-2; the factorised LoRA relatives sit with
# LoRA at 5e-4..1e-3 (Hu et al. 2021). VeRA trains only scaling vectors over frozen random
# projections, so it needs a larger rank and rate (Kopiczko et al. 2024: r=1024, lr ~1e-2 on GLUE
# with RoBERTa-base).
@register_strategy("ia3")
class Ia3Strategy(PeftStrategy):
    """IA3: learned scaling of keys, values and FFN output, + head."""

    description = __doc__
    family = "scaling"
    method = "ia3"
    mergeable = True  # the scaling vectors fold into the weights they scale
    default_lrs = (3e-3, 1e-2)
    search_lr = (1e-3, 3e-2)
    default_targets = ("key", "value", "ffn_out")
    defaults: ClassVar[dict[str, Any]] = {}


@register_strategy("prompt_tuning")
class PromptTuningStrategy(PeftStrategy):
    """Prompt tuning: 20 trainable soft-prompt tokens, + head."""

    description = __doc__
    family = "prompt"
    method = "prompt_tuning"
    serving = ADDS_TOKENS  # 20 virtual tokens before every input
    default_lrs = (3e-2, 3e-1)
    search_lr = (3e-3, 3e-1)
    defaults: ClassVar[dict[str, Any]] = {"num_virtual_tokens": 20}


@register_strategy("p_tuning")
class PTuningStrategy(PeftStrategy):
    """P-tuning: an MLP prompt encoder for 20 virtual tokens, + head."""

    description = __doc__
    family = "prompt"
    method = "p_tuning"
    serving = ADDS_TOKENS  # 20 virtual tokens (from the prompt encoder) before every input
    default_lrs = (1e-3, 1e-2)
    search_lr = (3e-4, 3e-2)
    defaults: ClassVar[dict[str, Any]] = {"num_virtual_tokens": 20, "encoder_hidden_size": 128}


@register_strategy("prefix_tuning")
class PrefixTuningStrategy(PeftStrategy):
    """Prefix tuning: 20 trainable key/value prefixes in every layer, + head."""

    description = __doc__
    family = "prompt"
    method = "prefix_tuning"
    serving = ADDS_TOKENS  # 20 key/value prefixes in every layer
    default_lrs = (5e-3, 1e-2)
    search_lr = (1e-3, 3e-2)
    defaults: ClassVar[dict[str, Any]] = {"num_virtual_tokens": 20}


@register_strategy("adalora")
class AdaloraStrategy(PeftStrategy):
    """AdaLoRA: SVD-form LoRA whose rank budget is reallocated during training, + head."""

    description = __doc__
    family = "lora"
    method = "adalora"
    mergeable = True  # P diag(E) Q folds into W like LoRA's BA
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)
    defaults: ClassVar[dict[str, Any]] = {"init_r": 12, "target_r": 8, "lora_alpha": 16}


@register_strategy("loha")
class LohaStrategy(PeftStrategy):
    """LoHa: Hadamard product of low-rank factors, + head."""

    description = __doc__
    family = "lora"
    method = "loha"
    mergeable = True
    decoders = "not GPT-2"  # peft's LoHa cannot wrap Conv1D (`supports`)
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)
    defaults: ClassVar[dict[str, Any]] = {"r": 8, "alpha": 8}


@register_strategy("lokr")
class LokrStrategy(PeftStrategy):
    """LoKr: Kronecker-product weight update, + head."""

    description = __doc__
    family = "lora"
    method = "lokr"
    mergeable = True
    decoders = "not GPT-2"  # peft's LoKr cannot wrap Conv1D (`supports`)
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)
    defaults: ClassVar[dict[str, Any]] = {"r": 8, "alpha": 8}


@register_strategy("vera")
class VeraStrategy(PeftStrategy):
    """VeRA: frozen random projections, trained scalings, + head."""

    description = __doc__
    family = "lora"
    method = "vera"
    mergeable = True  # the scaled frozen projections fold into W
    default_lrs = (4e-3, 1e-2)
    search_lr = (1e-3, 3e-2)
    defaults: ClassVar[dict[str, Any]] = {"r": 256}


@register_strategy("oft")
class OftStrategy(PeftStrategy):
    """OFT: orthogonal block rotation of the weights, + head."""

    description = __doc__
    family = "lora"
    method = "oft"
    mergeable = True  # the rotation folds into W
    decoders = "not GPT-2"  # peft's OFT cannot wrap Conv1D (`supports`)
    default_lrs = (5e-4, 1e-3)
    search_lr = (1e-4, 3e-3)
    defaults: ClassVar[dict[str, Any]] = {}
