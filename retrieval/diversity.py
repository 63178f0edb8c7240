"""A first screen of complements, not near-duplicates: at most a share of the top ``k`` from
any one (leaf) category, by re-ordering the ranked list (what is held back moves down).

Item-kNN and text both rank the neighbours of the newest history item first, and those are
mostly of its own category (nine pens after a pen). :func:`spread_categories` walks the
ranking best first and lets an item into the first ``k`` only while its category holds fewer
than ``max_per_category(k, share)`` of them; the items held back fill the slate only when
the ranking runs out of others. Items without a category are never held back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

__all__ = ["CATEGORY_SHARE", "max_per_category", "spread_categories"]

T = TypeVar("T")

CATEGORY_SHARE = 0.3
"""The most of a first screen one category may fill: 3 of 10 (chosen on the demo shop's
validation stage; docs/scale.md has the figures)."""


def max_per_category(k: int, share: float) -> int:
    """How many of the first ``k`` one category may fill: ``ceil(share * k)``, at least 1."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    return max(1, math.ceil(share * k - 1e-9))


def spread_categories(ranked: Iterable[T], category: Callable[[T], Hashable | None], k: int,
                      share: float = CATEGORY_SHARE) -> list[T]:
    """The first ``k`` of ``ranked`` re-ordered so that no category fills more than
    ``max_per_category(k, share)`` of them: best first, an item whose category is full waits,
    and the waiting ones fill what is left (in their order) when ``ranked`` runs out.
    ``category`` gives an item's category, None for none (never held back). Reads ``ranked``
    only as far as it needs."""
    cap = max_per_category(k, share)
    counts: Counter[Hashable] = Counter()
    first: list[T] = []
    held: list[T] = []
    for item in ranked:
        if len(first) == k:
            break
        key = category(item)
        if key is not None and counts[key] >= cap:
            held.append(item)
            continue
        counts[key] += 1
        first.append(item)
    return first + held[: k - len(first)]
