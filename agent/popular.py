"""The picker for when the vector index (Chroma) is down: popular items that meet the turn's
constraints. It needs only the catalog, so it works with no index at all."""

from __future__ import annotations

from recagent.agent.runner import Selection, TurnContext
from recagent.retrieval.base import PopularItems
from recagent.tools.candidates import Candidate
from recagent.tools.toolbox import Toolbox

__all__ = ["PopularPicker"]


class PopularPicker:
    def __init__(self, popular: PopularItems, *, pool: int = 500) -> None:
        self.popular = popular
        self.pool = pool

    def pick(self, turn: TurnContext, tools: Toolbox) -> Selection:
        found = turn.trace.run("popular_items", {"pool": self.pool},
                               lambda: self.popular.recommend(self.pool, seen=set(turn.excluded)),
                               lambda r: f"{len(r)} items")
        candidates = [Candidate(r.item_id, r.title, r.score, {"popularity": r.score})
                      for r in found or []]
        filtered = turn.trace.run(
            tools.filter_items.name, {"constraints": turn.wish.describe(),
                                      "exclude": len(turn.excluded)},
            lambda: tools.filter_items(candidates, turn.wish, exclude=turn.excluded,
                                       owned=turn.session.seen),
            tools.filter_items.summarize)
        if filtered is None:
            return Selection(candidates, [], 0, related_evidence=False)
        return Selection(candidates, filtered.kept, len(filtered.excluded), related_evidence=False)
