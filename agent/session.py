"""What the agent knows about one conversation: who, their history, and what happened so far."""

from __future__ import annotations

from dataclasses import dataclass, field

from recagent.catalog.model import Interaction
from recagent.tools.filter_items import Constraints

__all__ = ["Session"]


@dataclass
class Session:
    """State of one conversation. ``shown`` lists the items recommended so far, in order."""

    user_id: str | None
    history: list[Interaction] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    shown: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    last_shown: list[str] = field(default_factory=list)  # the latest answer's items, in order
    turns: int = 0

    @property
    def seen(self) -> set[str]:
        return {x.item_id for x in self.history}

    def shown_item(self, number: int) -> str | None:
        """The item shown as ``#number`` in the latest answer (1-based), if any."""
        last = self.last_shown
        return last[number - 1] if 1 <= number <= len(last) else None

    def record_shown(self, item_ids: list[str]) -> None:
        self.last_shown = list(item_ids)
        self.shown.extend(i for i in item_ids if i not in self.shown)
