"""The agent's tools, one per module, each a :class:`~recagent.tools.base.Tool` with its
dependencies passed in: ``search_items``, ``recommend_for_user``, ``filter_items``, ``rerank``,
``get_item``, ``explain``. :mod:`recagent.tools.registry` lists them;
:class:`~recagent.tools.toolbox.Toolbox` builds them for one dataset."""

from recagent.tools.base import Tool, ToolContext, ToolParts
from recagent.tools.candidates import Candidate
from recagent.tools.constraints import Constraints
from recagent.tools.explain import Explain, ItemEvidence
from recagent.tools.filter_items import FilterItems, FilterResult
from recagent.tools.get_item import GetItem, ItemFacts
from recagent.tools.recommend_for_user import RecommendForUser
from recagent.tools.registry import TOOLS
from recagent.tools.rerank import RANKER, STRATEGIES, Rerank
from recagent.tools.search_items import SearchItems
from recagent.tools.toolbox import Toolbox

__all__ = [
    "RANKER",
    "STRATEGIES",
    "TOOLS",
    "Candidate",
    "Constraints",
    "Explain",
    "FilterItems",
    "FilterResult",
    "GetItem",
    "ItemEvidence",
    "ItemFacts",
    "RecommendForUser",
    "Rerank",
    "SearchItems",
    "Tool",
    "ToolContext",
    "ToolParts",
    "Toolbox",
]
