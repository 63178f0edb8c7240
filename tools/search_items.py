"""``search_items``: free-text search over the Chroma index, with structured filters.

Filters run in Python over an over-fetched result (Chroma's metadata ``where`` is ~10x slower
than an unfiltered query), through the same :class:`~recagent.tools.filter_items.Constraints`
that ``filter_items`` uses, so both tools agree on what a filter means.
"""

from __future__ import annotations

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import ItemIndex
from recagent.tools.candidates import Candidate
from recagent.tools.filter_items import Constraints, FilterItems

__all__ = ["SearchItems"]


class SearchItems:
    name = "search_items"

    def __init__(
        self, dataset: Dataset, encoder: TextEncoder, index: ItemIndex, *, overfetch: int = 5
    ) -> None:
        self.dataset = dataset
        self.encoder = encoder
        self.index = index
        self.overfetch = overfetch
        self._filter = FilterItems(dataset)

    def __call__(
        self, query: str, k: int = 20, constraints: Constraints | None = None
    ) -> list[Candidate]:
        query = query.strip()
        if not query:
            raise ToolError("search_items needs a non-empty query")
        if not 1 <= k <= 500:
            raise ToolError(f"search_items: k must be in 1..500, not {k}")
        vector = self.encoder.encode([query])
        hits = self.index.search(vector, k * self.overfetch)[0]
        found = [
            Candidate(h.item_id, self.dataset.items[h.item_id].title, h.score, {"search": h.score})
            for h in hits
            if h.item_id in self.dataset.items
        ]
        if constraints is not None:
            found = self._filter(found, constraints).kept
        return found[:k]
