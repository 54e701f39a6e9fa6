"""Tuning: every strategy gets the same trial budget on each (task, model), spent by Optuna.

Owns what is searched (`space`: the suite's `[tuning]` table, each strategy's search space, the
grid), the child side of a trial (`trial`: the reference a run carries, the storage it opens, the
pruning callback that reports each epoch's validation score and stops a pruned run) and the
parent side (`study`: asking for trials, telling Optuna what each run's record says, recovering
trials a killed process left running, the selected configuration). Trials are ordinary runs,
recorded, resumable and claimed like any other; `ptft_bench.sweep.queue` schedules them.
"""
