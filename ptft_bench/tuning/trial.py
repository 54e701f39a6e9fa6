"""The child side of a trial: which study it belongs to, the storage, and the pruning callback.

A trial is an ordinary run whose spec carries a `TrialRef`. While it trains, `PruningCallback`
reports the best validation score so far after every epoch to the trial (Optuna's
`trial.report(value, step=epoch)`) and asks the pruner whether to go on; a pruned run stops like
an early-stopped one (the best epoch's weights are kept) and its record says so. Only validation
scores ever reach Optuna: test data cannot influence pruning or selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptft_bench.strategy.callbacks import TrainCallback, TrainState

DEFAULT_STORAGE = Path("tuning") / "studies.journal"  # under the run folder


@dataclass(frozen=True)
class TrialRef:
    """Where a trial run reports: the storage, its study, and its trial in that study."""

    storage: str  # a journal file path or an RDB URL (`open_storage`)
    study: str  # the study name (`ptft_bench.tuning.study.study_name`)
    trial_id: int  # Optuna's storage-wide trial id
    number: int  # the trial's number within its study
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    pruner: str = "none"  # `TuningConfig.pruner`, with its resource settings
    min_epochs: int = 1
    reduction_factor: int = 3

    def callback(self, metric: str, max_epochs: int) -> PruningCallback:
        pruner = make_pruner(self.pruner, self.min_epochs, self.reduction_factor, max_epochs)
        return PruningCallback(self, pruner, metric)


def storage_url(configured: str, run_dir: Path) -> str:
    """The storage a sweep uses: the suite's, or a journal file in the run folder."""
    if configured:
        return configured
    return str(Path(run_dir) / DEFAULT_STORAGE)


def open_storage(url: str):
    """An Optuna storage: an RDB URL (`sqlite:///x.db`, `postgresql://...`), else a journal file.

    The journal file (with its lock file beside it) is what Optuna recommends for several
    processes on one machine or on a shared filesystem without a database server.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_pruner(kind: str, min_epochs: int, reduction_factor: int, max_epochs: int):
    """The multi-fidelity pruner; epochs are its resource (`step` = epochs done)."""
    import optuna

    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=min_epochs, reduction_factor=reduction_factor
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min_epochs, max_resource=max(max_epochs, min_epochs),
            reduction_factor=reduction_factor,
        )  # fmt: skip
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=min_epochs - 1)
    return optuna.pruners.NopPruner()


class PruningCallback(TrainCallback):
    """After each validation: report the best score so far; stop the run if the trial is pruned."""

    def __init__(self, ref: TrialRef, pruner: Any, metric: str) -> None:
        import optuna

        self.ref, self.metric = ref, metric
        study = optuna.load_study(
            study_name=ref.study, storage=open_storage(ref.storage), pruner=pruner
        )
        self.trial = optuna.trial.Trial(study, ref.trial_id)
        self.best = -math.inf
        self.pruned_at_epoch: int | None = None

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:
        score = metrics.get(self.metric, math.nan)
        if math.isfinite(score):
            self.best = max(self.best, score)
        epoch = state.epoch + 1
        self.trial.report(self.best if math.isfinite(self.best) else math.nan, step=epoch)
        if self.trial.should_prune() and not state.is_last_epoch:
            self.pruned_at_epoch = epoch
            state.stop_reason = "pruned"

    def outcome(self) -> dict[str, Any]:
        """What the record's `tuning` adds once the run ended (the parent tells Optuna)."""
        return {
            "state": "pruned" if self.pruned_at_epoch else "complete",
            "value": self.best if math.isfinite(self.best) else None,
            "pruned_at_epoch": self.pruned_at_epoch,
        }
