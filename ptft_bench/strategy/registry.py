"""The strategy contract: the `Strategy` base class, its `StrategyContext`, and the registry.

    from ptft_bench import get_strategy
    strategy = get_strategy("lora", r=8, alpha=16)
    model = strategy.apply(model)
    optimizer = torch.optim.AdamW(strategy.param_groups(model, lr=5e-4))

A strategy is one file in the `strategies/` package: a class with a config dataclass, decorated
with `@register_strategy("name")`. Importing `strategies` imports every module in it, so adding a
file is all it takes. Config classes are named after their strategy class (`TopK` ->
`TopKConfig`); a strategy without parameters uses `NoParams`.

The engine hands each run's facts to the strategy through `apply(model, context)`: the model's
parts (found once per run) and the run's step counts (AdaLoRA schedules its rank budget on
them). Code outside the engine may call `apply(model)`; the context is then computed there.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ptft_bench.models.parts import ModelParts, find_parts, unique_named_parameters
from ptft_bench.strategy.callbacks import TrainCallback

# What serving a fine-tune runs (`Strategy.serving`, `Strategy.capabilities`).
MERGES = "merges"  # extra weights that fold into the base: the base model's computation
SAME_MODEL = "same model"  # the base architecture itself, with (some) weights changed
ADDS_LAYERS = "adds layers"  # modules inserted into the blocks, run at every forward
ADDS_TOKENS = "adds tokens"  # virtual tokens / prefixes: every sequence gets longer
SERVING = (MERGES, SAME_MODEL, ADDS_LAYERS, ADDS_TOKENS)


@dataclass
class NoParams:
    """Strategies without parameters use this config."""


@dataclass
class StrategyContext:
    """What the engine knows about a run that a strategy may use, computed once per run.

    Attributes:
        parts: the model's embeddings, blocks and head (`ptft_bench.models.parts`).
        total_steps: optimizer steps the run will take (None outside a training run).
        steps_per_epoch: optimizer steps per epoch (None outside a training run).
    """

    parts: ModelParts
    total_steps: int | None = None
    steps_per_epoch: int | None = None

    @classmethod
    def of(cls, model: nn.Module, **steps: int | None) -> StrategyContext:
        return cls(find_parts(model), **steps)


class Strategy:
    """Base class. Subclasses set `config_class`, `description`, `family` and `default_lrs`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    family: ClassVar[str] = "other"  # colour group in reports
    config_class: ClassVar[type] = NoParams
    default_lrs: ClassVar[tuple[float, ...]] = (5e-5,)
    # Tuning's log-uniform learning-rate range (`ptft_bench.tuning`), around the literature
    # default; None: the default grid widened 3x each way.
    search_lr: ClassVar[tuple[float, float] | None] = None
    # False for strategies fitted in closed form on frozen features (the linear probe): the
    # engine then extracts the head's input features once and calls `fit_features` instead of
    # running the gradient loop; learning rates do not apply to them.
    trains_by_gradient: ClassVar[bool] = True
    # Strategies whose whole point is a task head on top of the model (head-only, the linear
    # probe) cannot run on a generation task, which trains the language model itself.
    needs_task_head: ClassVar[bool] = False
    # Strategies that leave the base weights frozen (adapters, peft methods, a head) can train
    # on a quantized base (QLoRA); the ones that train base weights cannot.
    trains_on_quantized_base: ClassVar[bool] = False
    # -- what serving the fine-tune costs and allows (`capabilities`; the report's answer reads
    # them, and tests/test_strategy_capabilities.py checks each against the strategy's behaviour)
    # True when the trained weights fold into the base weights (`merged` returns an equivalent
    # model of the base architecture): no serving overhead once merged (LoRA family, IA3, ...).
    mergeable: ClassVar[bool] = False
    # What the fine-tune serves when it does not merge: `SAME_MODEL` (the base architecture with
    # changed weights: full, BitFit, top-k, a head), `ADDS_LAYERS` (adapters) or `ADDS_TOKENS`
    # (soft prompts, prefixes: longer sequences); a mergeable strategy serves `MERGES`.
    serving: ClassVar[str] = SAME_MODEL
    # True when the base weights stay untouched (only added modules and the task head train), so
    # that several fine-tunes can be served from one copy of the base model.
    multi_adapter: ClassVar[bool] = False
    # Decoder support, as `supports` decides it: True on every decoder family, False on none, a
    # short text naming the restriction where some refuse (BitFit: "only with biases").
    decoders: ClassVar[bool | str] = True

    def __init__(self, **params: Any) -> None:
        self.config = build_config(self.config_class, params, owner=self.name)
        self.context: StrategyContext | None = None

    @classmethod
    def lr_range(cls) -> tuple[float, float]:
        """The learning-rate range tuning searches by default."""
        if cls.search_lr is not None:
            return cls.search_lr
        return (min(cls.default_lrs) / 3, max(cls.default_lrs) * 3)

    # -- the contract -------------------------------------------------------------------------
    @classmethod
    def supports(cls, model: nn.Module) -> str | None:
        """None when the strategy can run on `model`, else the reason it cannot (tests skip it).

        Override for methods that legitimately lack support for an architecture (e.g. a peft
        method without target modules for DistilBERT); the reason should name the architecture.
        """
        return None

    @classmethod
    def supports_task(cls, kind: str) -> str | None:
        """None when the strategy can run on a task of this kind, else the reason it cannot."""
        if kind == "generation" and cls.needs_task_head:
            return (
                f"{cls.name} trains a task head on top of the model, and a generation task has "
                "none (the language model itself learns to write): use full, lora, ia3, "
                "prompt_tuning or adapter"
            )
        return None

    @classmethod
    def capabilities(cls, params: dict[str, Any] | None = None) -> dict[str, bool | str]:
        """What choosing this strategy implies beyond its scores and costs, from its declarations:

        - ``serving``: `MERGES`, `SAME_MODEL`, `ADDS_LAYERS` or `ADDS_TOKENS` (see `serving`);
        - ``mergeable``: the trained weights fold into the base (`merged`);
        - ``quantized_base``: it trains on an int8 / nf4 base (`supports_quantization`);
        - ``multi_adapter``: the base weights stay untouched (several fine-tunes, one base);
        - ``decoders``: True, False, or the restriction (`decoders`).

        ``params`` (a record's `strategy_params`) matter only to strategies whose capabilities
        depend on them (the generic `peft` strategy: its method).
        """
        return {
            "serving": MERGES if cls.mergeable else cls.serving,
            "mergeable": cls.mergeable,
            "quantized_base": cls.trains_on_quantized_base,
            "multi_adapter": cls.multi_adapter,
            "decoders": cls.decoders,
        }

    @classmethod
    def supports_quantization(cls, kind: str) -> str | None:
        """None when the strategy can train on a base stored as `kind`, else the reason."""
        if kind != "none" and not cls.trains_on_quantized_base:
            return (
                f"{cls.name} trains the base model's own weights, which a {kind} base stores "
                "quantized (frozen): use lora, ia3, prompt_tuning or adapter on it, or "
                "--quantization none"
            )
        return None

    def apply(self, model: nn.Module, context: StrategyContext | None = None) -> nn.Module:
        """Freeze / inject modules; return the model to train (may be a wrapper).

        Implementations start with `context = self.bind(model, context)`.
        """
        raise NotImplementedError

    def bind(self, model: nn.Module, context: StrategyContext | None) -> StrategyContext:
        """Remember the run's context (computing it for `model` when the caller has none)."""
        if context is None or context.parts.model is not model:
            context = StrategyContext.of(model)
        self.context = context
        return context

    def parts_for(self, model: nn.Module) -> ModelParts:
        """The parts of `model`: the bound context's when `apply` ran on this very model."""
        if self.context is not None and self.context.parts.model is model:
            return self.context.parts
        return find_parts(model)

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float = 0.01
    ) -> list[dict[str, Any]]:
        """Optimizer groups: each trainable parameter in exactly one, no decay on biases/norms."""
        return decay_groups(self.trainable_named_parameters(model), lr, weight_decay)

    def callbacks(self) -> list[TrainCallback]:
        """Callbacks the training loop runs (empty for static strategies)."""
        return []

    def merged(self, model: nn.Module) -> nn.Module | None:
        """A copy of the trained `model` with this strategy's weights merged into the base
        weights (no inference overhead), or None when there is nothing to merge (the model
        already has the base architecture) or the strategy cannot be merged (adapters, prompts).
        """
        return None

    def fit_features(self, model: nn.Module, features: dict[str, Any], task: Any) -> dict[str, Any]:
        """Closed-form strategies (`trains_by_gradient = False`) set their weights here.

        `features` maps "train" and "validation" to `(X, y)`: the inputs of the head's last
        Linear layer (frozen, pooled) and the labels; `task` is the task spec (metrics,
        regression or not). Returns what the run record should say about the fit.
        """
        raise NotImplementedError(f"{self.name} trains by gradient; the loop trains it")

    # -- saving: only what the strategy trains ------------------------------------------------
    def trainable_named_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """Parameters this strategy trains over the whole run (default: requires_grad now)."""
        return [(n, p) for n, p in unique_named_parameters(model) if p.requires_grad]

    def trainable_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors needed to keep this fine-tune (applied on top of the base model)."""
        return {n: p.detach().cpu().clone() for n, p in self.trainable_named_parameters(model)}

    def load_trainable_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load what `trainable_state_dict` saved into a model prepared by `apply`."""
        missing = set(state) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"state has parameters the model lacks: {sorted(missing)[:5]}")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)

    # -- description ---------------------------------------------------------------------------
    @classmethod
    def param_info(cls) -> list[ParamInfo]:
        """The parameters `ptft-bench list` shows (default: the config dataclass's fields)."""
        return [
            ParamInfo(f.name, _type_name(f.type), _default(f), f.metadata.get("help", ""))
            for f in dataclasses.fields(cls.config_class)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dataclasses.asdict(self.config)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


_REGISTRY: dict[str, type[Strategy]] = {}
_LOADED = False


def register_strategy(name: str):
    """Class decorator: register a `Strategy` subclass under `name` (raises on a duplicate)."""
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"strategy name {name!r} must be lower_snake_case")

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) must decorate a Strategy subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name]!r}")
        if not dataclasses.is_dataclass(cls.config_class):
            raise TypeError(f"{cls.__name__}.config_class must be a dataclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        importlib.import_module("strategies")  # imports every module, which registers itself
        _LOADED = True


def strategy_class(name: str) -> type[Strategy]:
    _load_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown strategy {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def get_strategy(name: str, **params: Any) -> Strategy:
    """A configured strategy; unknown name or bad parameter -> ValueError saying what to fix."""
    return strategy_class(name)(**params)


@dataclass
class ParamInfo:
    name: str
    type: str
    default: Any
    help: str


@dataclass
class StrategyInfo:
    name: str
    family: str
    description: str
    params: list[ParamInfo] = field(default_factory=list)
    default_lrs: tuple[float, ...] = ()


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy with its one-line description and parameters, sorted by name."""
    _load_builtin()
    out = []
    for name in sorted(_REGISTRY):
        cls = _REGISTRY[name]
        params = cls.param_info()
        out.append(StrategyInfo(name, cls.family, cls.description, params, cls.default_lrs))
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _type_name(t: Any) -> str:
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def build_config(config_class: type, params: dict[str, Any], owner: str = "") -> Any:
    """Instantiate a config dataclass; unknown keys and wrong types raise ValueError."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        allowed = ", ".join(fields) or "none"
        raise ValueError(
            f"{owner or config_class.__name__}: unknown parameter(s) {', '.join(unknown)}; "
            f"allowed: {allowed}"
        )
    hints = typing.get_type_hints(config_class)
    coerced = {k: coerce_value(v, hints.get(k), f"{owner}.{k}") for k, v in params.items()}
    return config_class(**coerced)


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """Accept values from TOML / JSON / the command line (strings) for simple annotated types."""
    if hint is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        errors = []
        for a in args:
            try:
                return coerce_value(value, a, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ValueError(f"{where} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (inner,) = typing.get_args(hint)[:1] or (Any,)
        return origin(coerce_value(v, inner, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value


def decay_groups(
    named_params: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, **extra: Any
) -> list[dict[str, Any]]:
    """Split parameters into a decayed and a non-decayed group (biases, LayerNorm weights)."""
    decay, no_decay = [], []
    for n, p in named_params:
        (no_decay if is_no_decay(n, p) else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay, **extra})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, **extra})
    return groups


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases and normalisation weights (1-D tensors) get no weight decay."""
    lname = name.lower()
    return param.ndim <= 1 or lname.endswith(".bias") or "norm" in lname
