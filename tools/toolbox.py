"""All six tools for one dataset, built from the runtime's components."""

from __future__ import annotations

from dataclasses import dataclass

from recagent.tools.explain import Explain
from recagent.tools.filter_items import FilterItems
from recagent.tools.get_item import GetItem
from recagent.tools.recommend_for_user import RecommendForUser
from recagent.tools.rerank import Rerank
from recagent.tools.search_items import SearchItems

__all__ = ["Toolbox"]


@dataclass(frozen=True)
class Toolbox:
    search_items: SearchItems
    recommend_for_user: RecommendForUser
    filter_items: FilterItems
    rerank: Rerank
    get_item: GetItem
    explain: Explain

    @property
    def dataset(self):
        return self.get_item.dataset
