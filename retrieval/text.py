"""Item text and history text, rendered from the templates in ``recagent.prompts``.

The history text keeps the most recent items first and stops before the token budget is
exceeded, so the encoder (MiniLM reads at most 256 word pieces) always sees the newest
part of a history rather than a truncated oldest part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from recagent.catalog.model import Dataset, Interaction, Item
from recagent.prompts import render

__all__ = ["history_text", "item_text", "recency_phrase"]

TokenCounter = Callable[[str], int]

_DAY = 86_400.0


def item_text(item: Item) -> str:
    """One line describing ``item``: title, category path, brand, price, attributes, description."""
    return " ".join(render("item_text", item=item).split())


def recency_phrase(seconds_before_latest: float) -> str:
    """How long before the user's latest interaction something happened, in words."""
    days = seconds_before_latest / _DAY
    if days < 1:
        return "same day as the latest"
    if days < 14:
        return f"{int(days)} day{'s' if int(days) != 1 else ''} earlier"
    if days < 60:
        return f"{int(days // 7)} weeks earlier"
    if days < 730:
        return f"{int(days // 30)} months earlier"
    return f"{int(days // 365)} years earlier"


def _entries(dataset: Dataset, history: Sequence[Interaction]) -> list[dict[str, object]]:
    """Template entries for ``history`` (oldest first in), newest first out."""
    latest = history[-1].timestamp if history else 0.0
    out = []
    for position, inter in enumerate(reversed(history)):
        item = dataset.items[inter.item_id]
        ago = ""
        if dataset.has_timestamps:
            ago = "most recent" if position == 0 else recency_phrase(latest - inter.timestamp)
        out.append(
            {
                "title": item.title,
                "category": item.category[-1] if item.category else None,
                "rating": inter.rating,
                "ago": ago,
            }
        )
    return out


def history_text(
    dataset: Dataset,
    history: Sequence[Interaction],
    *,
    count_tokens: TokenCounter,
    budget: int,
) -> str:
    """The text of ``history`` (oldest first), newest first, within ``budget`` tokens.

    Keeps the longest newest-first prefix of the history whose rendering fits the budget
    (always at least the newest item, even when that alone is over budget: the encoder
    then truncates it, which is better than an empty query).
    """
    entries = _entries(dataset, history)
    total = len(entries)

    def rendered(n: int) -> str:
        return render("history_text", entries=entries[:n], total=total)

    if total == 0 or count_tokens(rendered(total)) <= budget:
        return rendered(total)
    # Token counts grow with n: binary search the largest prefix that fits.
    lo, hi = 1, total - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(rendered(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return rendered(lo)
