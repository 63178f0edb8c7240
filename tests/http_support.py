"""Helpers for the HTTP backend tests: a tiny-shop assistant and an app on a fresh database."""

from __future__ import annotations

import json
from pathlib import Path

from recagent.app.assistant import Assistant
from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.server import create_app
from recagent.server.store import SessionStore

# The address a test client calls from: no-auth mode answers only clients on this machine
# (Starlette's default client address, "testclient", is not one).
LOOPBACK = ("127.0.0.1", 50000)


def tiny_assistant(home: Path, data: Path, encoder, llm=None, *, k: int = 3) -> Assistant:
    """An assistant on the tiny shop with no LLM (or ``llm``), reusing the session's encoder."""
    assistant = Assistant(Runtime(Settings(home=home, data=data, llm="none", allowed_hosts=("testserver",))), k=k)
    assistant.runtime.__dict__["encoder"] = encoder
    if llm is not None:
        assistant.__dict__["llm"] = llm
    assistant.prepare(show_progress=False)
    return assistant


def tiny_app(assistant: Assistant, db: Path, **kwargs):
    return create_app(assistant, store=SessionStore(f"sqlite:///{db}"), prepare=False, **kwargs)


def sse_events(body: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a text/event-stream body."""
    out = []
    for frame in body.strip().split("\n\n"):
        name, data = "message", ""
        for line in frame.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        if data:
            out.append((name, json.loads(data)))
    return out
