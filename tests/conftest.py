"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
