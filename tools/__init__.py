"""The agent's tools, one per module, each a small typed callable with its dependencies
passed in: ``search_items``, ``recommend_for_user``, ``filter_items``, ``rerank``,
``get_item``, ``explain``. :mod:`recagent.tools.toolbox` wires them for one dataset."""

from recagent.tools.candidates import Candidate
from recagent.tools.explain import Explain, ItemEvidence
from recagent.tools.filter_items import Constraints, FilterItems, FilterResult
from recagent.tools.get_item import GetItem, ItemFacts
from recagent.tools.recommend_for_user import RecommendForUser
from recagent.tools.rerank import STRATEGIES, Rerank
from recagent.tools.search_items import SearchItems

__all__ = [
    "STRATEGIES",
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
]
