"""A rule-based parser for the constraints people state most often in a shopping chat.

"under $30", "between $20 and $50", "at least $100", "no Nikon", "only Sony", "no horror",
"in stock", "more like #2". Brands and categories are recognised only when the catalog has
them, so "no thanks" never becomes a brand filter. What is left of the message after the
constraints is the free-text ``query`` (for ``search_items``), unless it is only filler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.tools.filter_items import Constraints

__all__ = ["CONSTRAINT_SCHEMA", "ConstraintParser", "combine", "parse_with_llm"]

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
    "do", "does", "did", "we", "us", "our", "have", "has", "had", "got", "there", "here",
    "how", "which", "maybe", "perhaps", "just", "about", "around",
}


def _money(text: str) -> float:
    return float(text.replace(",", "."))


@dataclass
class ConstraintParser:
    dataset: Dataset

    @cached_property
    def brands(self) -> dict[str, str]:
        """Lower-cased brand -> the catalog's spelling. A brand with a company suffix after a
        comma ("Apera Instruments, LLC") is also known by the part before it, which is how
        people say it (and where the negation and "only" patterns stop)."""
        names = {i.brand for i in self.dataset.items.values() if i.brand}
        known = {b.casefold(): b for b in names}
        for b in sorted(names):
            short = b.split(",")[0].strip().casefold()
            if "," in b and len(short) >= 3:
                known.setdefault(short, b)
        return known

    @cached_property
    def has_prices(self) -> bool:
        """Whether any catalog item has a price (MovieLens and the Amazon sets have none)."""
        return any(i.price is not None for i in self.dataset.items.values())

    @cached_property
    def categories(self) -> dict[str, str]:
        """Lower-cased category name (any level) -> the catalog's spelling."""
        names = {c for i in self.dataset.items.values() for c in i.category}
        return {c.casefold(): c for c in names if len(c) >= 3}

    def known(self, phrase: str, names: dict[str, str]) -> str | None:
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
            return self.known(phrase[:-1], names) if len(phrase) > 3 else None
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
            if brand := self.known(m.group(1), self.brands):
                exclude_brands.append(brand)
                spans.append((m.start(), m.start(1) + len(brand)))
            elif category := self.known(m.group(1), self.categories):
                exclude_categories.append(category)
                spans.append((m.start(), m.start(1) + len(category)))
        for m in _ONLY.finditer(text):
            if brand := self.known(m.group(1), self.brands):
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
        found_at: dict[str, tuple[int, int]] = {}
        for lower, name in self.categories.items():
            stem = lower[:-1] if lower.endswith("s") and len(lower) > 3 else lower
            m = re.search(rf"\b{re.escape(stem)}(?:s|es)?\b", text, re.IGNORECASE)
            if m and not any(s <= m.start() < e for s, e in spans):
                found_at[name] = m.span()
        # "dog toys" names Dog Toys and, inside it, Dogs; "running shoes" names Running
        # Shoes and Running: a name found inside a longer one's words is not meant.
        categories = [c for c, (s0, e0) in found_at.items()
                      if not any(o != c and s1 <= s0 and e0 <= e1 and (e1 - s1) > (e0 - s0)
                                 for o, (s1, e1) in found_at.items())]
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


def _nullable(kind: str) -> dict:
    return {"anyOf": [{"type": kind, "minimum": 0, "maximum": 1_000_000}, {"type": "null"}]}


def _names() -> dict:
    return {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 5}


# The JSON the LLM must produce (vLLM enforces it with guided decoding).
CONSTRAINT_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "max_price": _nullable("number"),
        "min_price": _nullable("number"),
        "brands": _names(),
        "exclude_brands": _names(),
        "categories": _names(),
        "exclude_categories": _names(),
        "in_stock_only": {"type": "boolean"},
    },
    "required": ["max_price", "min_price", "brands", "exclude_brands", "categories",
                 "exclude_categories", "in_stock_only"],
    "additionalProperties": False,
}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def parse_with_llm(llm, rules: ConstraintParser, message: str) -> Constraints:
    """The constraints an LLM with structured output reads in ``message``, kept only where
    the message supports them.

    A price must be a number written in the message; a brand or category must be one the
    catalog has and must be named in the message. Anything else the LLM returns is dropped,
    so a model that invents a constraint cannot hide items from the user. A reply that is not
    the JSON object asked for is a :class:`ToolError` (the rules' parse then stands alone).
    """
    data = llm.generate_json(render("parse_constraints", message=message), CONSTRAINT_SCHEMA)
    if not isinstance(data, dict):
        raise ToolError(f"parse_constraints_llm: expected a JSON object, got {type(data).__name__}")
    numbers = {_money(n) for n in _NUMBER.findall(message)}
    lowered = message.casefold()

    def price(key: str) -> float | None:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if any(abs(value - n) < 0.005 for n in numbers) else None

    def names(key: str, known: dict[str, str]) -> tuple[str, ...]:
        values = data.get(key)
        found = []
        for value in values if isinstance(values, list) else []:
            name = rules.known(value, known) if isinstance(value, str) else None
            if name and name.casefold() in lowered:
                found.append(name)
        return tuple(dict.fromkeys(found))

    return Constraints(
        min_price=price("min_price"),
        max_price=price("max_price"),
        categories=names("categories", rules.categories),
        exclude_categories=names("exclude_categories", rules.categories),
        brands=names("brands", rules.brands),
        exclude_brands=names("exclude_brands", rules.brands),
        in_stock_only=data.get("in_stock_only") is True and ("stock" in lowered or "available" in lowered),
    )


def combine(rules: Constraints, llm: Constraints) -> Constraints:
    """The rules' parse of a message completed by the LLM's, the rules winning.

    The LLM only adds what the rules did not find: its price bounds count only when the rules
    found none (a weak model reads "under $50" as a minimum of 50 as readily as a maximum),
    and only when they are consistent (min <= max); its brands and categories are added,
    except where they contradict the rules (a brand the rules exclude cannot be wanted, and
    the reverse). The free-text query and "more like #N" stay the rules'.
    """
    rules_priced = rules.min_price is not None or rules.max_price is not None
    inverted = None not in (llm.min_price, llm.max_price) and llm.min_price > llm.max_price
    low, high = (rules.min_price, rules.max_price) if rules_priced or inverted else \
        (llm.min_price, llm.max_price)

    def add(ours: tuple[str, ...], theirs: tuple[str, ...], contrary: tuple[str, ...]):
        blocked = {c.casefold() for c in contrary}
        return tuple(dict.fromkeys(ours + tuple(t for t in theirs if t.casefold() not in blocked)))

    return replace(
        rules, min_price=low, max_price=high,
        brands=add(rules.brands, llm.brands, rules.exclude_brands),
        exclude_brands=add(rules.exclude_brands, llm.exclude_brands, rules.brands),
        categories=add(rules.categories, llm.categories, rules.exclude_categories),
        exclude_categories=add(rules.exclude_categories, llm.exclude_categories, rules.categories),
        in_stock_only=rules.in_stock_only or llm.in_stock_only,
    )
