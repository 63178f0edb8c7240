"""What the agent knows about one conversation: who, their history, and what happened so far."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Interaction
from recagent.tools.constraints import Constraints

__all__ = ["FEEDBACK", "Session"]

# What a user can tell us about an item. Every kind but "dislike" joins the history (the
# retriever then builds on it at the next turn); "dislike" excludes the item from answers.
FEEDBACK = ("click", "like", "dislike", "purchase")


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

    def to_dict(self) -> dict[str, Any]:
        """The whole state as plain JSON types (``from_dict`` restores it exactly)."""
        return {
            "user_id": self.user_id,
            "history": [asdict(x) for x in self.history],
            "constraints": asdict(self.constraints),
            "shown": list(self.shown),
            "liked": list(self.liked),
            "disliked": list(self.disliked),
            "last_shown": list(self.last_shown),
            "turns": self.turns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        known = {f.name for f in fields(Constraints)}
        wish = {k: tuple(v) if isinstance(v, list) else v
                for k, v in data.get("constraints", {}).items() if k in known}
        return cls(
            user_id=data.get("user_id"),
            history=[Interaction(**x) for x in data.get("history", [])],
            constraints=Constraints(**wish),
            shown=list(data.get("shown", [])),
            liked=list(data.get("liked", [])),
            disliked=list(data.get("disliked", [])),
            last_shown=list(data.get("last_shown", [])),
            turns=int(data.get("turns", 0)),
        )

    @property
    def seen(self) -> set[str]:
        return {x.item_id for x in self.history}

    def shown_item(self, number: int) -> str | None:
        """The item shown as ``#number`` in the latest answer (1-based), if any."""
        last = self.last_shown
        return last[number - 1] if 1 <= number <= len(last) else None

    def answered(self, constraints: Constraints, item_ids: list[str]) -> Session:
        """The session after a turn that answered ``constraints`` with ``item_ids`` (a copy:
        this one is left as it is)."""
        return replace(self, constraints=constraints, last_shown=list(item_ids),
                       shown=[*self.shown, *(i for i in dict.fromkeys(item_ids) if i not in self.shown)],
                       history=list(self.history), liked=list(self.liked),
                       disliked=list(self.disliked), turns=self.turns + 1)

    def feedback(self, item_id: str, kind: str, *, timestamp: float | None = None) -> None:
        """Record feedback on an item (the caller checks that the catalog has it).

        ``click``, ``like`` and ``purchase`` add an interaction to the history, newest last,
        so the next turn's retrieval uses it; ``like`` and ``dislike`` also undo each other.
        """
        if kind not in FEEDBACK:
            raise RecAgentError(f"feedback must be one of {', '.join(FEEDBACK)}, not {kind!r}")
        if kind == "dislike":
            self.liked = [i for i in self.liked if i != item_id]
            if item_id not in self.disliked:
                self.disliked.append(item_id)
            return
        if kind == "like":
            self.disliked = [i for i in self.disliked if i != item_id]
            if item_id not in self.liked:
                self.liked.append(item_id)
        newest = self.history[-1].timestamp if self.history else 0.0
        when = max(time.time() if timestamp is None else timestamp, newest + 1)
        self.history.append(Interaction(self.user_id or "new-user", item_id, when, event=kind))
