"""``get_item``: the facts of one catalog item."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.tools.base import ITEM_ID, Tool, ToolContext, ToolParts, object_schema

__all__ = ["GetItem", "ItemFacts"]


@dataclass(frozen=True)
class ItemFacts:
    item_id: str
    title: str
    category: str
    brand: str | None
    price: float | None
    description: str
    attributes: dict[str, str]


class GetItem(Tool):
    """Look up one item by id. Unknown ids are a :class:`ToolError`, never a guess."""

    name = "get_item"
    description = "All facts of one catalog item."
    parameters: ClassVar[dict[str, Any]] = object_schema(["item_id"], item_id=ITEM_ID)

    @classmethod
    def build(cls, parts: ToolParts) -> GetItem:
        return cls(parts.dataset)

    def invoke(self, context: ToolContext, item_id: str) -> ItemFacts:
        return self(item_id)

    def observe(self, result: ItemFacts) -> dict[str, Any]:
        return asdict(result)

    def summarize(self, result: ItemFacts) -> str:
        return result.title[:40]

    def __init__(self, dataset: Dataset, *, description_chars: int = 400) -> None:
        self.dataset = dataset
        self.description_chars = description_chars

    def __call__(self, item_id: str) -> ItemFacts:
        item = self.dataset.items.get(str(item_id).strip())
        if item is None:
            raise ToolError(f"no item {item_id!r} in the catalog {self.dataset.name!r}")
        return ItemFacts(
            item_id=item.item_id,
            title=item.title,
            category=" > ".join(item.category),
            brand=item.brand,
            price=item.price,
            description=item.description[: self.description_chars],
            attributes={k: v for k, v in item.attributes.items() if not k.endswith("_url")},
        )
