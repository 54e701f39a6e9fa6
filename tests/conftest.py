"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ptft_bench.offline import set_offline_defaults

# Offline before any test imports huggingface_hub (it reads HF_HUB_OFFLINE once, at import), as
# the CLI is: a model name that is not on disk then fails at once instead of after five retries
# (about 23 s each, which made suite expansion the slowest unit test).
set_offline_defaults()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests keep their caches (tokens, the CPU probe, speed calibration) out of the user's
    ~/.cache: tiny test models would otherwise calibrate the estimate of real sweeps."""
    if "PTFT_CACHE" not in os.environ:
        os.environ["PTFT_CACHE"] = str(tmp_path_factory.mktemp("ptft-cache"))
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared data folder (GLUE, corpora): ``$PTFT_SHARED_DATA`` or ``../shared/data``.

    PTFT_SHARED_DATA is the one environment variable for it. Tests that need it are skipped,
    with the reason, where it is absent.
    """
    path = Path(os.environ.get("PTFT_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(
            f"shared data folder {path} not found: set PTFT_SHARED_DATA to the folder that holds "
            "glue/ and corpora/"
        )
    return path
