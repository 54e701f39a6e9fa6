"""Strategy: the contract every fine-tuning strategy implements, and the registry.

Owns the `Strategy` base class, its `StrategyContext` and the registry (`registry`), the
training loop's event interface (`callbacks`), layer numbering helpers for freezing and
layer-wise learning rates (`layers`) and the one-line adapters for the Hugging Face `Trainer`
and Accelerate (`hf`). The strategies themselves live in the top-level `strategies/` package,
one file each.
"""
