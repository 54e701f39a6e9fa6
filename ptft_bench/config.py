"""Suite files (TOML) -> validated `SuiteConfig`; precedence: command line > suite file > defaults.

A suite names tasks, models, strategy variants (strategy + parameters + learning-rate grid),
seeds, the training budget (`Budget`) and data sizes (`DataConfig`). Unknown keys are errors at
every level. This module owns the suite's schema; `ptft_bench.sweep.plan` expands it into runs.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ptft_bench.errors import UserError
from ptft_bench.models.pooling import CHOICES as POOLING_CHOICES
from ptft_bench.models.quantize import check as check_quantization
from ptft_bench.strategy.registry import build_config
from ptft_bench.tuning.space import TuningConfig


@dataclass(frozen=True)
class Schedule:
    """How many optimizer steps a run takes (one place computes it, for the loop and strategies)."""

    steps_per_epoch: int
    total_steps: int
    epochs: int  # epochs started (the last may be cut short by max_steps)


@dataclass
class Budget:
    """How much training each run gets (identical for every strategy in a suite)."""

    epochs: int = 3
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    early_stopping_patience: int | None = None  # epochs without improvement
    length_grouping: bool = True
    log_every: int = 10
    # "auto": compute frozen bottom layers once (eval mode, no dropout) when a strategy freezes
    # them; "off": run them every step in train mode. See ptft_bench/run/caching.py.
    frozen_cache: str = "auto"
    cache_max_mb: int = 4096

    # Settings that change speed or logging but never the numbers: left out of run ids.
    SPEED_ONLY = ("log_every", "eval_batch_size", "cache_max_mb")

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"budget.epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"budget.max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("budget.batch_size and eval_batch_size must be >= 1")
        if not 8 <= self.max_length <= 4096:
            raise ValueError(f"budget.max_length must be in [8, 4096], got {self.max_length}")
        if self.frozen_cache not in ("auto", "off"):
            raise ValueError(f"budget.frozen_cache must be auto or off, got {self.frozen_cache!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"budget.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def schedule(self, n_train: int, world: int = 1) -> Schedule:
        """Steps per epoch and in total for `n_train` examples split over `world` processes."""
        steps_per_epoch = max(1, math.ceil(n_train / self.batch_size) // world)
        total = self.max_steps or steps_per_epoch * self.epochs
        return Schedule(steps_per_epoch, total, math.ceil(total / steps_per_epoch))

    def identity(self) -> dict[str, Any]:
        """The settings that can change a run's numbers (they enter its run id)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.SPEED_ONLY}


