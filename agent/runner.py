"""The one turn runner. Every agent runs a turn the same way and differs only in its
:class:`Picker`, the step that chooses the candidates:

1. **request**: the constraints and query this turn answers (the message parsed by the rules,
   plus the LLM's constrained parse where the backend has one; or the session's request as it
   stands, for "again");
2. **pick** (the picker): the fixed plan (retrieve, filter, re-rank), the LLM driving the tools,
   or popular items when the index is down;
3. **answer**: explain the final items (checked LLM prose, or the evidence), write the reply,
   and return the session as it is after this turn.

The session passed in is never changed: the answer carries the new one (``answer.session``),
so a caller whose turn fails keeps the old state without copying it first. One turn's state
lives in one :class:`TurnContext`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from recagent.agent.constraints import READER, ConstraintParser, combine, parse_with_llm
from recagent.agent.events import EventSink, Explained, Picked, ProseDelta
from recagent.agent.explanations import NO_REDRAWS, ExplanationWriter, Redraws
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer, AgentRecommendation, Trace
from recagent.llm.base import LLM, LLMUnavailable
from recagent.prompts import render
from recagent.tools.base import ToolContext
from recagent.tools.candidates import Candidate
from recagent.tools.constraints import Constraints
from recagent.tools.explain import ItemEvidence
from recagent.tools.toolbox import Toolbox

__all__ = ["Picker", "Selection", "TurnContext", "TurnRunner"]


@dataclass
class TurnContext:
    """One turn's state: the request, what may not be shown, the trace, and what degraded."""

    session: Session  # as it was when the turn began (never changed)
    message: str
    wish: Constraints  # what this turn answers: the session's constraints merged with the message's
    query: str  # this message's own query ("" for a turn without a request)
    excluded: frozenset[str]  # the history, dislikes and (for "more") everything shown
    trace: Trace
    k: int
    llm: LLM | None  # the LLM still usable in this turn (None after an outage)
    again: bool = False  # answering the session's request as it stands, not a new message
    degraded: list[str] = field(default_factory=list)
    inferred_categories: tuple[str, ...] = ()  # read by the LLM from intent, not said outright
    started: float = field(default_factory=time.monotonic)  # when the turn began (monotonic)
    tools: ToolContext = field(init=False)

    def __post_init__(self) -> None:
        self.tools = ToolContext(self.session.user_id, self.session.history, self.wish,
                                 self.excluded)

    def lose_llm(self, note: str) -> None:
        """The LLM failed: note why, and go on without it for the rest of the turn."""
        self.degraded.append(note)
        self.llm = None


@dataclass(frozen=True)
class Selection:
    """What a picker chose."""

    candidates: list[Candidate]  # everything considered, before the filter
    ranked: list[Candidate]  # what may be shown, best first
    excluded: int  # how many candidates the filter removed
    related_evidence: bool = True  # False: the index is down, so no history evidence either


class Picker(Protocol):
    """How an agent chooses the candidates of a turn."""

    def pick(self, turn: TurnContext, tools: Toolbox) -> Selection: ...


