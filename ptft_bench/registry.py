"""Kept so that `from ptft_bench.registry import Strategy, register_strategy` (the import the
README's strategy template has always used) keeps working; the contract lives in
`ptft_bench.strategy.registry`."""

from ptft_bench.strategy.registry import (  # noqa: F401
    NoParams,
    Strategy,
    StrategyContext,
    get_strategy,
    list_strategies,
    register_strategy,
)
