"""Category popularity: the most popular items of the categories in the user's history."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever, interaction_counts
from recagent.retrieval.registry import RetrieverContext


class CategoryPopularity(Retriever):
    """score(u, i) = i's share of the training interactions, plus 1 when i's category (the
    last of its path) is one the user has bought from: their categories first, each by
    popularity."""

    name = "category-popularity"

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.share = np.zeros(len(dataset.items), dtype=np.float32)
        self.categories = np.array([(dataset.items[i].category or ("",))[-1]
                                    for i in dataset.item_ids], dtype=object)

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> CategoryPopularity:
        return cls(ctx.dataset)

    def fit(self, train: Sequence[History]) -> None:
        counts = interaction_counts(self.dataset, train)
        self.share = counts / max(1.0, float(counts.sum()))

    def score(self, histories: Sequence[History]) -> np.ndarray:
        index = self.dataset.item_index
        scores = np.tile(self.share, (len(histories), 1))
        for row, history in zip(scores, histories, strict=True):
            theirs = list({self.categories[index[x.item_id]] for x in history})
            row[np.isin(self.categories, theirs)] += 1.0
        return scores
