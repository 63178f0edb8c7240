"""``recommend_for_user``: history-based candidates from the configured retriever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from recagent.catalog.errors import ToolError
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.tools.base import LISTING_K, Tool, ToolContext, ToolParts, brief, object_schema
from recagent.tools.candidates import Candidate

__all__ = ["RecommendForUser"]



class RecommendForUser(Tool):
    """Top-``k`` unseen items for a history, each with its evidence (closest history items).

    An empty history gets the catalog's most popular items (the retriever's fallback).
    """

    name = "recommend_for_user"
    description = "Candidates that fit the user's history, best first."
    parameters: ClassVar[dict[str, Any]] = object_schema(k=LISTING_K)

    @classmethod
    def build(cls, parts: ToolParts) -> RecommendForUser:
        return cls(parts.recommender)

    def invoke(self, context: ToolContext, k: int = 10) -> list[Candidate]:
        k = context.listing_k(k)
        return context.offer(self(context.history, k + len(context.excluded))[:k])

    def observe(self, result: list[Candidate]) -> list[dict[str, Any]]:
        return [brief(self.source.dataset.items[c.item_id], c.score) for c in result]

    def summarize(self, result: list[Candidate]) -> str:
        return f"{len(result)} items"

    def __init__(self, source: Retriever) -> None:
        self.source = source

    @property
    def name_of_source(self) -> str:
        """The retriever's name ("fusion", "seqrec", "text"), for the trace."""
        return self.source.name

    def __call__(self, history: History, k: int = 50) -> list[Candidate]:
        if not 1 <= k <= 500:
            raise ToolError(f"recommend_for_user: k must be in 1..500, not {k}")
        return [
            Candidate(r.item_id, r.title, r.score, {"retriever": r.score}, tuple(r.evidence))
            for r in self.source.recommend(history, k)
        ]

    def score_items(self, history: History, item_ids: Sequence[str]) -> dict[str, float]:
        """How well each of ``item_ids`` fits ``history`` by the same model (for ordering items
        found by a search); an empty history fits nothing in particular: all zeros."""
        if not history:
            return dict.fromkeys(item_ids, 0.0)
        row = self.source.score([history])[0]
        index = self.source.dataset.item_index
        return {i: float(row[index[i]]) for i in item_ids}
