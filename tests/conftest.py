"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the real datasets: $RECAGENT_DATA_DIR, else ../shared/data.

    Skips the test when the folder does not exist.
    """
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("RECAGENT_DATA_DIR") or default)
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set RECAGENT_DATA_DIR)")
    return path
