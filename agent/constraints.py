"""A rule-based parser for the constraints people state most often in a shopping chat.

"under $30", "between $20 and $50", "at least $100", "no Nikon", "only Sony", "no horror",
"in stock", "more like #2". Brands and categories are recognised only when the catalog has
them, so "no thanks" never becomes a brand filter. What is left of the message after the
constraints is the free-text ``query`` (for ``search_items``), unless it is only filler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from recagent.catalog.model import Dataset
from recagent.tools.filter_items import Constraints

__all__ = ["ConstraintParser"]

_MONEY = r"\$?\s*(\d+(?:[.,]\d+)?)\s*(?:\$|dollars?|usd|bucks)?"
_MAX = re.compile(r"\b(?:under|below|less than|cheaper than|at most|max(?:imum)?|up to|no more than|<=?)\s*" + _MONEY, re.IGNORECASE)
_MAX_AFTER = re.compile(r"\$\s*(\d+(?:[.,]\d+)?)\s*(?:or less|or under|max)\b", re.IGNORECASE)
_MIN = re.compile(r"\b(?:over|above|more than|at least|min(?:imum)?|from|>=?)\s*" + _MONEY, re.IGNORECASE)
_BETWEEN = re.compile(r"\bbetween\s*" + _MONEY + r"\s*(?:and|-|to)\s*" + _MONEY, re.IGNORECASE)
_RANGE = re.compile(r"\$\s*(\d+(?:[.,]\d+)?)\s*(?:-|to)\s*\$?\s*(\d+(?:[.,]\d+)?)", re.IGNORECASE)
_NEGATE = re.compile(r"\b(?:no|not|without|except|avoid|exclude|excluding|nothing from|anything but|hate)\s+(?:any\s+|more\s+)?([\w&'.\- ]+)", re.IGNORECASE)
_ONLY = re.compile(r"\b(?:only|just|from|by|made by)\s+([\w&'.\- ]+)", re.IGNORECASE)
_LIKE = re.compile(r"\b(?:more like|similar to|like|same as)\s*(?:#|number|no\.?|item)\s*(\d+)", re.IGNORECASE)
_STOCK = re.compile(r"\bin[- ]stock\b|\bavailable now\b", re.IGNORECASE)
_FILLER = {
    "a", "an", "the", "me", "i", "my", "some", "something", "anything", "please", "show",
    "recommend", "recommendations", "suggest", "want", "would", "like", "need", "looking",
    "for", "find", "give", "get", "any", "more", "other", "else", "items", "item", "stuff",
    "can", "you", "what", "should", "buy", "next", "and", "or", "with", "to", "is", "are",
    "it", "that", "this", "those", "these", "ones", "one", "of", "in", "on", "but", "also",
    "price", "priced", "cost", "costs", "costing", "brand", "thanks", "hi", "hello", "ok",
    "no", "yes", "now", "instead", "too", "very", "really", "good", "great", "nice", "new",
}


def _money(text: str) -> float:
    return float(text.replace(",", "."))


@dataclass
class ConstraintParser:
    dataset: Dataset

    @cached_property
    def brands(self) -> dict[str, str]:
        """Lower-cased brand -> the catalog's spelling."""
        return {b.casefold(): b for b in {i.brand for i in self.dataset.items.values() if i.brand}}

    @cached_property
    def categories(self) -> dict[str, str]:
        """Lower-cased category name (any level) -> the catalog's spelling."""
        names = {c for i in self.dataset.items.values() for c in i.category}
        return {c.casefold(): c for c in names if len(c) >= 3}

    def _known(self, phrase: str, names: dict[str, str]) -> str | None:
        """The longest known name that ``phrase`` starts with (word boundary), if any."""
        phrase = phrase.casefold().strip()
        best = None
        for key, name in names.items():
            if not phrase.startswith(key):
                continue
            at_boundary = len(phrase) == len(key) or not phrase[len(key)].isalnum()
            if at_boundary and (best is None or len(key) > len(best[0])):
                best = (key, name)
        if best is None and phrase.endswith("s"):  # "no cameras" -> category "Camera"
            return self._known(phrase[:-1], names) if len(phrase) > 3 else None
        return best[1] if best else None

    def parse(self, message: str, *, last_shown: list[str] | None = None) -> Constraints:
        text = message
        spans: list[tuple[int, int]] = []
        found: dict[str, object] = {}

        def take(match: re.Match) -> None:
            spans.append(match.span())

        if m := _BETWEEN.search(text) or _RANGE.search(text):
            low, high = sorted((_money(m.group(1)), _money(m.group(2))))
            found.update(min_price=low, max_price=high)
            take(m)
        else:
            if m := _MAX.search(text) or _MAX_AFTER.search(text):
                found["max_price"] = _money(m.group(1))
                take(m)
            # "from $50" is a price, "from 1995" is not: "from" needs the dollar sign.
            m = _MIN.search(text)
            if m and ("$" in m.group(0) or not m.group(0).casefold().startswith("from")):
                found["min_price"] = _money(m.group(1))
                take(m)
        exclude_brands, exclude_categories, brands, categories = [], [], [], []
        for m in _NEGATE.finditer(text):
            if brand := self._known(m.group(1), self.brands):
                exclude_brands.append(brand)
                spans.append((m.start(), m.start(1) + len(brand)))
            elif category := self._known(m.group(1), self.categories):
                exclude_categories.append(category)
                spans.append((m.start(), m.start(1) + len(category)))
        for m in _ONLY.finditer(text):
            if brand := self._known(m.group(1), self.brands):
                brands.append(brand)
                spans.append((m.start(), m.start(1) + len(brand)))
        if m := _LIKE.search(text):
            number = int(m.group(1))
            shown = last_shown or []
            if 1 <= number <= len(shown):
                found["like_item"] = shown[number - 1]
            take(m)
        if m := _STOCK.search(text):
            found["in_stock_only"] = True
            take(m)
        for lower, name in self.categories.items():
            stem = lower[:-1] if lower.endswith("s") and len(lower) > 3 else lower
            m = re.search(rf"\b{re.escape(stem)}(?:s|es)?\b", text, re.IGNORECASE)
            if m and not any(s <= m.start() < e for s, e in spans):
                categories.append(name)
        # "running shoes" names both Running and Running Shoes: keep the most specific.
        categories = [c for c in categories
                      if not any(c != o and c.casefold() in o.casefold() for o in categories)]
        rest = "".join(ch for i, ch in enumerate(text) if not any(s <= i < e for s, e in spans))
        words = re.findall(r"[\w'&.-]+", rest)
        while words and words[0].casefold() in _FILLER:
            words.pop(0)
        while words and words[-1].casefold() in _FILLER:
            words.pop()
        query = " ".join(words)
        return Constraints(
            min_price=found.get("min_price"),  # type: ignore[arg-type]
            max_price=found.get("max_price"),  # type: ignore[arg-type]
            categories=tuple(dict.fromkeys(categories)),
            exclude_categories=tuple(dict.fromkeys(exclude_categories)),
            brands=tuple(dict.fromkeys(brands)),
            exclude_brands=tuple(dict.fromkeys(exclude_brands)),
            in_stock_only=bool(found.get("in_stock_only", False)),
            query=query,
            like_item=found.get("like_item"),  # type: ignore[arg-type]
        )
