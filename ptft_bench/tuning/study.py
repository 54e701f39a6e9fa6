"""The parent side of a study: ask for trials, tell Optuna what their records say, select.

One Optuna study per (task, model, strategy variant), in one storage per sweep (a journal file
in the run folder by default; a shared journal or an RDB for several machines). The run records
are the source of truth: a trial's outcome is told to Optuna from its record (complete with its
validation score, pruned, or failed; a run that collapsed to one constant prediction counts as
a failed configuration, never as a score), so a sweep killed at any point continues where it
stopped, and a process that finds a finished record tells it, whoever ran it.

Exactly `trials` trials per study, with no lock and whatever the storage: trial numbers are
assigned atomically by Optuna's storage, so after `ask` a process counts the study's earlier
trials; if the budget is already spent there, its trial is surplus and ends at once (failed,
marked surplus, never run). A trial left running by a process that is gone, with no record and
no live claim, is stale: it is marked so and its configuration is enqueued again (the same run
id), so a kill never costs the study a configuration and never runs one twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ptft_bench.records.store import process_alive, this_process
from ptft_bench.tuning.space import SearchSpace, TuningConfig
from ptft_bench.tuning.trial import TrialRef, make_pruner, open_storage

# user attributes a trial carries in the storage
OWNER, RUN_ID, STALE, SURPLUS, COLLAPSED, REASON = (
    "owner", "run_id", "stale", "surplus", "collapsed", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class TrialOutcome:
    """What a record says about its trial: Optuna's state and value, and why."""

    state: str  # "complete" | "pruned" | "failed"
    value: float | None = None
    reason: str = ""
    collapsed: bool = False


def outcome_of(record: Any) -> TrialOutcome:
    """A trial's outcome from its run record (`ptft_bench.records.record.RunRecord`)."""
    if record.status != "ok":
        return TrialOutcome("failed", reason=record.error or "failed")
    check = record.learning_check or {}
    if check.get("collapsed"):
        return TrialOutcome("failed", reason="collapsed to one constant prediction", collapsed=True)
    info = record.tuning or {}
    value = info.get("value")
    if info.get("state") == "pruned":
        return TrialOutcome("pruned", value)
    if value is None or not math.isfinite(value):
        return TrialOutcome("failed", reason="no finite validation score")
    return TrialOutcome("complete", float(value))


def _grid_sampler(grid: dict[str, list[Any]], seed: int | None):
    """Optuna's grid sampler, without its end-of-grid `study.stop()` (which only works inside
    `study.optimize`; this study counts its own trials)."""
    import optuna

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return Grid(grid, seed=seed)


