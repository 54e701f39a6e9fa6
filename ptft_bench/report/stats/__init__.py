"""Statistics of the report, pure numpy / scipy: nothing here reads records or writes text.

`significance` (paired bootstrap over examples and seeds) on top of `kernels` (metrics on
weighted resamples) and `gaps` (the `Gap` type, p-values, Holm, McNemar, tie groups); `ranks`
(mean ranks, Friedman, Nemenyi); `descriptive` (seed summaries, paired t-tests, Pareto masks).
"""
