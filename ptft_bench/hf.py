"""Kept so that `from ptft_bench.hf import trainer_kwargs` (the README's Trainer example) keeps
working; the adapters live in `ptft_bench.strategy.hf`."""

from ptft_bench.strategy.hf import accelerate_prepare, trainer_kwargs  # noqa: F401
