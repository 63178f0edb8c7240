"""The typed catalog model: items, time-ordered interactions, and a dataset holding both.

Ids are strings everywhere (a dataset's own ids, e.g. MovieLens "242" or an Amazon ASIN);
dense integer positions exist only inside models and evaluation, through ``Dataset.item_index``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from recagent.catalog.errors import DataError, UnknownItemError, UnknownUserError


@dataclass(frozen=True, slots=True)
class Item:
    """One catalog item.

    ``category`` is the category path from the root ("Electronics", "Cameras", "DSLR").
    ``also_in`` names the other categories the item belongs to, where a source files one
    item under several (a film's genres after the first: ``category`` ("Movies", "Action"),
    ``also_in`` ("Drama", "War")); filters and the index count them as the item's own.
    ``price`` is None when the source does not know it. ``attributes`` holds any other
    facts as short strings (e.g. ``{"year": "1995"}``).
    """

    item_id: str
    title: str
    description: str = ""
    category: tuple[str, ...] = ()
    brand: str | None = None
    price: float | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    also_in: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.item_id:
            raise ValueError("Item.item_id must be a non-empty string")
        if self.price is not None and self.price < 0:
            raise ValueError(f"Item {self.item_id!r}: negative price {self.price}")

    @property
    def categories(self) -> tuple[str, ...]:
        """Every category the item is in: each level of its path, then ``also_in``."""
        return self.category + tuple(c for c in self.also_in if c not in self.category)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The categories that say what the item is: its leaf, then ``also_in`` (not the
        path's upper levels: every film is a Movie, every tent is Outdoors)."""
        return self.category[-1:] + tuple(c for c in self.also_in if c not in self.category[-1:])

    @property
    def title_key(self) -> str:
        """The title as a shopper reads it (case and spacing ignored). Two items with the same
        key look like one: ML-100K lists 18 films under two ids, Amazon Scientific 17 titles
        under 2 to 5 ASINs. Recommendations show one of them, and none once the user has one."""
        return " ".join(self.title.casefold().split())


@dataclass(frozen=True, slots=True)
class Interaction:
    """A user's interaction with an item at a time.

    ``timestamp`` is seconds since the epoch when the source has real times, otherwise the
    position in the user's sequence (0, 1, 2, ...): only the order matters to recagent.
    ``rating`` is the explicit rating when there is one; ``event`` names the kind of
    interaction ("rating", "purchase", "click", ...) when the source says.
    """

    user_id: str
    item_id: str
    timestamp: float
    rating: float | None = None
    event: str | None = None


class Dataset:
    """A catalog of items and the interactions of users with them.

    Interactions must refer to catalog items (loaders check this and report the line).
    ``histories`` orders each user's interactions by time; ties keep the order in which
    the source listed them, so the order is deterministic.
    """

    def __init__(
        self,
        name: str,
        items: Iterable[Item],
        interactions: Iterable[Interaction],
        *,
        has_timestamps: bool = True,
        user_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        from recagent.catalog.limits import item_problem

        self.items: dict[str, Item] = {}
        for item in items:
            if item.item_id in self.items:
                raise ValueError(f"{name}: duplicate item id {item.item_id!r}")
            problem = item_problem(item)
            if problem is not None:
                raise DataError(f"{name}: item {item.item_id[:200]!r}: {problem}")
            self.items[item.item_id] = item
        self.interactions: list[Interaction] = list(interactions)
        for inter in self.interactions:
            if inter.item_id not in self.items:
                raise UnknownItemError(
                    f"{name}: interaction of user {inter.user_id!r} names unknown item "
                    f"{inter.item_id!r}"
                )
        self.has_timestamps = has_timestamps
        # Other names a user is known by (e.g. RecBole's integer index -> reviewer id).
        self.user_aliases: dict[str, str] = dict(user_aliases or {})

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, items={len(self.items)}, users={len(self.histories)}, "
            f"interactions={len(self.interactions)})"
        )

    @cached_property
    def item_ids(self) -> list[str]:
        """Item ids in catalog order; position = the item's dense index."""
        return list(self.items)

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    @cached_property
    def histories(self) -> dict[str, list[Interaction]]:
        """Each user's interactions, oldest first (stable for equal timestamps)."""
        by_user: dict[str, list[Interaction]] = {}
        for inter in self.interactions:
            by_user.setdefault(inter.user_id, []).append(inter)
        for seq in by_user.values():
            seq.sort(key=lambda x: x.timestamp)  # list.sort is stable
        return by_user

    @property
    def users(self) -> list[str]:
        return list(self.histories)

    def resolve_user(self, user_id: str) -> str:
        """The dataset's id for ``user_id`` (accepting aliases); raises UnknownUserError."""
        if user_id in self.histories:
            return user_id
        alias = self.user_aliases.get(user_id)
        if alias is not None and alias in self.histories:
            return alias
        sample = ", ".join(list(self.histories)[:3])
        raise UnknownUserError(
            f"unknown user {user_id!r} in dataset {self.name!r} "
            f"({len(self.histories)} users, e.g. {sample})"
        )

    def history(self, user_id: str) -> list[Interaction]:
        return self.histories[self.resolve_user(user_id)]

    def item(self, item_id: str) -> Item:
        try:
            return self.items[item_id]
        except KeyError:
            raise UnknownItemError(f"unknown item {item_id!r} in dataset {self.name!r}") from None