class Study:
    """One study: `trials` configurations from `space`, pruned on validation after each epoch."""

    def __init__(
        self,
        name: str,
        storage: str,
        tuning: TuningConfig,
        space: SearchSpace,
        max_epochs: int,
    ) -> None:
        import optuna

        self.name, self.storage_url, self.tuning, self.space = name, storage, tuning, space
        self.max_epochs = max_epochs
        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial: ours say more
        self.kind = space.sampler_kind(tuning.sampler)
        self.study = optuna.create_study(
            study_name=name,
            storage=open_storage(storage),
            direction="maximize",
            sampler=self._sampler(),
            pruner=make_pruner(
                tuning.pruner, tuning.min_epochs, tuning.reduction_factor, max_epochs
            ),
            load_if_exists=True,
        )

    def _sampler(self):
        samplers = self._optuna.samplers
        seed = self.tuning.seed
        if self.kind == "grid":
            return _grid_sampler(self.space.grid(self.tuning.trials), seed)
        if self.kind == "random":
            return samplers.RandomSampler(seed=seed)
        startup = max(2, self.tuning.trials // 3)
        return samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True
        )

    # -- counting -----------------------------------------------------------------------------
    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    @staticmethod
    def _counts(t: Any) -> bool:
        return not (t.user_attrs.get(STALE) or t.user_attrs.get(SURPLUS))

    def counted(self) -> list[Any]:
        """The study's trials: every one asked, minus the stale and surplus ones."""
        return [t for t in self._trials() if self._counts(t)]

    def done(self) -> bool:
        """Every trial of the budget asked and finished."""
        counted = self.counted()
        return len(counted) >= self.tuning.trials and all(t.state.is_finished() for t in counted)

    # -- asking -------------------------------------------------------------------------------
    def ask(self) -> TrialRef | None:
        """A new trial, or None when the budget is spent (or was, by the time Optuna answered)."""
        states = self._optuna.trial.TrialState
        counted = self.counted()
        waiting = any(t.state == states.WAITING for t in counted)
        if len(counted) >= self.tuning.trials and not waiting:
            return None
        trial = self.study.ask()
        earlier = [t for t in self._trials() if t.number < trial.number and self._counts(t)]
        if len(earlier) >= self.tuning.trials:  # another process spent the budget meanwhile
            trial.set_user_attr(SURPLUS, True)
            self.study.tell(trial, state=states.FAIL)
            return None
        params = self._suggest(trial)
        trial.set_user_attr(OWNER, this_process())
        return TrialRef(
            self.storage_url,
            self.name,
            trial._trial_id,  # Optuna's storage id: what a child needs to report to this trial
            trial.number,
            params,
            self.tuning.pruner,
            self.tuning.min_epochs,
            self.tuning.reduction_factor,
        )

    def _suggest(self, trial: Any) -> dict[str, Any]:
        lo, hi = self.space.lr
        params: dict[str, Any] = {"lr": trial.suggest_float("lr", lo, hi, log=True)}
        for name, values in self.space.choices:
            params[name] = trial.suggest_categorical(name, list(values))
        return params

    def assign(self, ref: TrialRef, run_id: str) -> None:
        """Remember which run trains `ref` (how a later process finds its record)."""
        self.study._storage.set_trial_user_attr(ref.trial_id, RUN_ID, run_id)

    # -- telling ------------------------------------------------------------------------------
    def tell(self, number: int, outcome: TrialOutcome) -> None:
        """Tell Optuna a trial's outcome; a trial already told (here, or by another process
        that found the record first) is left as it is."""
        states = self._optuna.trial.TrialState
        trial = self._trials()[number]
        if trial.state.is_finished():
            return
        try:
            storage = self.study._storage
            if outcome.collapsed:
                storage.set_trial_user_attr(trial._trial_id, COLLAPSED, True)
            if outcome.reason:
                storage.set_trial_user_attr(trial._trial_id, REASON, outcome.reason[:300])
            if outcome.state == "complete":
                self.study.tell(number, outcome.value, skip_if_finished=True)
            elif outcome.state == "pruned":
                self.study.tell(number, state=states.PRUNED, skip_if_finished=True)
            else:
                self.study.tell(number, state=states.FAIL, skip_if_finished=True)
        except self._optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process told it between our look and our write

    def sync(self, record_of: Callable[[str], Any], claimed: Callable[[str], bool]) -> None:
        """Tell every running trial whose record exists; requeue the stale ones."""
        states = self._optuna.trial.TrialState
        for t in self._trials():
            if t.state != states.RUNNING:
                continue
            run_id = t.user_attrs.get(RUN_ID)
            record = record_of(run_id) if run_id else None
            if record is not None:
                self.tell(t.number, outcome_of(record))
            elif not process_alive(t.user_attrs.get(OWNER)) and not (run_id and claimed(run_id)):
                self._requeue(t)

    def _requeue(self, t: Any) -> None:
        storage = self.study._storage
        storage.set_trial_user_attr(t._trial_id, STALE, True)
        self.study.tell(t.number, state=self._optuna.trial.TrialState.FAIL, skip_if_finished=True)
        if t.params:  # asked but never sampled: nothing to repeat
            self.study.enqueue_trial(dict(t.params), user_attrs={"requeued_from": t.number})

    # -- the answer ---------------------------------------------------------------------------
    def selected(self) -> dict[str, Any] | None:
        """The best complete trial's params (and number), or None when none completed."""
        complete = [
            t
            for t in self.counted()
            if t.state == self._optuna.trial.TrialState.COMPLETE and t.value is not None
        ]
        if not complete:
            return None
        best = max(complete, key=lambda t: (t.value, -t.number))
        return {**best.params, "trial": best.number, "value": best.value}
