"""The queue of a sweep: what to run next, for this process, among fixed runs and studies.

Fixed runs (every run of an untuned suite; the closed-form ones of a tuned suite) are taken in
plan order. A study gives its trials one at a time (asked from Optuna when a worker is free, so
the sampler and the pruner see every finished trial) and, once every trial has finished, the
other seeds at its selected configuration. `next_spec` returns None when nothing can start now
(a study waits for its last trials, run here or by another process); `exhausted` is true when
nothing is left at all. Finished runs are told to their study from their records
(`ptft_bench.tuning.study`), here or, after a kill, by the next process that looks.
"""

from __future__ import annotations

from ptft_bench.records.store import RunStore
from ptft_bench.run.spec import RunSpec
from ptft_bench.sweep.estimate import SweepClock
from ptft_bench.sweep.plan import Plan, StudyPlan
from ptft_bench.tuning.study import Study, outcome_of
from ptft_bench.tuning.trial import storage_url


class WorkQueue:
    """Pending runs of a plan, fixed and tuned, handed out one at a time."""

    def __init__(self, plan: Plan, store: RunStore, retry_failed: bool = False) -> None:
        self.plan, self.store, self.retry_failed = plan, store, retry_failed
        self.fixed = list(plan.todo)
        self.in_flight: dict[str, RunSpec] = {}
        self.tried: set[str] = set()  # run ids handed out by this process (each at most once)
        self._studies: dict[str, Study] = {}
        tuning = plan.suite.tuning
        self.storage = storage_url(tuning.storage, plan.out) if tuning else ""
        self.clock: SweepClock | None = None
        self.predictions: dict[str, float] = {}

    def keep_time(self, clock: SweepClock, predictions: dict[str, float]) -> None:
        """Re-estimate what is left after each run (`predictions`: seconds by run id, and by
        study name for a study's trials and seeds together)."""
        self.clock, self.predictions = clock, predictions

    def predicted(self, spec: RunSpec) -> float:
        if spec.run_id in self.predictions:
            return self.predictions[spec.run_id]
        name = spec.trial.study if spec.trial else spec.study
        st = next((s for s in self.plan.studies if s.name == name), None)
        if st is None or name not in self.predictions:
            return 0.0
        return self.predictions[name] / (st.tuning.trials + len(st.seeds))

    def study(self, sp: StudyPlan) -> Study:
        if sp.name not in self._studies:
            epochs = sp.base.budget.epochs
            self._studies[sp.name] = Study(sp.name, self.storage, sp.tuning, sp.space, epochs)
        return self._studies[sp.name]

    # -- handing out --------------------------------------------------------------------------
    def next_spec(self) -> RunSpec | None:
        while self.fixed:
            spec = self.fixed.pop(0)
            if self._startable(spec):
                return self._take(spec)
        for sp in self.plan.studies:
            spec = self._from_study(sp)
            if spec is not None:
                return self._take(spec)
        return None

    def _take(self, spec: RunSpec) -> RunSpec:
        self.in_flight[spec.run_id] = spec
        self.tried.add(spec.run_id)
        return spec

    def _startable(self, spec: RunSpec) -> bool:
        if spec.run_id in self.tried or self.store.claimed_by_other(spec.run_id):
            return False
        status = self.store.status(spec.run_id)
        return status is None or (status == "failed" and self.retry_failed)

    def _from_study(self, sp: StudyPlan) -> RunSpec | None:
        study = self.study(sp)
        study.sync(self.store.read, self.store.claimed_by_other)
        while (ref := study.ask()) is not None:
            spec = sp.trial_spec(ref)
            study.assign(ref, spec.run_id)
            record = self.store.read(spec.run_id)
            if record is None:
                return spec
            study.tell(ref.number, outcome_of(record))  # the same configuration ran before
        if not study.done():
            return None
        selected = study.selected()
        for seed in sp.seeds if selected else ():
            spec = sp.seed_spec(selected, seed)
            if self._startable(spec):
                return spec
        return None

    # -- results ------------------------------------------------------------------------------
    def finished(self, spec: RunSpec, seconds: float | None = None) -> None:
        """A run of this process ended after `seconds` (its record, if any, is in the store)."""
        self.in_flight.pop(spec.run_id, None)
        if self.clock is not None and seconds is not None:
            self.clock.finished(self.predicted(spec), seconds)
        if spec.trial is not None:
            record = self.store.read(spec.run_id)
            if record is not None:
                study = self.study(next(s for s in self.plan.studies if s.name == spec.trial.study))
                study.tell(spec.trial.number, outcome_of(record))

    def status(self) -> str:
        """The progress bar's word on time left (empty before the first run ends)."""
        return self.clock.describe() if self.clock is not None else ""

    def exhausted(self) -> bool:
        """Nothing left to run, here or anywhere: every fixed run tried, every study done with
        its seeds recorded."""
        if self.fixed or self.in_flight:
            return False
        for sp in self.plan.studies:
            study = self.study(sp)
            study.sync(self.store.read, self.store.claimed_by_other)
            if not study.done():
                return False
            selected = study.selected()
            for seed in sp.seeds if selected else ():
                spec = sp.seed_spec(selected, seed)
                if spec.run_id in self.tried:
                    continue
                status = self.store.status(spec.run_id)
                if status is None or (status == "failed" and self.retry_failed):
                    return False
        return True

    def remaining(self) -> int:
        """Runs still to do (trials not yet asked and seeds not yet run), for the progress bar."""
        n = len(self.fixed) + len(self.in_flight)
        for sp in self.plan.studies:
            study = self.study(sp)
            finished = sum(t.state.is_finished() for t in study.counted())
            n += max(0, sp.tuning.trials - finished)
            selected = study.selected() if study.done() else None
            if selected is None:
                n += len(sp.seeds) if not study.done() else 0
                continue
            n += sum(self.store.status(sp.seed_spec(selected, s).run_id) is None for s in sp.seeds)
        return n