@dataclass
class StrategyVariant:
    """One strategy with its parameters (a delta from its defaults) and learning-rate grid."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    lrs: list[float] | None = None  # None: the strategy's literature default grid
    # with [tuning]: the search space, e.g. {"lr": [1e-4, 3e-3], "r": [4, 8, 16]}; None: the
    # strategy's own learning-rate range (`Strategy.lr_range`)
    search: dict[str, Any] | None = None

    def label(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


@dataclass
class DataConfig:
    data_dir: str | None = None  # a glue_data/ folder; None: hub when online
    max_train_samples: int | None = None
    max_eval_samples: int | None = None  # caps validation and test (deterministic subsample)

    def __post_init__(self) -> None:
        for k in ("max_train_samples", "max_eval_samples"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"data.{k} must be >= 1, got {v}")


@dataclass
class SuiteConfig:
    name: str
    tasks: list[str]
    strategies: list[StrategyVariant]
    description: str = ""
    models: list[str] = field(default_factory=lambda: ["minilm-l6"])
    seeds: list[int] = field(default_factory=lambda: [0])
    budget: Budget = field(default_factory=Budget)
    data: DataConfig = field(default_factory=DataConfig)
    precision: str = "auto"  # auto | fp32 | bf16
    # which vector the head reads: auto (the model's own metadata) | cls | mean | last
    pooling: str = "auto"
    # how the frozen base is stored, one comparison axis: none | int8 | nf4 (QLoRA), a list to
    # compare several (`ptft_bench.models.quantize`)
    quantization: list[str] = field(default_factory=lambda: ["none"])
    output_dir: str | None = None  # default runs/<name>
    # the trial budget every strategy gets per (task, model) (`ptft_bench.tuning`); None: each
    # variant runs at its listed learning rates, untuned
    tuning: TuningConfig | None = None

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("suite lists no tasks")
        if not self.strategies:
            raise ValueError("suite lists no strategies")
        if not self.models:
            raise ValueError("suite lists no models")
        if not self.seeds:
            raise ValueError("suite lists no seeds")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.tuning is not None and self.tuning.seed is None:
            self.tuning.seed = self.seeds[0]
        if self.tuning is not None and self.tuning.seed not in self.seeds:
            raise ValueError(
                f"tuning.seed {self.tuning.seed} must be one of the suite's seeds "
                f"{self.seeds}: the trials' seed is the first seed of the final runs"
            )
        if isinstance(self.quantization, str):
            self.quantization = [self.quantization]
        if not self.quantization:
            raise ValueError('quantization lists nothing: use "none"')
        for kind in self.quantization:
            check_quantization(kind)
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(
                f"pooling must be one of {', '.join(POOLING_CHOICES)}, got {self.pooling!r}"
            )

    @property
    def out(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def bundled_suites() -> dict[str, Path]:
    folder = resources.files("ptft_bench") / "suites"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def find_suite(name_or_path: str) -> Path:
    suites = bundled_suites()
    if name_or_path in suites:
        return suites[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"suite file {name_or_path} does not exist")
        return path
    import difflib

    close = difflib.get_close_matches(name_or_path, list(suites), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UserError(
        f"unknown suite {name_or_path!r}.{hint} Bundled: {', '.join(sorted(suites))}; "
        "or pass a path to a .toml file"
    )


_TOP_KEYS = {f.name for f in dataclasses.fields(SuiteConfig)}


def load_suite(name_or_path: str, overrides: dict[str, Any] | None = None) -> SuiteConfig:
    """Read a suite file and apply command-line overrides (which win)."""
    path = find_suite(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"suite file {path} is not valid TOML: {e}") from None
    raw.setdefault("name", path.stem)
    return suite_from_dict(raw, overrides or {}, where=str(path))


def suite_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any], where: str = "suite"
) -> SuiteConfig:
    raw = dict(raw)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    budget = dict(raw.pop("budget", {}) or {})
    data = dict(raw.pop("data", {}) or {})
    tuning = raw.pop("tuning", None)
    tuning = dict(tuning) if tuning is not None else None
    strategies = raw.pop("strategies", [])
    for key, value in overrides.items():
        if value is None or key in ("strategies", "lrs"):
            continue
        section, _, name = key.rpartition(".")
        if section == "tuning":
            tuning = {**(tuning or {}), name: value}
            continue
        target = {"budget": budget, "data": data, "": raw}[section]
        target[name] = value
    if overrides.get("strategies") is not None:
        strategies = select_strategies(strategies, overrides["strategies"])
    if overrides.get("lrs") is not None:  # one grid for every variant, validated like the suite's
        lrs = list(overrides["lrs"])
        strategies = [
            {**(e if isinstance(e, dict) else {"name": e}), "lrs": lrs} for e in strategies
        ]
    try:
        variants = [_variant(s, where) for s in strategies]
        tuned = _tuning(tuning, variants, overrides.get("lrs") is not None, where)
        return SuiteConfig(
            **raw,
            strategies=variants,
            budget=build_config(Budget, budget, owner="budget"),
            data=build_config(DataConfig, data, owner="data"),
            tuning=tuned,
        )
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None


def _tuning(
    raw: dict[str, Any] | None, variants: list[StrategyVariant], cli_lrs: bool, where: str
) -> TuningConfig | None:
    """The `[tuning]` table (`--trials 0` turns it off); a tuned variant lists no lrs."""
    if raw is None or raw.get("trials") == 0:
        return None
    tuning = build_config(TuningConfig, raw, owner="tuning")
    if cli_lrs:
        raise UserError(
            "--lrs fixes the learning rates, but this suite tunes them ([tuning]); drop --lrs, "
            "or pass --trials 0 to run the listed learning rates untuned"
        )
    fixed = [v.name for v in variants if v.lrs]
    if fixed:
        raise UserError(
            f"{where}: {', '.join(fixed)} list lrs, but the suite tunes them ([tuning]): give a "
            "range instead, search = { lr = [low, high] }"
        )
    return tuning


def _variant(entry: Any, where: str) -> StrategyVariant:
    if isinstance(entry, str):
        return StrategyVariant(entry)
    if not isinstance(entry, dict):
        raise UserError(f"{where}: each [[strategies]] entry must be a table, got {entry!r}")
    allowed = {"name", "params", "lrs", "search"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)} in [[strategies]]; allowed: "
            "name, params, lrs, search"
        )
    if "name" not in entry:
        raise UserError(f"{where}: a [[strategies]] entry has no name")
    lrs = entry.get("lrs")
    if lrs is not None and (not lrs or any(not isinstance(x, (int, float)) or x <= 0 for x in lrs)):
        raise UserError(f"{where}: lrs of {entry['name']} must be positive numbers, got {lrs}")
    search = entry.get("search")
    if search is not None and not isinstance(search, dict):
        raise UserError(
            f"{where}: search of {entry['name']} must be a table, e.g. {{ lr = [1e-4, 1e-3] }}"
        )
    return StrategyVariant(
        entry["name"], dict(entry.get("params", {})), lrs and [float(x) for x in lrs], search
    )


def select_strategies(suite_entries: list[Any], names: list[str]) -> list[Any]:
    """`--strategies a,b`: the suite's variants of those names, or the defaults for new names."""
    out: list[Any] = []
    # "full,bitfit" is two names; a comma after ":" separates a variant's parameters instead
    names = [n for item in names for n in ([item] if ":" in item else item.split(",")) if n]
    for item in names:
        if ":" in item:  # "lora:r=16,alpha=32" -> a variant given on the command line
            name, _, rest = item.partition(":")
            params = {}
            for kv in filter(None, rest.split(",")):
                k, eq, v = kv.partition("=")
                if not eq:
                    raise UserError(f"--strategies {item}: expected name:key=value,key=value")
                params[k.strip()] = v.strip()
            out.append({"name": name, "params": params})
            continue
        matches = [e for e in suite_entries if (e if isinstance(e, str) else e.get("name")) == item]
        out.extend(matches or [item])
    return out
