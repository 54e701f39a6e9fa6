"""Run: one run spec in, one trained and measured run out.

Owns the run spec (`spec`: what a run is and its id), execution (`execute`: the sweep's shared
caches, model loading, the strategy contract, training, predictions), the training loop
(`train`, strategy-agnostic), frozen-prefix caching (`caching`), the floor every run must beat
(`baselines`) and turning a trained run into the measured fields of its record (`measure`).
`ptft_bench.sweep` decides which runs to execute; `ptft_bench.records` keeps what they produce.
"""
