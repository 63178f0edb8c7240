"""History text from cached item vectors: a history's profile is the recency-weighted sum of
its items' text embeddings, and an item's score its inner product with the profile.

It stands where :class:`~recagent.retrieval.retriever.HistoryRetriever` (MiniLM over the
rendered history text, 20-40 ms a history on a CPU core) was fusion's scorer of cold items:
the item embeddings are the text index's, read once, so scoring a history is one sparse row
times the embedding matrix, and serving and the cold-offset tuning never run the encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever, recency_weighted_rows, unit_rows
from recagent.retrieval.registry import RetrieverContext

__all__ = ["PROFILE_DECAY", "TextProfile"]

PROFILE_DECAY = 0.7
"""The weight of an item one step older than the next (the newest counts 1)."""


class TextProfile(Retriever):
    """score(u, i) = Σ_age decay^age · e(h_age) · e(i), e the unit text embeddings."""

    name = "text-profile"

    def __init__(self, dataset: Dataset, item_embeddings: Callable[[], np.ndarray], *,
                 recency_decay: float = PROFILE_DECAY) -> None:
        if not 0 < recency_decay <= 1:
            raise ValueError("recency_decay must be in (0, 1]")
        self.dataset = dataset
        self._embeddings = item_embeddings
        self.recency_decay = recency_decay

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> TextProfile:
        return cls(ctx.dataset, lambda: ctx.text_index().embeddings())

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        """The unit text embeddings, catalog order (read from the index once)."""
        return unit_rows(np.asarray(self._embeddings(), dtype=np.float32))

    def profiles(self, histories: Sequence[History]) -> np.ndarray:
        """Each history's recency-weighted sum of its items' embeddings."""
        weighting = recency_weighted_rows(self.dataset, histories, self.recency_decay)
        return np.asarray(weighting @ self.item_embeddings, dtype=np.float32)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.profiles(histories) @ self.item_embeddings.T

    @property
    def evidence_vectors(self) -> np.ndarray:
        return self.item_embeddings
