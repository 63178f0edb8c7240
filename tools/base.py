"""The contract every tool follows, smolagents-style: one description from which the LLM-facing
schema, the tool-calling agent's LangChain tools, the system prompt's tool list and the trace
summary are all generated.

A tool is a class with

- ``name``, ``description`` and ``parameters`` (a JSON-schema object of its LLM-facing
  arguments);
- ``build(parts)``: the tool made from the runtime's components (:class:`ToolParts`);
- ``invoke(context, **arguments)``: the call an LLM makes, within one turn's
  :class:`ToolContext`, returning the tool's typed result;
- ``observe(result)``: that result as JSON for the LLM, and ``summarize(result)``: one line
  for the trace.

Its typed ``__call__`` (what the fixed plan calls) stays the tool's own. State of one turn
lives in the :class:`ToolContext` the turn passes in, never on the shared tool objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset, Interaction
from recagent.tools.candidates import Candidate
from recagent.tools.constraints import Constraints

if TYPE_CHECKING:
    import numpy as np

    from recagent.llm.base import LLM
    from recagent.retrieval.base import Retriever
    from recagent.retrieval.encoder import TextEncoder
    from recagent.retrieval.index import ItemIndex

__all__ = ["ITEM_ID", "ITEM_IDS", "LISTING_K", "Tool", "ToolContext", "ToolParts", "brief",
           "object_schema"]


@dataclass(frozen=True)
class ToolParts:
    """The runtime's components a tool may be built from."""

    dataset: Dataset
    encoder: TextEncoder
    index: ItemIndex
    recommender: Retriever  # what recommend_for_user draws candidates from
    item_embeddings: Callable[[], np.ndarray]
    llm: LLM | None = None


@dataclass
class ToolContext:
    """One turn as the tools see it: whose history, which constraints hold, what may not be
    shown, and every candidate a tool has returned so far (an LLM may refer only to those)."""

    user_id: str | None
    history: Sequence[Interaction]
    constraints: Constraints = field(default_factory=Constraints)
    excluded: frozenset[str] = frozenset()  # history, dislikes, and (for "more") what was shown
    listing_size: int = 10  # the most items one LLM-facing listing returns
    offered: dict[str, Candidate] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)  # per-turn cache (e.g. LLM scores)

    @property
    def owned(self) -> set[str]:
        return {x.item_id for x in self.history}

    def offer(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Note ``candidates`` as returned in this turn; returns them unchanged."""
        for c in candidates:
            self.offered.setdefault(c.item_id, c)
        return list(candidates)

    def known(self, item_ids: Sequence[str]) -> list[Candidate]:
        """The candidates with these ids; an id no tool returned in this turn is a ToolError
        the LLM can act on."""
        unknown = [i for i in item_ids if i not in self.offered]
        if unknown:
            raise ToolError(f"unknown item ids {unknown[:5]}: use ids a tool returned")
        return [self.offered[i] for i in item_ids]

    def listing_k(self, k: int) -> int:
        return max(1, min(int(k), self.listing_size))


class Tool(ABC):
    """Base of every tool; see the module docstring."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]

    @classmethod
    @abstractmethod
    def build(cls, parts: ToolParts) -> Tool:
        """The tool made from the runtime's components."""

    @abstractmethod
    def invoke(self, context: ToolContext, **arguments: Any) -> Any:
        """The LLM-facing call within one turn; bad arguments are a ToolError."""

    @abstractmethod
    def summarize(self, result: Any) -> str:
        """One line for the trace."""

    def observe(self, result: Any) -> Any:
        """``result`` as JSON-serialisable data for the LLM (default: as it is)."""
        return result

    @classmethod
    def spec(cls) -> dict[str, Any]:
        """The LLM-facing description: an OpenAI-style function tool."""
        return {"type": "function", "function": {
            "name": cls.name, "description": cls.description, "parameters": cls.parameters}}


def object_schema(required: Sequence[str] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a tool's arguments: an object with these properties."""
    return {"type": "object", "properties": properties, "required": list(required)}


# Arguments several tools share.
ITEM_ID: dict[str, Any] = {"type": "string", "description": "An id a tool returned."}
ITEM_IDS: dict[str, Any] = {"type": "array", "items": {"type": "string"},
                            "description": "Ids a tool returned in this turn."}
LISTING_K: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 20, "default": 10,
                             "description": "How many items to return."}


def brief(item, score: float) -> dict[str, Any]:
    """The short form of an item in a listing the LLM reads."""
    return {"item_id": item.item_id, "title": item.title, "price": item.price,
            "category": item.category[-1] if item.category else "", "score": round(score, 3)}
