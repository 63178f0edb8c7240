"""The tools an agent gets, in the order the LLM sees them. A new tool is one module with a
:class:`~recagent.tools.base.Tool` subclass, plus one line here."""

from __future__ import annotations

from recagent.tools.base import Tool
from recagent.tools.explain import Explain
from recagent.tools.filter_items import FilterItems
from recagent.tools.get_item import GetItem
from recagent.tools.recommend_for_user import RecommendForUser
from recagent.tools.rerank import Rerank
from recagent.tools.search_items import SearchItems

__all__ = ["TOOLS"]

TOOLS: tuple[type[Tool], ...] = (
    SearchItems,
    RecommendForUser,
    FilterItems,
    Rerank,
    GetItem,
    Explain,
)
