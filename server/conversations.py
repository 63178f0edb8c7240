"""The assistant over stored sessions: start one, take a turn, record feedback, recommend.

Each change runs while the session is held (one request per session at a time, see
:meth:`SessionStore.hold`), and its new state is written with its event before the caller
gets an answer. Model work queues for a compute slot (:class:`ComputeSlots`).

Under load, a turn that gets its slot while ``prose_queue_limit`` or more turns wait behind
it answers without LLM prose (explanations from the evidence, flagged degraded): on a CPU the
prose takes seconds per item, and without shedding it a queue of 32 turns would wait minutes.

Outages do not fail a request: the agent itself answers without the LLM when it is down
(``degraded`` notes); when the Chroma index is down, :class:`IndexFreeAnswers` answers from
popularity under the same constraints, with a note saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from recagent.agent.pipeline import PlanAgent
from recagent.agent.session import Session
from recagent.app.answer_json import answer_json
from recagent.app.assistant import Assistant
from recagent.app.fallback import IndexFreeAnswers
from recagent.catalog.errors import IndexUnavailable
from recagent.llm.base import LLMUnavailable
from recagent.server.slots import ComputeSlots
from recagent.server.store import Event, SessionNotFound, SessionStore, StoredSession

__all__ = ["Conversations", "Queued", "TurnResult"]


@dataclass(frozen=True)
class Queued:
    """Streamed when a turn has to wait for a compute slot: ``ahead`` requests go first."""

    ahead: int


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    session: Session
    answer: dict[str, Any]  # answer_json's shape

    @property
    def degraded(self) -> bool:
        return bool(self.answer["degraded"])


@dataclass(frozen=True)
class FeedbackResult:
    session_id: str
    session: Session
    event_id: int


@dataclass(frozen=True)
class RecommendResult:
    retriever: str
    recommendations: list
    degraded: list[str]


class Conversations:
    def __init__(self, assistant: Assistant, store: SessionStore, slots: ComputeSlots | None = None,
                 *, prose_queue_limit: int | None = 2):
        self.assistant = assistant
        self.store = store
        self.slots = slots or ComputeSlots()
        self.prose_queue_limit = prose_queue_limit

    @cached_property
    def plain_agent(self) -> PlanAgent:
        """The fixed plan with no LLM: what a turn runs when the queue is long."""
        a = self.assistant
        return PlanAgent(a.tools, None, k=a.k, rerank=a.rerank)

    def _agent_for_now(self):
        """The assistant's agent, or the plain one (and why) when too many turns wait."""
        waiting = self.slots.waiting
        limit = self.prose_queue_limit
        if limit is not None and waiting >= limit and self.assistant.llm is not None:
            return self.plain_agent, (f"busy: {waiting} requests waiting, so the explanations "
                                      "come from the evidence, without LLM prose")
        return self.assistant.agent, None

    @property
    def dataset(self):
        return self.assistant.runtime.dataset

    @cached_property
    def fallback(self) -> IndexFreeAnswers:
        return IndexFreeAnswers(self.dataset)

    def start(self, user_id: str | None, owner: str | None = None) -> tuple[str, Session]:
        session = self.assistant.session(user_id)  # UnknownUserError for an unknown user
        return self.store.create(self.dataset.name, session, owner), session

    def get(self, session_id: str) -> StoredSession:
        stored = self.store.load(session_id)
        if stored.dataset != self.dataset.name:
            raise SessionNotFound(f"session {session_id!r} belongs to dataset {stored.dataset!r}, "
                                  f"not {self.dataset.name!r}")
        return stored

    def turn(self, session_id: str, message: str, *, exclude_shown: bool = False,
             on_event: Callable[[Any], None] | None = None,
             request_id: str | None = None) -> TurnResult:
        self.get(session_id)
        with self.store.hold(session_id) as held:
            session = held.session
            before = session.to_dict()
            wait = (lambda ahead: on_event(Queued(ahead))) if on_event else None
            with self.slots.acquire(on_wait=wait):
                agent, shed = self._agent_for_now()
                try:
                    answer = agent.turn(session, message, exclude_shown=exclude_shown,
                                        on_event=on_event)
                    if shed:
                        answer = replace(answer, degraded=[*answer.degraded, shed])
                except Exception as exc:
                    note = self._outage(exc)
                    if note is None:
                        raise
                    session = Session.from_dict(before)  # undo what the failed turn changed
                    answer = self.fallback.turn(session, message, self.assistant.k, note)
            payload = answer_json(answer, session)
            held.save(session, Event("turn", message=message, payload=payload, request_id=request_id))
        return TurnResult(session_id, session, payload)

    def feedback(self, session_id: str, item_id: str, kind: str,
                 request_id: str | None = None) -> FeedbackResult:
        self.get(session_id)
        with self.store.hold(session_id) as held:
            session = held.session
            self.assistant.feedback(session, item_id, kind)  # UnknownItemError, bad kind
            (event_id,) = held.save(session, Event("feedback", item_id=item_id, feedback=kind,
                                                   request_id=request_id))
        return FeedbackResult(session_id, session, event_id)

    def recommend(self, history, k: int) -> RecommendResult:
        with self.slots.acquire():
            try:
                model = self.assistant.recommender
                return RecommendResult(model.name, list(model.recommend(history, k)), [])
            except Exception as exc:
                note = self._outage(exc)
                if note is None:
                    raise
                return RecommendResult("popularity", self.fallback.recommend(history, k), [note])

    def _outage(self, exc: Exception) -> str | None:
        """A degraded note when ``exc`` comes from an unreachable index or LLM, else None."""
        if isinstance(exc, LLMUnavailable):
            return f"LLM unavailable ({exc}); popular items shown instead"
        if isinstance(exc, IndexUnavailable):
            return f"search index unavailable ({exc}); popular items shown instead"
        problem = self.index_problem()
        if problem is not None:
            return f"search index unavailable ({problem}); popular items shown instead"
        return None

    def index_problem(self) -> str | None:
        """Why the Chroma index cannot serve, or None when it can."""
        try:
            stored = self.assistant.runtime.index.collection.count()
        except Exception as exc:  # noqa: BLE001 - any client error means the same: unreachable
            return f"{type(exc).__name__}: {exc}"
        if stored < len(self.dataset.items):
            return f"the index holds {stored} of {len(self.dataset.items)} items"
        return None
