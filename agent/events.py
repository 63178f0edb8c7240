"""What a turn reports while it runs, for front ends that show progress as it happens.

``TurnRunner.turn(..., on_event=callback)`` calls ``callback`` with, in order:

- :class:`~recagent.agent.turn.ToolCall` after each tool call (the trace, live);
- :class:`Picked` once the items of the answer are chosen (before any prose is written);
- :class:`ProseDelta` for each piece of an explanation the LLM is writing, as it is decoded
  (the turn writes its sentences in one batch, so each comes whole when the batch ends);
- :class:`Explained` when an item's explanation is final: the checked prose, or the evidence
  rendering that replaces prose which failed the faithfulness check (a front end that showed
  the streamed words must then show this text instead).

The turn still returns the whole :class:`~recagent.agent.turn.AgentAnswer`; events are a
view of the same work, never a different result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recagent.agent.explanations import Explanation
    from recagent.tools.get_item import ItemFacts

__all__ = ["EventSink", "Explained", "Picked", "ProseDelta"]


@dataclass(frozen=True)
class Picked:
    """The answer's items, best first (``items[0]`` is shown as #1)."""

    items: list[ItemFacts]


@dataclass(frozen=True)
class ProseDelta:
    rank: int
    item_id: str
    text: str


@dataclass(frozen=True)
class Explained:
    rank: int
    item_id: str
    explanation: Explanation


EventSink = Callable[[Any], None]
