"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History


class Popularity:
    """Score = number of training interactions with the item (the same for every user)."""

    name = "popularity"

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.counts = np.zeros(len(dataset.items), dtype=np.float32)

    def fit(self, train: Sequence[History]) -> None:
        index = self.dataset.item_index
        counts = np.zeros(len(index), dtype=np.float32)
        for history in train:
            for inter in history:
                counts[index[inter.item_id]] += 1
        self.counts = counts

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()
