"""The plan-first agent: the same tools in a fixed order, for LLMs that cannot call tools.

One turn: parse constraints → retrieve (history candidates, plus a text search when the user
asked for something) → filter → re-rank → explain. The LLM, when there is one, only scores
candidates (re-ranking) and writes checked prose; which items may be shown is decided here,
by the filter, so nothing an item's text or the LLM says can add an item to the answer.
Every step is recorded in the trace with its arguments, a summary and its time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from recagent.agent.constraints import ConstraintParser, combine, parse_with_llm
from recagent.agent.events import EventSink, Explained, Picked, ProseDelta
from recagent.agent.explanations import ExplanationWriter
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer, AgentRecommendation, ToolCall, Trace
from recagent.llm.base import LLM, LLMUnavailable
from recagent.prompts import render
from recagent.tools.candidates import Candidate, merge
from recagent.tools.filter_items import Constraints
from recagent.tools.toolbox import Toolbox

# AgentAnswer, AgentRecommendation and ToolCall live in recagent.agent.turn (shared with the
# tool-calling agent); they are re-exported here for the callers that import them from here.
__all__ = ["AgentAnswer", "AgentRecommendation", "PlanAgent", "Selection", "ToolCall"]


@dataclass(frozen=True)
class Selection:
    """What retrieval, the filter and re-ranking produced in a turn."""

    candidates: list[Candidate]  # everything retrieved, before the filter
    ranked: list[Candidate]  # what the filter kept, best first
    excluded: int  # how many candidates the filter removed
    llm: LLM | None  # the LLM still usable in this turn (None after an outage)


class PlanAgent:
    """Runs one conversation turn with the tools in a fixed order.

    ``rerank`` is the re-ranking strategy (``retriever``, ``cooccurrence``, ``llm``,
    ``fusion``); strategies that need the LLM fall back to ``retriever`` without one.
    """

    def __init__(
        self,
        tools: Toolbox,
        llm: LLM | None = None,
        *,
        k: int = 5,
        n_candidates: int = 50,
        rerank: str = "retriever",
        explain_with_llm: bool = True,
    ) -> None:
        self.tools = tools
        self.llm = llm
        self.k = k
        self.n_candidates = n_candidates
        self.rerank_strategy = rerank
        self.explain_with_llm = explain_with_llm
        self.parser = ConstraintParser(tools.dataset)

    def turn(self, session: Session, message: str = "", *, exclude_shown: bool = False,
             again: bool = False, on_event: EventSink | None = None) -> AgentAnswer:
        """One turn. ``exclude_shown`` leaves out everything shown earlier in the session
        ("more"); ``again`` answers the session's request as it stands (its constraints and
        query, after feedback or an edited filter) instead of parsing ``message``;
        ``on_event`` receives the turn's progress (see :mod:`recagent.agent.events`)."""
        trace = Trace(on_event)
        degraded: list[str] = []
        wish, query = self.request(session, message, again, trace, degraded)
        selection = self.select(session, wish, query, self.excluded(session, exclude_shown),
                                trace, degraded)
        return self.answer(session, selection, wish, query, trace, degraded)

    def request(self, session: Session, message: str, again: bool, trace: Trace,
                degraded: list[str]) -> tuple[Constraints, str]:
        """The constraints and query this turn answers: the session's as they stand
        (``again``), or ``message`` parsed into them."""
        if again:
            return session.constraints, session.constraints.query
        return self.parse(session, message, trace, degraded)

    def parse(self, session: Session, message: str, trace: Trace,
              degraded: list[str]) -> tuple[Constraints, str]:
        """Constraints of this message (rules; plus the LLM's JSON parse where the backend has
        structured output, the rules winning on conflicts), merged into the session's."""
        parsed = trace.run("parse_constraints", {"message": message},
                           lambda: self.parser.parse(message, last_shown=session.last_shown),
                           lambda c: "; ".join(c.describe()) or "no constraints")
        parsed = parsed or Constraints()
        if message.strip() and self.llm is not None and self.llm.structured_output:
            try:
                llm_parsed = trace.run(
                    "parse_constraints_llm", {"message": message},
                    lambda: parse_with_llm(self.llm, self.parser, message),
                    lambda c: "; ".join(c.describe()) or "no constraints")
            except LLMUnavailable as exc:
                degraded.append(f"LLM unavailable ({exc}); constraints from rules only")
                llm_parsed = None
            if llm_parsed is not None:
                parsed = combine(parsed, llm_parsed)
        if (parsed.min_price is not None or parsed.max_price is not None) and not self.parser.has_prices:
            degraded.append("this catalog lists no prices, so the price bound is left out")
            parsed = replace(parsed, min_price=None, max_price=None)
        session.constraints = session.constraints.merged(parsed)
        return session.constraints, parsed.query

    @staticmethod
    def excluded(session: Session, exclude_shown: bool) -> set[str]:
        """Items no answer may contain: the history, dislikes, and ("more") what was shown."""
        return session.seen | set(session.disliked) | (set(session.shown) if exclude_shown else set())

    def select(self, session: Session, wish: Constraints, query: str, excluded: set[str],
               trace: Trace, degraded: list[str]) -> Selection:
        """Retrieve → filter → re-rank: the candidates, what the filter kept, best first.

        With a request (a query or "more like #N"), only the items a search found are
        eligible, each scored by the history model too, so the request decides what is shown
        and the history how it is ordered; without one, the history's candidates are."""
        candidates = self.retrieve(session, wish, query, trace)
        pool = candidates
        searched = [c for c in candidates if "search" in c.scores]
        if (query or wish.like_item) and searched:
            pool = self._personalised(session, searched, trace)
        filtered = trace.run(
            "filter_items", {"constraints": wish.describe(), "exclude": len(excluded)},
            lambda: self.tools.filter_items(pool, wish, exclude=excluded, owned=session.seen),
            lambda r: f"kept {len(r.kept)} of {len(r.kept) + len(r.excluded)}",
        )
        kept = filtered.kept if filtered else []
        llm = self.llm
        strategy = self.rerank_strategy
        if strategy == "llm" and llm is None:  # fusion simply leaves the LLM out
            strategy = "retriever"
        ranked = None
        if kept:
            try:
                ranked = trace.run("rerank", {"strategy": strategy, "candidates": len(kept)},
                                   lambda: self.tools.rerank(kept, session.history, strategy),
                                   lambda r: f"top: {r[0].item_id}" if r else "nothing")
            except LLMUnavailable as exc:
                degraded.append(f"LLM unavailable ({exc}); ranked without it")
                llm = None
                ranked = self.tools.rerank(kept, session.history, "retriever")
        ranked = ranked or kept
        allowed = {c.item_id for c in kept}
        assert all(c.item_id in allowed for c in ranked), "re-ranking added an item"
        excluded_count = len(filtered.excluded) if filtered else 0
        return Selection(candidates, ranked, excluded_count, llm)

    def _personalised(self, session: Session, found: list[Candidate], trace: Trace) -> list[Candidate]:
        """``found`` with each item's score under the history model (``retriever``)."""
        tool = self.tools.recommend_for_user
        fits = trace.run("recommend_for_user",
                         {"user": session.user_id, "score_items": len(found),
                          "retriever": tool.name_of_source},
                         lambda: tool.score_items(session.history, [c.item_id for c in found]),
                         lambda r: f"scored {len(r)} found items")
        if not fits:
            return found
        return [replace(c, scores={**c.scores, "retriever": fits[c.item_id]}) for c in found]

    def answer(self, session: Session, selection: Selection, wish: Constraints, query: str,
               trace: Trace, degraded: list[str], final: list[Candidate] | None = None) -> AgentAnswer:
        """Explain the final items (default: the selection's top k), record them as shown,
        and write the reply."""
        final = selection.ranked[: self.k] if final is None else final
        trace.emit(Picked([self.tools.get_item(c.item_id) for c in final]))
        recommendations = self._explain(session, final, selection.candidates, wish, selection.llm,
                                        trace, degraded)
        session.record_shown([r.item.item_id for r in recommendations])
        session.turns += 1
        reason = ""
        if not final and selection.excluded:
            reason = f"all {selection.excluded} candidates were filtered out"
        text = render("agent_reply", count=len(recommendations), constraints=wish.describe(),
                      query=query, notes=degraded, empty_reason=reason)
        llm = selection.llm
        return AgentAnswer(text, recommendations, list(trace), wish, degraded,
                           llm.name if llm is not None else None)

    def retrieve(self, session: Session, wish: Constraints, query: str, trace: Trace) -> list[Candidate]:
        found: list[list[Candidate]] = []
        if wish.like_item:
            like = self.tools.dataset.items.get(wish.like_item)
            if like is not None:
                found.append(trace.run("search_items", {"query": like.title, "like": wish.like_item},
                                       lambda: self.tools.search_items(like.title, self.n_candidates),
                                       lambda r: f"{len(r)} items") or [])
        if query:
            found.append(trace.run("search_items", {"query": query},
                                   lambda: self.tools.search_items(query, self.n_candidates, wish),
                                   lambda r: f"{len(r)} items") or [])
        found.append(trace.run("recommend_for_user",
                               {"user": session.user_id, "history": len(session.history),
                                "retriever": self.tools.recommend_for_user.name_of_source},
                               lambda: self.tools.recommend_for_user(
                                   session.history, self.n_candidates + len(session.shown)),
                               lambda r: f"{len(r)} items") or [])
        return merge(*found)

    def _explain(self, session, final, candidates, wish, llm, trace, degraded) -> list[AgentRecommendation]:
        writer = ExplanationWriter(self.tools.dataset, llm if self.explain_with_llm else None)
        titles = [self.tools.dataset.items[x.item_id].title for x in session.history[-50:]]
        titles += [c.title for c in candidates]
        bounds = [b for b in (wish.min_price, wish.max_price) if b is not None]
        out = []
        for rank, c in enumerate(final, 1):
            evidence = trace.run("explain", {"item_id": c.item_id},
                                 lambda c=c: self.tools.explain(c, session.history, wish),
                                 lambda e: f"{len(e.related)} related, shared {sorted(e.shared)}")
            facts = self.tools.get_item(c.item_id)
            if evidence is None:
                continue
            def delta(text: str, rank=rank, item_id=c.item_id) -> None:
                trace.emit(ProseDelta(rank, item_id, text))

            try:
                explanation = writer.write(evidence, other_titles=titles, price_bounds=bounds,
                                           on_delta=delta if trace.on_event else None)
            except LLMUnavailable as exc:
                degraded.append(f"LLM unavailable ({exc}); explanations from evidence")
                writer = ExplanationWriter(self.tools.dataset, None)
                explanation = writer.write(evidence)
            trace.emit(Explained(rank, c.item_id, explanation))
            out.append(AgentRecommendation(rank, facts, c.score, dict(c.scores), evidence, explanation))
        return out
