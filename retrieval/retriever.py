"""History-text retrieval: encode a user's history text, find the closest items.

:meth:`HistoryRetriever.score` scores every item exactly (dot products against all item
embeddings), which full-ranking evaluation needs; ``recommend`` (from the
:class:`~recagent.retrieval.base.Retriever` base) asks the Chroma index (approximate nearest
neighbours) for one user's candidates, and the evidence of a pick is the history items whose
text is closest to it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import cached_property

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import BuildStats, ItemIndex, SearchHit
from recagent.retrieval.registry import RetrieverContext
from recagent.retrieval.text import history_text

__all__ = ["HistoryRetriever"]


class HistoryRetriever(Retriever):
    """Retrieves items whose text is closest to the text of a user's history."""

    name = "text"

    def __init__(
        self,
        dataset: Dataset,
        encoder: TextEncoder,
        index: ItemIndex,
        *,
        token_budget: int | None = None,
        evidence_per_item: int = 3,
    ) -> None:
        self.dataset = dataset
        self.encoder = encoder
        self.index = index
        self._token_budget = token_budget
        self.evidence_per_item = evidence_per_item

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> HistoryRetriever:
        index = ctx.text_index()
        return cls(ctx.dataset, index.encoder, index)

    @property
    def token_budget(self) -> int:
        return self._token_budget or self.encoder.max_tokens

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        return self.index.embeddings()

    def history_texts(self, histories: Sequence[History]) -> list[str]:
        return [
            history_text(
                self.dataset, h, count_tokens=self.encoder.count_tokens, budget=self.token_budget
            )
            for h in histories
        ]

    def query_vectors(self, histories: Sequence[History], *, show_progress: bool = False) -> np.ndarray:
        """The histories' text embeddings, through the encoder's cache: tuning, evaluation
        and serving that share an encoder encode a history's text once."""
        return self.encoder.encode(self.history_texts(histories), show_progress=show_progress,
                                   cache=True)

    def prepare(self, *, show_progress: bool = False) -> BuildStats:
        """Build or update the item-text index (a hash check when it is current), and load
        the encoder that turns histories into queries."""
        stats = self.index.build(show_progress=show_progress)
        _ = self.encoder.model
        return stats

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.query_vectors(histories) @ self.item_embeddings.T

    def candidates(self, history: History, n: int,
                   exclude: Collection[str] = ()) -> list[SearchHit]:
        """The ``n`` nearest items in the Chroma index (seen and excluded ones included: the
        base class skips them)."""
        return self.index.search(self.query_vectors([history]), n)[0]

    @property
    def evidence_vectors(self) -> np.ndarray:
        return self.item_embeddings
