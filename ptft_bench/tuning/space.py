"""What is searched, and how: a suite's `[tuning]` table and each strategy's search space.

Every strategy gets the same tuning budget on each (task, model): `trials` configurations from
its own search space, a log-uniform learning-rate range around its literature default (the
strategy class declares it, `Strategy.search_space`; a suite may narrow or widen it, and may add
one structural parameter such as LoRA's `r`), searched by an Optuna sampler with a multi-fidelity
pruner on the validation score after each epoch. Seeds then run at the selected configuration.

With the learning rate alone, `sampler = "auto"` is a grid: `trials` log-spaced learning rates
over the range, the same for every task, reproducible and safe to run in parallel; with a
structural parameter it is TPE (Bergstra et al. 2011), seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SAMPLERS = ("auto", "grid", "tpe", "random")
PRUNERS = ("successive_halving", "hyperband", "median", "none")


@dataclass
class TuningConfig:
    """A suite's `[tuning]` table: the trial budget every strategy gets, and how it is spent."""

    trials: int = field(default=6, metadata={"help": "configurations per (task, model, variant)"})
    sampler: str = field(default="auto", metadata={"help": "auto | grid | tpe | random"})
    pruner: str = field(
        default="successive_halving",
        metadata={"help": "successive_halving | hyperband | median | none (epochs are the rungs)"},
    )
    min_epochs: int = field(default=1, metadata={"help": "the pruner's smallest resource"})
    reduction_factor: int = field(default=3, metadata={"help": "keep 1 in this many per rung"})
    seed: int | None = field(
        default=None,
        metadata={"help": "the trials' training seed (and sampler's); default: the first seed"},
    )
    storage: str = field(
        default="",
        metadata={
            "help": "Optuna storage: empty = RUN_DIR/tuning/studies.journal; a journal file "
            "path (a shared filesystem for several machines) or an RDB URL (sqlite:///..., "
            "postgresql://...)"
        },
    )

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"tuning.trials must be >= 1, got {self.trials}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"tuning.sampler must be one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"tuning.pruner must be one of {', '.join(PRUNERS)}")
        if self.min_epochs < 1 or self.reduction_factor < 2:
            raise ValueError("tuning.min_epochs must be >= 1 and tuning.reduction_factor >= 2")

    def identity(self) -> dict[str, Any]:
        """What changes a study's trials (its id); the storage location does not."""
        return {
            "sampler": self.sampler,
            "pruner": self.pruner,
            "min_epochs": self.min_epochs,
            "reduction_factor": self.reduction_factor,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class SearchSpace:
    """A log-uniform learning-rate range and optional structural choices (`{"r": (4, 8, 16)}`)."""

    lr: tuple[float, float]
    choices: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def __post_init__(self) -> None:
        lo, hi = self.lr
        if not (0 < lo <= hi) or not math.isfinite(hi):
            raise ValueError(f"search lr range must be 0 < low <= high, got [{lo}, {hi}]")
        for name, values in self.choices:
            if not values:
                raise ValueError(f"search {name}: give at least one value")

    @classmethod
    def parse(cls, raw: dict[str, Any], default_lr: tuple[float, float]) -> SearchSpace:
        """A suite's `search = { lr = [low, high], r = [4, 8, 16] }` (lr omitted: the default)."""
        raw = dict(raw or {})
        lr = raw.pop("lr", None)
        if lr is None:
            lr = default_lr
        if not isinstance(lr, (list, tuple)) or len(lr) != 2:
            raise ValueError(f"search lr must be [low, high], got {lr!r}")
        choices = []
        for name, values in sorted(raw.items()):
            if not isinstance(values, (list, tuple)):
                raise ValueError(f"search {name} must be a list of values, got {values!r}")
            choices.append((name, tuple(values)))
        return cls((float(lr[0]), float(lr[1])), tuple(choices))

    @property
    def n_choices(self) -> int:
        return math.prod(len(v) for _, v in self.choices)

    def lr_grid(self, trials: int) -> list[float]:
        """`n` log-spaced learning rates over the range (ends included), rounded to 3 digits."""
        lo, hi = self.lr
        n = max(1, trials // self.n_choices)
        if n == 1:
            return [float(f"{math.sqrt(lo * hi):.3g}")]
        if lo == hi:
            raise ValueError(f"search lr range [{lo:g}, {hi:g}] is one value: widen it for a grid")
        step = (math.log(hi) - math.log(lo)) / (n - 1)
        return [float(f"{math.exp(math.log(lo) + i * step):.3g}") for i in range(n)]

    def grid(self, trials: int) -> dict[str, list[Any]]:
        """The grid sampler's search space; its size must equal the trial budget."""
        if trials % self.n_choices:
            raise ValueError(
                f"a grid of {trials} trials cannot cover {self.n_choices} structural choices "
                'evenly: use sampler = "tpe" or a trial count that is a multiple'
            )
        return {"lr": self.lr_grid(trials), **{k: list(v) for k, v in self.choices}}

    def sampler_kind(self, requested: str) -> str:
        if requested != "auto":
            return requested
        return "grid" if not self.choices else "tpe"

    def identity(self) -> dict[str, Any]:
        return {"lr": list(self.lr), **{k: list(v) for k, v in self.choices}}

    def describe(self) -> str:
        lo, hi = self.lr
        extra = "".join(f", {k} in {{{', '.join(map(str, v))}}}" for k, v in self.choices)
        return f"lr log-uniform [{lo:g}, {hi:g}]{extra}"

    def at_edge(self, lr: float, grid: list[float] | None = None) -> str | None:
        """ "low" / "high" when `lr` is the range's lowest / highest value searched, else None."""
        points = sorted(set(grid)) if grid and len(set(grid)) > 1 else None
        lo, hi = (points[0], points[-1]) if points else self.lr
        if lo == hi:
            return None
        width = math.log(hi) - math.log(lo)
        if lr <= lo * math.exp(0.05 * width):
            return "low"
        if lr >= hi * math.exp(-0.05 * width):
            return "high"
        return None
