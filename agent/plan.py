"""The fixed plan: the tools in a fixed order, for LLMs that cannot call tools (and as the
safe answer when the one that can fails).

Retrieve (history candidates, plus a text search when the user asked for something), filter,
re-rank. The LLM, when there is one, only scores candidates (re-ranking); which items may be
shown is decided here, by the filter, so nothing an item's text or the LLM says can add an
item to the answer. Every step is recorded in the trace with its arguments, a summary and its
time.
"""

from __future__ import annotations

from dataclasses import replace

from recagent.agent.runner import Selection, TurnContext
from recagent.llm.base import LLMUnavailable
from recagent.tools.candidates import Candidate, merge
from recagent.tools.toolbox import Toolbox

__all__ = ["N_CANDIDATES", "PlanPicker"]

N_CANDIDATES = 50  # items each retrieval step brings (the search, the history model)


class PlanPicker:
    """``rerank`` is the re-ranking strategy (``retriever``, ``cooccurrence``, ``llm``,
    ``fusion``); "llm" falls back to ``retriever`` when the turn has no LLM."""

    def __init__(self, *, n_candidates: int = N_CANDIDATES, rerank: str = "retriever") -> None:
        self.n_candidates = n_candidates
        self.rerank = rerank

    def pick(self, turn: TurnContext, tools: Toolbox) -> Selection:
        """Retrieve → filter → re-rank: the candidates, what the filter kept, best first."""
        wish = turn.wish
        return self.choose(turn, tools, self.retrieve(turn, tools),
                           request_led=bool(turn.query or wish.like_item))

    def choose(self, turn: TurnContext, tools: Toolbox, candidates: list[Candidate], *,
               request_led: bool) -> Selection:
        """Filter → re-rank ``candidates``. When the turn is ``request_led`` (a query, "more
        like #N", or searches an LLM planned), only the items a search found are eligible, each
        scored by the history model too, so the request decides what is shown and the history
        how it is ordered; otherwise every candidate is."""
        session, wish, trace = turn.session, turn.wish, turn.trace
        pool = candidates
        searched = [c for c in candidates if "search" in c.scores]
        if request_led and searched:
            pool = self._personalised(turn, tools, searched)
        filtered = trace.run(
            tools.filter_items.name, {"constraints": wish.describe(), "exclude": len(turn.excluded)},
            lambda: tools.filter_items(pool, wish, exclude=turn.excluded, owned=session.seen),
            tools.filter_items.summarize,
        )
        kept = filtered.kept if filtered else []
        strategy = self.rerank
        if strategy == "llm" and turn.llm is None:  # fusion simply leaves the LLM out
            strategy = "retriever"
        ranked = None
        if kept:
            try:
                ranked = trace.run(
                    tools.rerank.name, {"strategy": strategy, "candidates": len(kept)},
                    lambda: tools.rerank(kept, session.history, strategy, memo=turn.tools.memo),
                    tools.rerank.summarize)
            except LLMUnavailable as exc:
                turn.lose_llm(f"LLM unavailable ({exc}); ranked without it")
                ranked = tools.rerank(kept, session.history, "retriever")
        ranked = ranked or kept
        allowed = {c.item_id for c in kept}
        assert all(c.item_id in allowed for c in ranked), "re-ranking added an item"
        return Selection(candidates, ranked, len(filtered.excluded) if filtered else 0)

    def retrieve(self, turn: TurnContext, tools: Toolbox) -> list[Candidate]:
        session, wish, trace = turn.session, turn.wish, turn.trace
        search = tools.search_items
        found: list[list[Candidate]] = []
        if wish.like_item:
            like = tools.dataset.items.get(wish.like_item)
            if like is not None:
                found.append(trace.run(search.name, {"query": like.title, "like": wish.like_item},
                                       lambda: search(like.title, self.n_candidates),
                                       search.summarize) or [])
        if turn.query:
            found.append(trace.run(search.name, {"query": turn.query},
                                   lambda: search(turn.query, self.n_candidates, wish),
                                   search.summarize) or [])
        recommend = tools.recommend_for_user
        found.append(trace.run(recommend.name,
                               {"user": session.user_id, "history": len(session.history),
                                "retriever": recommend.name_of_source},
                               lambda: recommend(session.history,
                                                 self.n_candidates + len(session.shown)),
                               recommend.summarize) or [])
        return merge(*found)

    @staticmethod
    def _personalised(turn: TurnContext, tools: Toolbox, found: list[Candidate]) -> list[Candidate]:
        """``found`` with each item's score under the history model (``retriever``)."""
        tool = tools.recommend_for_user
        fits = turn.trace.run(tool.name,
                              {"user": turn.session.user_id, "score_items": len(found),
                               "retriever": tool.name_of_source},
                              lambda: tool.score_items(turn.session.history,
                                                       [c.item_id for c in found]),
                              lambda r: f"scored {len(r)} found items")
        if not fits:
            return found
        return [replace(c, scores={**c.scores, "retriever": fits[c.item_id]}) for c in found]
