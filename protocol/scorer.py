"""The interface every ranking model implements, so one harness evaluates them all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from recagent.catalog.model import Interaction

History = Sequence[Interaction]


@runtime_checkable
class Scorer(Protocol):
    """Scores every catalog item for a batch of user histories.

    ``fit`` sees only training histories (oldest first). ``score`` returns an array of shape
    (len(histories), n_items), float32, columns in ``Dataset.item_ids`` order; higher is
    better. Masking items the user already has is the caller's job.
    """

    name: str

    def fit(self, train: Sequence[History]) -> None: ...

    def score(self, histories: Sequence[History]) -> np.ndarray: ...
