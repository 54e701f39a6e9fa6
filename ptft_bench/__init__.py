"""ptft-bench: which fine-tuning strategy for my task and budget, and what does it cost?"""

from ptft_bench.strategy.registry import Strategy, get_strategy, list_strategies, register_strategy

__version__ = "0.1.0"
__all__ = ["Strategy", "get_strategy", "list_strategies", "register_strategy", "__version__"]
