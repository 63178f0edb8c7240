"""``explain``: the evidence for why an item fits a user — facts only, no prose.

Evidence is what the explanation may talk about, and all the faithfulness check accepts:
- the history items the candidate is closest to (cosine of their item embeddings);
- attributes it shares with those history items (category, brand, other attributes);
- the user's constraints it satisfies, and its own price.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Evidence, closest_in_history
from recagent.tools.base import ITEM_ID, Tool, ToolContext, ToolParts, object_schema
from recagent.tools.candidates import Candidate
from recagent.tools.constraints import Constraints

__all__ = ["Explain", "ItemEvidence"]


@dataclass(frozen=True)
class ItemEvidence:
    item_id: str
    title: str
    price: float | None
    related: tuple[Evidence, ...] = ()
    shared: dict[str, str] = field(default_factory=dict)  # attribute -> value shared with history
    satisfies: tuple[str, ...] = ()  # what it meets of the request (Constraints.describe_for)
    category: tuple[str, ...] = ()  # the item's own category path (what it may be called)

    def as_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "price": self.price,
            "related": [{"item_id": e.item_id, "title": e.title, "similarity": round(e.similarity, 4)}
                        for e in self.related],
            "shared": dict(self.shared),
            "satisfies": list(self.satisfies),
        }


class Explain(Tool):
    name = "explain"
    description = "Evidence that relates an item to the user's history."
    parameters: ClassVar[dict[str, Any]] = object_schema(["item_id"], item_id=ITEM_ID)

    def __init__(
        self,
        dataset: Dataset,
        item_embeddings: Callable[[], np.ndarray],
        *,
        top: int = 3,
        min_similarity: float = 0.4,
    ) -> None:
        self.dataset = dataset
        self._embeddings = item_embeddings  # called lazily: the index may still be building
        self.top = top
        self.min_similarity = min_similarity

    @classmethod
    def build(cls, parts: ToolParts) -> Explain:
        return cls(parts.dataset, parts.item_embeddings)

    def invoke(self, context: ToolContext, item_id: str) -> ItemEvidence:
        return self(item_id, context.history, context.constraints)

    def observe(self, result: ItemEvidence) -> dict[str, Any]:
        return result.as_dict()

    def summarize(self, result: ItemEvidence) -> str:
        return f"{len(result.related)} related, shared {sorted(result.shared)}"

    def __call__(
        self,
        candidate: Candidate | str,
        history: History,
        constraints: Constraints | None = None,
    ) -> ItemEvidence:
        item_id = candidate.item_id if isinstance(candidate, Candidate) else str(candidate)
        item = self.dataset.items.get(item_id)
        if item is None:
            raise ToolError(f"explain: no item {item_id!r} in the catalog")
        related = tuple(candidate.evidence) if isinstance(candidate, Candidate) else ()
        if not related and history:
            related = self._closest(item_id, history)
            # A tent is not "related" to a notebook because the notebook is the closest thing
            # the user bought: a weak match counts only when it is of the item's own category.
            if related and related[0].similarity < self.min_similarity and \
                    not set(self.dataset.items[related[0].item_id].kinds) & set(item.kinds):
                related = ()
        # The closest history item always counts; weaker ones only when they are close too.
        related = related[:1] + tuple(e for e in related[1:] if e.similarity >= self.min_similarity)
        shared = self._shared(item_id, [e.item_id for e in related])
        satisfies = tuple((constraints or Constraints()).describe_for(item))
        return ItemEvidence(item.item_id, item.title, item.price, related, shared, satisfies,
                            tuple(item.category))

    def _closest(self, item_id: str, history: History) -> tuple[Evidence, ...]:
        return tuple(closest_in_history(self.dataset, history, self._vectors, item_id, self.top))

    @cached_property
    def _vectors(self) -> np.ndarray:
        """The item embeddings, read once (from Chroma: 0.24 s a time on the demo shop, which
        was most of a turn when every explained item read them again)."""
        return self._embeddings()

    def _shared(self, item_id: str, related_ids: list[str]) -> dict[str, str]:
        item = self.dataset.items[item_id]
        others = [self.dataset.items[i] for i in related_ids]
        shared: dict[str, str] = {}
        # a film's genres beyond its first count ("Romance" for a Comedy|Romance after a
        # Drama|Romance): the first the item and a related one are both in
        held = {c for o in others for c in o.kinds}
        common = [c for c in item.kinds if c in held]
        if common:
            shared["category"] = common[0]
        if item.brand and any(o.brand == item.brand for o in others):
            shared["brand"] = item.brand
        for key, value in item.attributes.items():
            if key.endswith("_url") or key in shared:
                continue
            if any(o.attributes.get(key) == value for o in others):
                shared[key] = value
        return shared
