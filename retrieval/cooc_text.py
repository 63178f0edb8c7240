"""The default before any training: item-kNN over every history fused with the history's
text profile (:class:`~recagent.retrieval.text_profile.TextProfile`, the recency-weighted
item text embeddings).

Fitting it takes seconds (a sparse item-item matrix) and serving needs no encoder pass, so a
dataset without a trained seqrec checkpoint still recommends what people bought *together*
with the user's items, not only what reads like them. Weights 0.6 / 0.4: on the demo shop's
validation stage (3,000 users; docs/scale.md) NDCG@10 is flat from 0.3 to 0.6 (0.0387-0.0395
in score order, 0.0361-0.0365 with the categories spread as ``recommend`` shows them), where
item-kNN 0.7 + MiniLM over the history text 0.3 (the default before) gave 0.0373 / 0.0343;
0.6 is the largest kNN weight on that plateau, the one that keeps what was bought together
above mere look-alikes (a camera's tripod above other cameras). Items in no
history (cold) have no co-occurrence and are scored by their text alone, through the
fusion's standardised text score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.fusion import FusionScorer
from recagent.retrieval.index import BuildStats, ItemIndex
from recagent.retrieval.registry import RetrieverContext
from recagent.retrieval.text_profile import TextProfile

__all__ = ["COOC_TEXT_WEIGHTS", "CoocTextRetriever"]

COOC_TEXT_WEIGHTS = (0.6, 0.4)
"""item-kNN's and text's weights, chosen on the demo shop's validation stage (see above)."""


class CoocTextRetriever(Retriever):
    name = "cooc-text"

    def __init__(self, dataset: Dataset, index: ItemIndex, *, recency_decay: float = 0.7,
                 weights: Sequence[float] = COOC_TEXT_WEIGHTS) -> None:
        self.dataset = dataset
        self.index = index
        self.text = TextProfile(dataset, index.embeddings)
        self.scorer = FusionScorer([ItemKNN(dataset, recency_decay=recency_decay), self.text],
                                   list(weights), name=self.name)

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> CoocTextRetriever:
        return cls(ctx.dataset, ctx.text_index())

    def fit(self, train: Sequence[History]) -> None:
        self.scorer.fit(train)  # item-kNN's matrix; the text side has nothing to fit

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.scorer.score(histories)

    def prepare(self, *, show_progress: bool = False) -> BuildStats:
        """The item-text index the text side reads (the kNN side is fitted, not stored)."""
        return self.index.build(show_progress=show_progress)

    @property
    def evidence_vectors(self) -> np.ndarray:
        """Evidence in the item-text space: the history items each pick reads closest to."""
        return self.text.evidence_vectors
