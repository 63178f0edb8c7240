"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever, interaction_counts
from recagent.retrieval.registry import RetrieverContext

__all__ = ["Popularity"]


class Popularity(Retriever):
    """Score = number of training interactions with the item (the same for every user)."""

    name = "popularity"

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.counts = np.zeros(len(dataset.items), dtype=np.float32)

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> Popularity:
        return cls(ctx.dataset)

    def fit(self, train: Sequence[History]) -> None:
        self.counts = interaction_counts(self.dataset, train)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()
