"""``search_items``: free-text search over the Chroma index, with structured filters.

Filters run in Python over an over-fetched result (Chroma's metadata ``where`` is ~10x slower
than an unfiltered query), through the same :class:`~recagent.tools.filter_items.Constraints`
that ``filter_items`` uses, so both tools agree on what a filter means. When that leaves fewer
than ``k`` items (a small brand, a narrow price band), the search runs again with the
constraints as a Chroma ``where`` pre-filter, so a rare match is still found. In a catalog
whose titles name its products (:meth:`TitleWords.suits`), an over-fetched item whose title
holds the query's rare words ("threadlocker", "stethoscope") gains on those that only sound
alike to the encoder (:mod:`recagent.retrieval.title_words`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import ItemIndex, SearchHit
from recagent.retrieval.title_words import WEIGHT, TitleWords
from recagent.tools.base import LISTING_K, Tool, ToolContext, ToolParts, brief, object_schema
from recagent.tools.candidates import Candidate
from recagent.tools.filter_items import Constraints, FilterItems

__all__ = ["SearchItems"]


class SearchItems(Tool):
    name = "search_items"
    description = "Search the catalog by free text; returns items with id, title, price, category."
    parameters: ClassVar[dict[str, Any]] = object_schema(
        ["query"], query={"type": "string", "description": "What to look for, in the user's words."},
        k=LISTING_K)

    def __init__(
        self, dataset: Dataset, encoder: TextEncoder, index: ItemIndex, *, overfetch: int = 5,
        title_words: bool | None = None,
    ) -> None:
        """``title_words``: weigh the query's rare title words in (None: where the catalog
        :meth:`~TitleWords.suits`)."""
        self.dataset = dataset
        self.encoder = encoder
        self.index = index
        self.overfetch = overfetch
        self._filter = FilterItems(dataset)
        use = TitleWords.suits(dataset) if title_words is None else title_words
        self._title_words = TitleWords(dataset) if use else None

    @classmethod
    def build(cls, parts: ToolParts) -> SearchItems:
        return cls(parts.dataset, parts.encoder, parts.index)

    def invoke(self, context: ToolContext, query: str, k: int = 10) -> list[Candidate]:
        """Items for ``query`` that meet the turn's constraints."""
        return context.offer(self(query, context.listing_k(k), context.constraints))

    def observe(self, result: list[Candidate]) -> list[dict[str, Any]]:
        return [brief(self.dataset.items[c.item_id], c.score) for c in result]

    def summarize(self, result: list[Candidate]) -> str:
        return f"{len(result)} items"

    def __call__(
        self, query: str, k: int = 20, constraints: Constraints | None = None
    ) -> list[Candidate]:
        query = query.strip()
        if not query:
            raise ToolError("search_items needs a non-empty query")
        if not 1 <= k <= 500:
            raise ToolError(f"search_items: k must be in 1..500, not {k}")
        vector = self.encoder.encode([query], cache=True)  # a repeated query is not re-encoded
        found = self._candidates(self.index.search(vector, k * self.overfetch)[0], query)
        if constraints is not None:
            found = self._filter(found, constraints, one_per_title=False).kept
            where = _where(constraints)
            if len(found) < k and where is not None:
                seen = {c.item_id for c in found}
                hits = self.index.search(vector, k * self.overfetch, where=where)[0]
                more = self._candidates((h for h in hits if h.item_id not in seen), query)
                more = self._filter(more, constraints, one_per_title=False).kept
                found = found + more
        return sorted(found, key=lambda c: -c.score)[:k]

    def _candidates(self, hits: Iterable[SearchHit], query: str) -> list[Candidate]:
        """The hits that are catalog items, as candidates scored by the search: their
        similarity (``scores["cosine"]``) plus :data:`WEIGHT` times their share of the query's
        rare title words, where those count (``scores["search"]``, the order re-ranking reads)."""
        items = self.dataset.items
        found = [Candidate(h.item_id, items[h.item_id].title, h.score, {"cosine": h.score, "search": h.score})
                 for h in hits if h.item_id in items]
        if self._title_words is None:
            return found
        shares = self._title_words.scores(query, [c.item_id for c in found])
        return [c.rescored("search", c.score + WEIGHT * shares[c.item_id]) if c.item_id in shares else c
                for c in found]


def _where(constraints: Constraints) -> dict | None:
    """A Chroma pre-filter for the constraints the index metadata can express (brand, price,
    a category at any level or one the item is also in, wanted or excluded); the exact
    filter still runs on what it returns. Exclusions matter as much as wishes: "nothing for
    pets" searched by its words finds pet items first, so without them the over-fetched
    result can be all excluded."""
    clauses: list[dict] = []
    if constraints.brands:
        clauses.append({"brand": {"$in": list(constraints.brands)}})
    if constraints.min_price is not None:
        clauses.append({"price": {"$gte": float(constraints.min_price)}})
    if constraints.max_price is not None:
        clauses.append({"price": {"$lte": float(constraints.max_price)}})
    if constraints.categories:  # any category the item is in (Item.categories)
        wanted = [{"categories": {"$contains": name}} for name in constraints.categories]
        clauses.append(wanted[0] if len(wanted) == 1 else {"$or": wanted})
    if constraints.exclude_brands:
        clauses.append({"brand": {"$nin": list(constraints.exclude_brands)}})
    clauses += [{"categories": {"$not_contains": name}} for name in constraints.exclude_categories]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
