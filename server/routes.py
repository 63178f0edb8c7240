"""The ``/v1`` routes: sessions, messages (plain and streamed), feedback, items, recommend.

Every route runs as the caller's principal (:mod:`.access`, set by the guard): a session is
visible only to the principal that started it (another's is 404, as if it did not exist), and
a dataset user only to a principal whose key lists it (404 ``unknown_user`` otherwise, with no
hint of which users exist)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from recagent.agent.session import Session
from recagent.app.answer_json import item_json, recommendations_json
from recagent.catalog.errors import UnknownUserError
from recagent.server.access import Forbidden, Principal
from recagent.server.conversations import Conversations
from recagent.server.errors import public_note
from recagent.server.logs import request_id
from recagent.server.schemas import (
    AnswerOut,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    ItemOut,
    MessageIn,
    RecommendIn,
    RecommendOut,
    SessionIn,
    SessionOut,
)
from recagent.server.store import SessionBusy, SessionNotFound
from recagent.server.streaming import stream_turn, turn_body
from recagent.tools.get_item import GetItem

__all__ = ["get_conversations", "get_principal", "router"]

# What each route may answer besides its success, in the shape the server really sends
# (declaring 422 replaces FastAPI's default HTTPValidationError, which the server never sends).
_ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in (
    (400, "Malformed JSON or a bad request"), (401, "Missing or unknown API key"),
    (403, "The key may not do this"), (404, "Unknown user, item or session"),
    (413, "Request body too large"), (422, "A field failed validation"),
    (429, "Rate limit or queue full; see Retry-After"))}
router = APIRouter(prefix="/v1", responses=_ERRORS)


def get_conversations() -> Conversations:
    """Replaced by the app factory (``app.dependency_overrides``); tests may override it too."""
    raise RuntimeError("no Conversations configured: build the app with create_app()")


def get_principal(request: Request) -> Principal:
    """The caller, as the guard authenticated it (no guard in front: a configuration error)."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise TypeError("no principal on the request: the app must run behind the Guard")
    return principal


Chat = Annotated[Conversations, Depends(get_conversations)]
Caller = Annotated[Principal, Depends(get_principal)]
SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _own(chat: Conversations, caller: Principal, session_id: str) -> None:
    """SessionNotFound unless ``caller`` started the session (another's looks like none)."""
    if not caller.owns(chat.store.owner(session_id)):
        raise SessionNotFound(f"unknown session {session_id!r}")


def _user(caller: Principal, user_id: str | None) -> None:
    if user_id is None and not caller.may_act_for(None):
        raise Forbidden("this API key may not start sessions for new users")
    if not caller.may_act_for(user_id):
        raise UnknownUserError("unknown user")


def _session_out(session_id: str, dataset: str, session: Session, chat: Conversations) -> SessionOut:
    items = chat.dataset.items
    return SessionOut(
        session_id=session_id, user_id=session.user_id, dataset=dataset, turns=session.turns,
        history_length=len(session.history),
        recent_history=[{"item_id": x.item_id, "title": items[x.item_id].title, "event": x.event}
                        for x in session.history[-10:][::-1] if x.item_id in items],
        constraints=session.constraints.describe(), shown=session.shown,
        last_shown=session.last_shown, liked=session.liked, disliked=session.disliked,
    )


@router.post("/sessions", status_code=201, response_model=SessionOut, tags=["sessions"],
             summary="Start a conversation for a dataset user (their history) or a new user")
def create_session(chat: Chat, caller: Caller,
                   body: Annotated[SessionIn | None, Body()] = None) -> SessionOut:
    user_id = (body or SessionIn()).user_id
    _user(caller, user_id)
    session_id, session = chat.start(user_id, owner=caller.name)
    return _session_out(session_id, chat.dataset.name, session, chat)


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"],
            summary="A session's state: history, constraints, shown, liked and disliked items")
def get_session(session_id: SessionId, chat: Chat, caller: Caller) -> SessionOut:
    _own(chat, caller, session_id)
    stored = chat.get(session_id)
    return _session_out(session_id, stored.dataset, stored.session, chat)


@router.post("/sessions/{session_id}/messages", response_model=AnswerOut, tags=["messages"],
             summary="Send a message; the answer has recommendations, explanations and the trace")
def send_message(session_id: SessionId, body: MessageIn, chat: Chat, caller: Caller) -> dict:
    _own(chat, caller, session_id)
    result = chat.turn(session_id, body.message, exclude_shown=body.exclude_shown,
                       request_id=request_id.get())
    return turn_body(result)


@router.post(
    "/sessions/{session_id}/messages/stream", tags=["messages"],
    summary="Send a message and stream the turn as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description":
                     "Events: queued, tool_call, picked, prose, explained, then answer or error."}},
)
async def stream_message(session_id: SessionId, body: MessageIn, chat: Chat,
                         caller: Caller) -> StreamingResponse:
    await run_in_threadpool(_own, chat, caller, session_id)  # a 404 before the stream starts
    await run_in_threadpool(chat.get, session_id)
    if await run_in_threadpool(chat.store.busy, session_id):  # a 409 too, not a stream that waits
        raise SessionBusy(f"session {session_id!r} is busy with another request; retry")
    events = stream_turn(chat, session_id, body.message, exclude_shown=body.exclude_shown,
                         request_id=request_id.get())
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/sessions/{session_id}/feedback", status_code=201, response_model=FeedbackOut,
             tags=["sessions"], summary="Record a click, like, dislike or purchase of an item")
def send_feedback(session_id: SessionId, body: FeedbackIn, chat: Chat,
                  caller: Caller) -> FeedbackOut:
    _own(chat, caller, session_id)
    result = chat.feedback(session_id, body.item_id, body.kind, request_id=request_id.get())
    s = result.session
    return FeedbackOut(session_id=session_id, event_id=result.event_id, item_id=body.item_id,
                       kind=body.kind, history_length=len(s.history), liked=s.liked,
                       disliked=s.disliked)


@router.get("/items/{item_id}", response_model=ItemOut, tags=["catalog"], summary="One catalog item")
def get_item(item_id: Annotated[str, Path(min_length=1, max_length=200)], chat: Chat) -> dict:
    chat.dataset.item(item_id)  # UnknownItemError -> 404
    return item_json(GetItem(chat.dataset, description_chars=2000)(item_id))


@router.post("/recommend", response_model=RecommendOut, tags=["catalog"],
             summary="Recommendations for a user's history (or a session's), with evidence")
def recommend(body: RecommendIn, chat: Chat, caller: Caller) -> RecommendOut:
    dataset = chat.dataset
    if body.session_id is not None:
        _own(chat, caller, body.session_id)
        session = chat.get(body.session_id).session
        user, history = session.user_id, session.history
    else:
        _user(caller, body.user_id)
        user = dataset.resolve_user(body.user_id)
        history = dataset.histories[user]
    result = chat.recommend(history, body.k)
    payload = recommendations_json(user, dataset.name, result.retriever, result.recommendations)
    for rec in payload["recommendations"]:  # what a card shows besides the title
        item = dataset.items[rec["item_id"]]
        rec.update(category=" > ".join(item.category), price=item.price)
    return RecommendOut(**payload, degraded=[public_note(n) for n in result.degraded])
