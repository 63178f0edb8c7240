"""What one agent turn produces, whichever picker chose its items: the answer, its
recommendations, the trace of tool calls (each also reported live to ``on_event``), and the
session as it is after the turn."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from recagent.catalog.errors import ToolError

if TYPE_CHECKING:
    from recagent.agent.events import EventSink
    from recagent.agent.explanations import Explanation
    from recagent.agent.session import Session
    from recagent.tools.explain import ItemEvidence
    from recagent.tools.filter_items import Constraints
    from recagent.tools.get_item import ItemFacts

__all__ = ["AgentAnswer", "AgentRecommendation", "ToolCall", "Trace"]

T = TypeVar("T")


@dataclass(frozen=True)
class ToolCall:
    tool: str
    arguments: dict[str, Any]
    summary: str
    ms: float
    error: str | None = None


@dataclass(frozen=True)
class AgentRecommendation:
    rank: int
    item: ItemFacts
    score: float
    scores: dict[str, float]
    evidence: ItemEvidence
    explanation: Explanation


@dataclass(frozen=True)
class AgentAnswer:
    text: str
    recommendations: list[AgentRecommendation]
    trace: list[ToolCall]
    constraints: Constraints
    session: Session  # the conversation after this turn (the one passed in is unchanged)
    degraded: list[str] = field(default_factory=list)
    llm: str | None = None


class Trace(list):
    """The turn's tool calls; each is also passed to ``on_event`` as soon as it is done."""

    def __init__(self, on_event: EventSink | None = None) -> None:
        super().__init__()
        self.on_event = on_event

    def emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def record(self, call: ToolCall) -> None:
        self.append(call)
        self.emit(call)

    def run(self, tool: str, arguments: dict[str, Any], fn: Callable[[], T],
            summarize: Callable[[T], str]) -> T | None:
        started = time.perf_counter()
        try:
            result = fn()
        except ToolError as exc:
            self.record(ToolCall(tool, arguments, "error", _ms(started), str(exc)))
            return None
        self.record(ToolCall(tool, arguments, summarize(result), _ms(started)))
        return result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
