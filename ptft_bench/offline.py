"""Offline by default: one opt-in rule for the hub (models and data), and quiet libraries.

Loading from the Hugging Face hub fails without a network and costs retries and timeouts where
there is one but it is slow, so the tool works offline unless the user opts in
(`PTFT_ONLINE=1`); `--quiet` silences the libraries' loading bars and warnings.
"""

from __future__ import annotations

import os


def hub_allowed() -> bool:
    """The hub is used only when the user opts in (PTFT_ONLINE=1 or HF_HUB_OFFLINE=0)."""
    return os.environ.get("PTFT_ONLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "0"


def set_offline_defaults() -> None:
    """Offline unless asked otherwise, so a missing network never costs retries and timeouts.

    Also hides the one library warning every run printed that no user can act on: peft reads
    transformers' deprecated `is_gradient_checkpointing` when it wraps a model.
    """
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
    if not hub_allowed():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def quiet_libraries() -> None:
    """No loading bars, deprecation warnings or info logs from the libraries (`--quiet`)."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # a third-party package: loaded only for hub data
        pass
