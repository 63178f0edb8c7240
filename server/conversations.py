"""The assistant over stored sessions: start one, take a turn, record feedback, recommend.

A message is handled by the same conversation service as the terminal chat
(:class:`~recagent.app.chat.Chat`), so it can be a request, "I bought ...", or a command
(``/filter price<30``, ``/like 2``, ``/forget 1``, ``/more``). Each change runs while the
session is held (one request per session at a time, see :meth:`SessionStore.hold`), and its
new state is written with its event before the caller gets an answer. Model work queues for
a compute slot (:class:`ComputeSlots`).

Under load, a turn that gets its slot while ``prose_queue_limit`` or more turns wait behind
it answers without LLM prose (explanations from the evidence, flagged degraded): on a CPU the
prose takes seconds per item, and without shedding it a queue of 32 turns would wait minutes.

Outages do not fail a request: the agent itself answers without the LLM when it is down
(``degraded`` notes); when the Chroma index is down, the index-free agent answers from
popularity under the same constraints, with a note saying so. A turn never changes the
session it was given (the answer carries the new one), so a failed turn leaves nothing to undo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from recagent.agent.runner import TurnRunner
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer
from recagent.app.answer_json import answer_json
from recagent.app.assistant import Assistant
from recagent.app.chat import Chat, HelpView, HistoryView, Notice, Quit, TraceView, Why
from recagent.catalog.errors import IndexUnavailable, RecAgentError
from recagent.llm.base import LLMUnavailable
from recagent.retrieval.base import PopularItems, RecommendRequest
from recagent.server.batching import RecommendBatcher
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
                 *, prose_queue_limit: int | None = 2, recommend_batch: int = 64):
        self.assistant = assistant
        self.store = store
        self.slots = slots or ComputeSlots()
        self.prose_queue_limit = prose_queue_limit
        self.batcher = RecommendBatcher(self.slots, recommend_batch)

    @property
    def plain_agent(self) -> TurnRunner:
        """The fixed plan with no LLM: what a turn runs when the queue is long."""
        return self.assistant.plain_agent

    def _agent_for_now(self) -> tuple[TurnRunner, str | None]:
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
    def _popular_items(self) -> PopularItems:
        return PopularItems(self.dataset)

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
        """Handle one message in the stored session: a request, "I bought ...", or a chat
        command. A line the chat cannot act on (``/forget 99``) is a RecAgentError (400)."""
        self.get(session_id)
        with self.store.hold(session_id) as held:
            wait = (lambda ahead: on_event(Queued(ahead))) if on_event else None
            with self.slots.acquire(on_wait=wait):
                chat = Chat.resume(self.assistant, held.session, answer=self._answer)
                outputs = chat.handle(message, on_event, exclude_shown=exclude_shown)
            session = chat.session
            payload = _payload(outputs, session)
            held.save(session, Event("turn", message=message, payload=payload, request_id=request_id))
        return TurnResult(session_id, session, payload)

    def _answer(self, session: Session, message: str, **options: Any) -> AgentAnswer:
        """One turn for the chat: the agent for now, or, when the index or the LLM is down,
        popular items under the same constraints (flagged degraded)."""
        agent, shed = self._agent_for_now()
        try:
            answer = agent.turn(session, message, **options)
        except Exception as exc:
            note = self._outage(exc)
            if note is None:
                raise
            answer = self.assistant.index_free_agent.turn(session, message, **options)
            return replace(answer, degraded=[note, *answer.degraded])
        return replace(answer, degraded=[*answer.degraded, shed]) if shed else answer

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
        """The recommender's top ``k`` for ``history``, computed with the requests that wait
        beside it (:class:`RecommendBatcher`); popular items when the index is down."""
        try:
            model = self.assistant.recommender
            recs = self.batcher.recommend(model, RecommendRequest(list(history), k))
            return RecommendResult(model.name, recs, [])
        except Exception as exc:
            note = self._outage(exc)
            if note is None:
                raise
            seen = {x.item_id for x in history}
            return RecommendResult("popularity", self._popular_items.recommend(k, seen=seen),
                                   [note])

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


def _payload(outputs: list, session: Session) -> dict[str, Any]:
    """The answer of a handled line (answer_json's shape) with the chat's notices; a line
    that only failed is an error for the client."""
    notices = [{"kind": o.kind, "text": o.text} for o in outputs if isinstance(o, Notice)]
    answers = [o for o in outputs if isinstance(o, AgentAnswer)]
    for o in outputs:
        if isinstance(o, HelpView):
            notices.append({"kind": "info", "text": "; ".join(f"{u}: {what}" for u, what in o.commands)})
        elif isinstance(o, HistoryView):
            notices.append({"kind": "info", "text": f"{len(o.entries)} items in the history; "
                                                    "GET /v1/sessions/{id} lists them"})
        elif isinstance(o, (Why, TraceView, Quit)):
            notices.append({"kind": "info", "text": "the answer you have holds the explanations "
                                                    "and the trace"})
    if not answers:
        errors = [n["text"] for n in notices if n["kind"] == "error"]
        if errors and len(errors) == len(notices):
            raise RecAgentError(errors[0])
        payload = {"user": session.user_id, "text": " ".join(n["text"] for n in notices),
                   "llm": None, "degraded": [], "constraints": session.constraints.describe(),
                   "recommendations": [], "trace": []}
    else:
        payload = answer_json(answers[-1], session)
    return {**payload, "notices": notices}
