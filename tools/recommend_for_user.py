"""``recommend_for_user``: history-based candidates from the configured retriever."""

from __future__ import annotations

from collections.abc import Sequence

from recagent.catalog.errors import ToolError
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.tools.candidates import Candidate

__all__ = ["CandidateSource", "RecommendForUser"]

CandidateSource = Retriever
"""What the tool draws candidates from: any retriever (the contract in retrieval.base)."""


class RecommendForUser:
    """Top-``k`` unseen items for a history, each with its evidence (closest history items).

    An empty history gets the catalog's most popular items (the retriever's fallback).
    """

    name = "recommend_for_user"

    def __init__(self, source: CandidateSource) -> None:
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
