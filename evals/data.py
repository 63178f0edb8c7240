"""Where the real datasets are, for the evaluations and benchmarks that read them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root"]


def data_root() -> Path:
    """``RECAGENT_DATA_DIR``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("RECAGENT_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
