"""The answer when the vector index (Chroma) is down: popular items that meet the user's
constraints, marked degraded. It needs only the catalog, so it works with no index at all."""

from __future__ import annotations

from recagent.agent.constraints import ConstraintParser
from recagent.agent.explanations import Explanation
from recagent.agent.pipeline import AgentAnswer, AgentRecommendation
from recagent.agent.session import Session
from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.retrieval.retriever import PopularItems, Recommendation
from recagent.tools.candidates import Candidate
from recagent.tools.explain import ItemEvidence
from recagent.tools.filter_items import FilterItems
from recagent.tools.get_item import GetItem

__all__ = ["IndexFreeAnswers"]


class IndexFreeAnswers:
    def __init__(self, dataset: Dataset, *, pool: int = 500) -> None:
        self.dataset = dataset
        self.pool = pool
        self.popular = PopularItems(dataset)
        self.parser = ConstraintParser(dataset)
        self.filter = FilterItems(dataset)
        self.get_item = GetItem(dataset)

    def recommend(self, history, k: int) -> list[Recommendation]:
        return self.popular.recommend(k, seen={x.item_id for x in history})

    def turn(self, session: Session, message: str, k: int, note: str) -> AgentAnswer:
        """What :meth:`PlanAgent.turn` would do to ``session``, with popularity instead of
        retrieval and the evidence text instead of LLM prose."""
        parsed = self.parser.parse(message, last_shown=session.last_shown)
        session.constraints = session.constraints.merged(parsed)
        wish = session.constraints
        excluded = session.seen | set(session.disliked)
        pool = self.popular.recommend(self.pool, seen=excluded)
        candidates = [Candidate(r.item_id, r.title, r.score, {"popularity": r.score}) for r in pool]
        kept = self.filter(candidates, wish).kept[:k]
        why = render("explanation", evidence=[]).strip()
        recommendations = [
            AgentRecommendation(
                rank, self.get_item(c.item_id), c.score, dict(c.scores),
                ItemEvidence(c.item_id, c.title, self.dataset.items[c.item_id].price),
                Explanation(why, "evidence"),
            )
            for rank, c in enumerate(kept, 1)
        ]
        session.record_shown([r.item.item_id for r in recommendations])
        session.turns += 1
        text = render("agent_reply", count=len(recommendations), constraints=wish.describe(),
                      query=parsed.query, notes=[note], empty_reason="")
        return AgentAnswer(text, recommendations, [], wish, [note], None)
