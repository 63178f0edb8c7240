"""A turn as server-sent events (``text/event-stream``), written while the agent works.

Events, in order: ``queued`` (only when the turn waits for a compute slot), ``tool_call``
(each tool call as it finishes), ``picked`` (the answer's items, before any prose),
``prose`` (explanation text as the LLM decodes it), ``explained`` (an item's final
explanation: the checked prose, or the evidence text that replaces prose which failed the
check), then ``answer`` (the same body as the non-streaming route) or ``error``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from recagent.agent.events import Explained, Picked, ProseDelta
from recagent.agent.turn import ToolCall
from recagent.app.answer_json import item_json, tool_call_json
from recagent.server.conversations import Conversations, Queued, TurnResult
from recagent.server.errors import describe, public_note
from recagent.server.logs import log

__all__ = ["event_json", "sse", "stream_turn", "turn_body"]


def sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def event_json(event: object) -> tuple[str, dict[str, Any]] | None:
    """The SSE name and body of a turn's event (None for events a client need not see)."""
    if isinstance(event, ToolCall):
        call = tool_call_json(event)
        return "tool_call", {**call, "error": public_note(call["error"])} if call.get("error") else call
    if isinstance(event, Picked):
        return "picked", {"items": [item_json(i) for i in event.items]}
    if isinstance(event, ProseDelta):
        return "prose", {"rank": event.rank, "item_id": event.item_id, "text": event.text}
    if isinstance(event, Explained):
        return "explained", {"rank": event.rank, "item_id": event.item_id,
                             "text": event.explanation.text, "source": event.explanation.source}
    if isinstance(event, Queued):
        return "queued", {"ahead": event.ahead}
    return None


def turn_body(result: TurnResult) -> dict[str, Any]:
    """The answer as users see it: its text, notes and tool errors without internal addresses
    (an outage's note names the LLM server; the stored event keeps it for the operator)."""
    raw = result.answer
    answer = {**raw, "text": public_note(raw["text"]),
              "degraded": [public_note(n) for n in raw["degraded"]],
              "trace": [{**c, "error": public_note(c["error"])} if c.get("error") else c
                        for c in raw.get("trace", [])],
              "notices": [{**n, "text": public_note(n["text"])} for n in raw.get("notices", [])]}
    return {"session_id": result.session_id, "turn": result.session.turns,
            "degraded": result.degraded, "answer": answer}


class _End:
    def __init__(self, result: TurnResult | None = None, error: BaseException | None = None):
        self.result = result
        self.error = error


async def stream_turn(conversations: Conversations, session_id: str, message: str, *,
                      exclude_shown: bool, request_id: str | None) -> AsyncIterator[bytes]:
    """Runs the turn in a thread and yields its events as they happen.

    A client that disconnects does not stop the turn: it finishes and is stored as usual.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def emit(event: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def work() -> None:
        try:
            result = conversations.turn(session_id, message, exclude_shown=exclude_shown,
                                        on_event=emit, request_id=request_id)
            emit(_End(result))
        except Exception as exc:  # noqa: BLE001 - reported to the client as an `error` event
            if describe(exc)[0] >= 500:
                log.error("turn failed", exc_info=exc, extra={"request_id": request_id})
            emit(_End(error=exc))

    threading.Thread(target=work, name=f"turn-{session_id[:8]}", daemon=True).start()
    n = 0
    while True:
        event = await queue.get()
        n += 1
        if isinstance(event, _End):
            if event.result is not None:
                yield sse("answer", turn_body(event.result), n)
            else:
                status, code, text = describe(event.error)
                yield sse("error", {"status": status, "code": code, "message": text,
                                    "request_id": request_id}, n)
            return
        pair = event_json(event)
        if pair is not None:
            yield sse(*pair, n)
