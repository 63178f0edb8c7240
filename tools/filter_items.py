"""``filter_items``: keep the candidates that satisfy the user's constraints.

Every exclusion carries its reason, so the trace (and the LLM) can say why an item is gone.
Matching is case-insensitive; a category matches any level of the item's category path
("Pens" matches Office > Writing > Pens). With a price bound, items of unknown price are
excluded: a user who said "under $30" does not want a surprise. One product listed under
several ids (the same title) is shown once, and not at all once the user has it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

from recagent.catalog.model import Dataset, Item
from recagent.tools.candidates import Candidate

__all__ = ["Constraints", "FilterItems", "FilterResult"]

_UNAVAILABLE = {"out of stock", "unavailable", "discontinued", "false", "no", "0"}


@dataclass(frozen=True)
class Constraints:
    """What the user asked for so far. Empty fields constrain nothing."""

    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    in_stock_only: bool = False
    query: str = ""
    like_item: str | None = None

    def merged(self, newer: Constraints) -> Constraints:
        """These constraints updated by ``newer``: its set fields win and lists accumulate,
        except that a new request (a query, a category or "more like #N") starts a new topic:
        the categories and the item to be like are then the new request's alone, while
        prices, brands and exclusions stay ("running shoes" then "something for my camera"
        must not keep looking among running shoes)."""
        changes: dict[str, object] = {}
        new_topic = bool(newer.query or newer.categories or newer.like_item)
        for f in fields(self):
            new = getattr(newer, f.name)
            if new_topic and f.name in ("categories", "like_item"):
                changes[f.name] = new
            elif isinstance(new, tuple):
                old = getattr(self, f.name)
                changes[f.name] = tuple(dict.fromkeys(old + new))
            elif new not in (None, "", False):
                changes[f.name] = new
        merged = replace(self, **changes)
        # "no Nikon" after "Nikon only" (and the reverse): the newer wish wins.
        brands = tuple(b for b in merged.brands if _norm(b) not in map(_norm, newer.exclude_brands))
        excluded = tuple(b for b in merged.exclude_brands if _norm(b) not in map(_norm, newer.brands))
        return replace(merged, brands=brands, exclude_brands=excluded)

    def is_empty(self) -> bool:
        return self == Constraints()

    def describe(self) -> list[str]:
        """Human-readable lines, e.g. ["price <= $30", "not brand Nikon"]."""
        out = []
        if self.min_price is not None:
            out.append(f"price >= ${self.min_price:g}")
        if self.max_price is not None:
            out.append(f"price <= ${self.max_price:g}")
        out += [f"category {c}" for c in self.categories]
        out += [f"not category {c}" for c in self.exclude_categories]
        out += [f"brand {b}" for b in self.brands]
        out += [f"not brand {b}" for b in self.exclude_brands]
        if self.in_stock_only:
            out.append("in stock")
        if self.query:
            out.append(f'about "{self.query}"')
        if self.like_item:
            out.append(f"like item {self.like_item}")
        return out


@dataclass(frozen=True)
class FilterResult:
    kept: list[Candidate]
    excluded: dict[str, str] = field(default_factory=dict)  # item id -> reason


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


class FilterItems:
    name = "filter_items"

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

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
        path = [_norm(x) for x in item.category]
        if c.categories and not any(_norm(w) in p for w in c.categories for p in path):
            return f"category {' > '.join(item.category) or 'unknown'} not in {', '.join(c.categories)}"
        for w in c.exclude_categories:
            if any(_norm(w) in p for p in path):
                return f"category {w} excluded"
        brand = _norm(item.brand or "")
        if c.brands and brand not in {_norm(b) for b in c.brands}:
            return f"brand {item.brand or 'unknown'} not in {', '.join(c.brands)}"
        if brand and brand in {_norm(b) for b in c.exclude_brands}:
            return f"brand {item.brand} excluded"
        if c.in_stock_only:
            status = _norm(item.attributes.get("availability", item.attributes.get("in_stock", "")))
            if status in _UNAVAILABLE:
                return "not available"
        return None
