"""How long a catalog's text fields may be: every loader checks items against these, so a
hostile or broken file (a 50 MB description) fails at load time with one clear error instead
of costing gigabytes in the encoder and the index."""

from __future__ import annotations

from recagent.catalog.model import Item

__all__ = ["FIELD_LIMITS", "MAX_LINE", "item_problem"]

# Characters. Generous for real catalogs (Amazon Scientific: titles up to 495, one category
# level of 754), small enough that a broken or hostile file fails at once.
FIELD_LIMITS = {
    "item_id": 200,
    "title": 2_000,
    "description": 50_000,
    "brand": 500,
    "category level": 1_000,
    "attribute name": 200,
    "attribute value": 5_000,
}
MAX_LINE = 500_000  # characters in one line of items.jsonl: above any item within limits
_MAX_CATEGORY_DEPTH = 20
_MAX_ATTRIBUTES = 100


def item_problem(item: Item) -> str | None:
    """What is over a limit in ``item`` (one sentence), or None."""
    checks = [("item_id", item.item_id), ("title", item.title), ("description", item.description),
              ("brand", item.brand or "")]
    checks += [("category level", level) for level in item.categories]
    checks += [("attribute name", k) for k in item.attributes]
    checks += [("attribute value", v) for v in item.attributes.values()]
    for field, text in checks:
        if len(text) > FIELD_LIMITS[field]:
            return f"{field} is {len(text):,} characters, over the limit of {FIELD_LIMITS[field]:,}"
    if len(item.category) > _MAX_CATEGORY_DEPTH:
        return f"category has {len(item.category)} levels, over the limit of {_MAX_CATEGORY_DEPTH}"
    if len(item.also_in) > _MAX_CATEGORY_DEPTH:
        return f"also_in names {len(item.also_in)} categories, over the limit of {_MAX_CATEGORY_DEPTH}"
    if len(item.attributes) > _MAX_ATTRIBUTES:
        return f"{len(item.attributes)} attributes, over the limit of {_MAX_ATTRIBUTES}"
    return None