class TurnRunner:
    """Runs conversation turns with ``picker``; ``llm`` parses requests and writes prose
    (``explain_with_llm=False`` keeps it to parsing and re-ranking; ``redraws``: see
    :class:`Redraws`)."""

    def __init__(self, tools: Toolbox, picker: Picker, llm: LLM | None = None, *, k: int = 5,
                 explain_with_llm: bool = True, redraws: Redraws = NO_REDRAWS) -> None:
        self.tools = tools
        self.picker = picker
        self.llm = llm
        self.k = k
        self.explain_with_llm = explain_with_llm
        self.redraws = redraws  # sampled sentences for an item whose sentence failed its check
        search = getattr(tools, "search_items", None)
        self.parser = ConstraintParser(tools.dataset, encoder=getattr(search, "encoder", None))

    def turn(self, session: Session, message: str = "", *, exclude_shown: bool = False,
             again: bool = False, on_event: EventSink | None = None) -> AgentAnswer:
        """One turn. ``exclude_shown`` leaves out everything shown earlier in the session
        ("more"); ``again`` answers the session's request as it stands (its constraints and
        query, after feedback or an edited filter) instead of parsing ``message``;
        ``on_event`` receives the turn's progress (see :mod:`recagent.agent.events`)."""
        trace = Trace(on_event)
        excluded = session.seen | set(session.disliked) | (set(session.shown) if exclude_shown else set())
        turn = TurnContext(session, message, session.constraints, "", frozenset(excluded), trace,
                           self.k, self.llm, again)
        if again:
            turn.query = session.constraints.query
        else:
            turn.wish, turn.query = self._request(turn)
        turn.tools.constraints = turn.wish
        selection = self.picker.pick(turn, self.tools)
        if not selection.ranked and turn.inferred_categories:
            selection = self._without_inferred_categories(turn)
        return self._answer(turn, selection, selection.ranked[: self.k])

    def _without_inferred_categories(self, turn: TurnContext) -> Selection:
        """The turn again without the categories only the LLM read into the message: a
        guessed category may narrow a request, never empty its answer."""
        guessed = set(turn.inferred_categories)
        turn.degraded.append(f"nothing matched the category the LLM read into the request "
                             f"({', '.join(sorted(guessed))}); answered without it")
        turn.wish = replace(turn.wish, categories=tuple(c for c in turn.wish.categories
                                                        if c not in guessed))
        turn.inferred_categories = ()
        turn.tools.constraints = turn.wish
        return self.picker.pick(turn, self.tools)

    # -- 1. the request

    def _request(self, turn: TurnContext) -> tuple[Constraints, str]:
        """The message parsed (rules; plus the LLM's JSON parse where the backend has
        structured output, the rules winning on conflicts), merged into the session's."""
        message, session, trace = turn.message, turn.session, turn.trace
        parsed = trace.run("parse_constraints", {"message": message},
                           lambda: self.parser.parse(message, last_shown=session.last_shown),
                           lambda c: "; ".join(c.describe()) or "no constraints")
        parsed = parsed or Constraints()
        # The LLM reads what the rules could not: when they explained every word (a price, a
        # known brand, "more like #2"), there is nothing left for it to add (see combine).
        if parsed.query.strip() and turn.llm is not None and turn.llm.structured_output:
            try:
                llm_parsed = trace.run(
                    "parse_constraints_llm", {"message": message},
                    lambda: parse_with_llm(turn.llm, self.parser, message,
                                           adapter=READER if READER in turn.llm.adapters else None),
                    lambda c: "; ".join(c.describe()) or "no constraints")
            except LLMUnavailable as exc:
                turn.lose_llm(f"LLM unavailable ({exc}); constraints from rules only")
                llm_parsed = None
            if llm_parsed is not None:
                rules_categories = set(parsed.categories)
                parsed = combine(parsed, llm_parsed, self.parser)
                turn.inferred_categories = tuple(c for c in parsed.categories
                                                 if c not in rules_categories)
        if (parsed.min_price is not None or parsed.max_price is not None) and not self.parser.has_prices:
            turn.degraded.append("this catalog lists no prices, so the price bound is left out")
            parsed = replace(parsed, min_price=None, max_price=None)
        return session.constraints.merged(parsed), parsed.query

    # -- 3. the answer

    def _answer(self, turn: TurnContext, selection: Selection,
                final: list[Candidate]) -> AgentAnswer:
        turn.trace.emit(Picked([self.tools.get_item(c.item_id) for c in final]))
        recommendations = self._explain(turn, selection, final)
        shown = [r.item.item_id for r in recommendations]
        reason = ""
        if not final and selection.excluded:
            reason = f"all {selection.excluded} candidates were filtered out"
        text = render("agent_reply", count=len(recommendations), constraints=turn.wish.describe(),
                      query=turn.query, notes=turn.degraded, empty_reason=reason)
        llm = turn.llm
        return AgentAnswer(text, recommendations, list(turn.trace), turn.wish,
                           turn.session.answered(turn.wish, shown), turn.degraded,
                           llm.name if llm is not None else None)

    def _explain(self, turn: TurnContext, selection: Selection,
                 final: list[Candidate]) -> list[AgentRecommendation]:
        dataset, trace = self.tools.dataset, turn.trace
        titles = [dataset.items[x.item_id].title for x in turn.session.history[-50:]]
        titles += [c.title for c in selection.candidates]
        bounds = [b for b in (turn.wish.min_price, turn.wish.max_price) if b is not None]
        shown: list[tuple[int, Candidate, ItemEvidence]] = []
        for rank, c in enumerate(final, 1):
            if selection.related_evidence:
                evidence = trace.run("explain", {"item_id": c.item_id},
                                     lambda c=c: self.tools.explain(c, turn.session.history, turn.wish),
                                     self.tools.explain.summarize)
                if evidence is None:
                    continue
            else:
                item = dataset.items[c.item_id]
                evidence = ItemEvidence(c.item_id, item.title, item.price,
                                        satisfies=tuple(turn.wish.describe_for(item)),
                                        category=tuple(item.category))
            shown.append((rank, c, evidence))
        evidences = [e for _, _, e in shown]

        def prose(n: int, text: str) -> None:
            rank, c, _ = shown[n]
            trace.emit(ProseDelta(rank, c.item_id, text))

        writer = ExplanationWriter(dataset, turn.llm if self.explain_with_llm else None,
                                   redraws=self.redraws)
        try:
            explanations = writer.write_all(evidences, other_titles=titles, price_bounds=bounds,
                                            price_floor=turn.wish.min_price,
                                            price_ceiling=turn.wish.max_price,
                                            on_prose=prose if trace.on_event else None,
                                            turn_started=turn.started)
        except LLMUnavailable as exc:
            turn.lose_llm(f"LLM unavailable ({exc}); explanations from evidence")
            explanations = ExplanationWriter(dataset, None).write_all(evidences)
        out = []
        for (rank, c, evidence), explanation in zip(shown, explanations, strict=True):
            trace.emit(Explained(rank, c.item_id, explanation))
            out.append(AgentRecommendation(rank, self.tools.get_item(c.item_id), c.score,
                                           dict(c.scores), evidence, explanation))
        return out
