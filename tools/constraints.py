"""What the user asked for so far: price bounds, categories and brands in and out, stock, the
topic of the request and "more like #N". Every tool and the agent read constraints from here."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from recagent.catalog.model import Item

__all__ = ["Constraints", "normalise"]


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form of a name, for matching brands and categories."""
    return " ".join(text.casefold().split())


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
        the categories, the query and the item to be like are then the new request's alone
        ("more like #1" after "a tent for two" is no longer about a tent for two), while
        prices, brands and exclusions stay ("running shoes" then "something for my camera"
        must not keep looking among running shoes)."""
        changes: dict[str, object] = {}
        new_topic = bool(newer.query or newer.categories or newer.like_item)
        for f in fields(self):
            new = getattr(newer, f.name)
            if new_topic and f.name in ("categories", "like_item", "query"):
                changes[f.name] = new
            elif isinstance(new, tuple):
                old = getattr(self, f.name)
                changes[f.name] = tuple(dict.fromkeys(old + new))
            elif new not in (None, "", False):
                changes[f.name] = new
        merged = replace(self, **changes)
        # "no Nikon" after "Nikon only" (and the reverse): the newer wish wins.
        brands = tuple(b for b in merged.brands if normalise(b) not in map(normalise, newer.exclude_brands))
        excluded = tuple(b for b in merged.exclude_brands if normalise(b) not in map(normalise, newer.brands))
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
        return out + self._lines_besides_price()

    def price_words(self) -> str | None:
        """The price bounds as a person says them: "price from $15 to $35", "price $15 or more"
        or "price $35 or less" (None: no bound). A 0.5B model read "price >= $15" as "costs
        $15 or less"."""
        low, high = self.min_price, self.max_price
        if low is not None and high is not None:
            return f"price from ${low:g} to ${high:g}"
        if low is not None:
            return f"price ${low:g} or more"
        return f"price ${high:g} or less" if high is not None else None

    def _lines_besides_price(self) -> list[str]:
        out = []
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

    def describe_for(self, item: Item) -> list[str]:
        """What ``item``, which the filter let through, meets, as an explanation says it: the
        price bounds in words (:meth:`price_words`), then :meth:`describe`'s other lines, the
        topic line (``about "..."``) only when the item's title or category shares a word
        with the request (a shampoo found by "a present for someone who loves to cook" is
        not about it)."""
        price = self.price_words()
        lines = ([price] if price else []) + self._lines_besides_price()
        if self.query and not _topic_words(self.query) & _topic_words(" ".join((item.title, *item.categories))):
            lines.remove(f'about "{self.query}"')
        return lines


_NOT_TOPIC_WORDS = """a an and any are as at be but by can for from get has have her his i
in is it its me my need of on or our some something that the their them this to want was
we what who with you your please looking like would good nice new one"""
_NOT_TOPIC = frozenset(_NOT_TOPIC_WORDS.split())


def _topic_words(text: str) -> set[str]:
    """Content words of ``text``, crudely stemmed ("cameras" -> "camera", "cooking" -> "cook")."""
    words = set()
    for w in re.findall(r"[a-z0-9]+", text.casefold()):
        if len(w) < 3 or w in _NOT_TOPIC:
            continue
        for suffix in ("ing", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3:
                w = w[: -len(suffix)]
                break
        words.add(w)
    return words
