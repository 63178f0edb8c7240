"""``filter_items``: keep the candidates that satisfy the user's constraints.

Every exclusion carries its reason, so the trace (and the LLM) can say why an item is gone.
Matching is case-insensitive; a category matches any level of the item's category path
("Pens" matches Office > Writing > Pens) and any category it is also in (a film's other
genres: "War" matches Movies > Action also in Drama, War). With a price bound, items of unknown price are
excluded: a user who said "under $30" does not want a surprise. One product listed under
several ids (the same title) is shown once, and not at all once the user has it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from recagent.catalog.model import Dataset, Item
from recagent.tools.base import ITEM_IDS, Tool, ToolContext, ToolParts, object_schema
from recagent.tools.candidates import Candidate
from recagent.tools.constraints import Constraints, normalise

__all__ = ["Constraints", "FilterItems", "FilterResult"]

_UNAVAILABLE = {"out of stock", "unavailable", "discontinued", "false", "no", "0"}


@dataclass(frozen=True)
class FilterResult:
    kept: list[Candidate]
    excluded: dict[str, str] = field(default_factory=dict)  # item id -> reason


class FilterItems(Tool):
    name = "filter_items"
    description = "Keep the candidates that meet the user's constraints (plus any bounds given)."
    parameters: ClassVar[dict[str, Any]] = object_schema(
        ["item_ids"], item_ids=ITEM_IDS,
        max_price={"type": ["number", "null"], "default": None},
        min_price={"type": ["number", "null"], "default": None},
        exclude_brands={"type": "array", "items": {"type": "string"}, "default": []},
    )

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @classmethod
    def build(cls, parts: ToolParts) -> FilterItems:
        return cls(parts.dataset)

    def invoke(self, context: ToolContext, item_ids: list[str], max_price: float | None = None,
               min_price: float | None = None,
               exclude_brands: list[str] | None = None) -> FilterResult:
        """The turn's constraints, tightened (never loosened) by the bounds given."""
        extra = Constraints(max_price=max_price, min_price=min_price,
                            exclude_brands=tuple(exclude_brands or ()))
        return self(context.known(item_ids), extra.merged(context.constraints),
                    exclude=context.excluded, owned=context.owned)

    def observe(self, result: FilterResult) -> dict[str, Any]:
        return {"kept": [c.item_id for c in result.kept], "excluded": result.excluded}

    def summarize(self, result: FilterResult) -> str:
        return f"kept {len(result.kept)} of {len(result.kept) + len(result.excluded)}"

    def __call__(
        self,
        candidates: Iterable[Candidate],
        constraints: Constraints,
        *,
        exclude: Iterable[str] = (),
        exclude_reason: str = "already seen, shown or disliked",
        owned: Iterable[str] = (),
        one_per_title: bool = True,
    ) -> FilterResult:
        """``owned``: the user's history. An item with the title of one of them is the same
        product under another id, so it goes too (twins of shown or disliked items stay
        eligible). ``one_per_title``: keep only the first of items sharing a title; a search
        that filters before the exclusions are known turns it off, or a twin of a disliked
        item would be dropped in favour of the disliked one."""
        excluded_ids = set(exclude)
        items = self.dataset.items
        owned_titles = {items[i].title_key for i in owned if i in items}
        kept_titles: dict[str, str] = {}  # title key -> the kept item with that title
        kept: list[Candidate] = []
        excluded: dict[str, str] = {}
        for c in candidates:
            item = items.get(c.item_id)
            if item is None:
                reason = "not in the catalog"
            elif c.item_id in excluded_ids:
                reason = exclude_reason
            elif item.title_key in owned_titles:
                reason = "same title as an item the user has"
            elif one_per_title and item.title_key in kept_titles:
                reason = f"same title as {kept_titles[item.title_key]}"
            else:
                reason = self.violation(item, constraints)
            if reason is None:
                kept.append(c)
                kept_titles[item.title_key] = c.item_id
            else:
                excluded[c.item_id] = reason
        return FilterResult(kept, excluded)

    @staticmethod
    def violation(item: Item, constraints: Constraints) -> str | None:
        """Why ``item`` breaks ``constraints``, or None when it satisfies them all."""
        c = constraints
        if c.min_price is not None or c.max_price is not None:
            if item.price is None:
                return "price unknown"
            if c.min_price is not None and item.price < c.min_price:
                return f"price ${item.price:g} below ${c.min_price:g}"
            if c.max_price is not None and item.price > c.max_price:
                return f"price ${item.price:g} above ${c.max_price:g}"
        path = [normalise(x) for x in item.categories]
        if c.categories and not any(normalise(w) in p for w in c.categories for p in path):
            return f"category {' > '.join(item.category) or 'unknown'} not in {', '.join(c.categories)}"
        for w in c.exclude_categories:
            if any(normalise(w) in p for p in path):
                return f"category {w} excluded"
        brand = normalise(item.brand or "")
        if c.brands and brand not in {normalise(b) for b in c.brands}:
            return f"brand {item.brand or 'unknown'} not in {', '.join(c.brands)}"
        if brand and brand in {normalise(b) for b in c.exclude_brands}:
            return f"brand {item.brand} excluded"
        if c.in_stock_only:
            status = normalise(item.attributes.get("availability", item.attributes.get("in_stock", "")))
            if status in _UNAVAILABLE:
                return "not available"
        return None
