"""The tools of one dataset, built from the runtime's components through the registry."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from recagent.catalog.model import Dataset
from recagent.tools.base import Tool, ToolParts
from recagent.tools.registry import TOOLS

__all__ = ["Toolbox"]


class Toolbox:
    """Tools by name: ``toolbox.search_items`` or ``toolbox["search_items"]``; iterating gives
    them in registry order."""

    def __init__(self, dataset: Dataset, tools: Iterable[Tool]) -> None:
        self.dataset = dataset
        self._tools = {t.name: t for t in tools}

    @classmethod
    def build(cls, parts: ToolParts, registry: Iterable[type[Tool]] = TOOLS) -> Toolbox:
        return cls(parts.dataset, (tool.build(parts) for tool in registry))

    def replaced(self, tool: Tool) -> Toolbox:
        """The same tools with ``tool`` in place of the one of its name."""
        return Toolbox(self.dataset, {**self._tools, tool.name: tool}.values())

    def __getattr__(self, name: str) -> Any:
        tools = self.__dict__.get("_tools", {})
        if name in tools:
            return tools[name]
        raise AttributeError(f"no tool {name!r}; the toolbox has {', '.join(tools)}")

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def specs(self) -> list[dict[str, Any]]:
        """The LLM-facing function schemas of every tool."""
        return [tool.spec() for tool in self]
