"""The FastAPI app: ``create_app(settings | assistant)`` wires the assistant, the session store
and the compute slots into the routes, and adds request ids, logs, errors and the web page,
behind the guard (API keys, rate limits, bounded requests in flight: :mod:`.guard`), the body
limit and the Host check (:mod:`.middleware`), with security headers on every response.

Nothing heavy happens at import or in the factory: the models load in :meth:`Readiness.prepare`,
which the app's start-up runs (``recagent serve`` runs it first, with progress on screen).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from recagent.app.assistant import Assistant
from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.llm.base import LLMUnavailable
from recagent.server.access import ApiKeys
from recagent.server.conversations import Conversations
from recagent.server.errors import install_error_handlers, public_note
from recagent.server.guard import Admission, Guard
from recagent.server.logs import log
from recagent.server.middleware import BodyLimit, RequestContext
from recagent.server.routes import get_conversations, router
from recagent.server.schemas import HealthOut, ReadyOut
from recagent.server.slots import ComputeSlots
from recagent.server.store import SessionStore

__all__ = ["Readiness", "app_from_env", "create_app"]

API_VERSION = "1"


class Readiness:
    """Whether this process can answer: models loaded, index complete, database reachable."""

    def __init__(self, conversations: Conversations, admission: Admission | None = None) -> None:
        self.conversations = conversations
        self.admission = admission
        self.prepared = False
        self.llm_problem: str | None = None

    def prepare(self, *, show_progress: bool = False) -> None:
        """Build or check the indexes, load the encoder and the LLM (idempotent)."""
        started = time.perf_counter()
        assistant = self.conversations.assistant
        _ = assistant.runtime.dataset
        assistant.prepare(show_progress=show_progress)
        _ = assistant.runtime.encoder.model
        self.llm_problem = _load_llm(assistant)
        _ = assistant.agent
        self._warm_up()
        self.prepared = True
        log.info("ready", extra={"fields": {"seconds": round(time.perf_counter() - started, 1),
                                            "llm": self.llm_problem or "ok"}})

    def _warm_up(self) -> None:
        """One recommendation and one turn without the LLM on a throwaway session (not stored),
        so the first request does not pay for the lazily loaded item vectors."""
        conv = self.conversations
        user = next(iter(conv.dataset.histories))
        session = conv.assistant.session(user)
        conv.assistant.recommender.recommend(session.history, 1)
        conv.plain_agent.turn(session, "")

    def checks(self) -> dict[str, str]:
        conv = self.conversations
        if not self.prepared:
            return {"models": "not loaded yet"}
        checks = {"models": "ok", "dataset": f"ok: {conv.dataset.name}, {len(conv.dataset.items)} items"}
        problem = conv.index_problem()
        checks["index"] = "ok" if problem is None else f"unavailable: {problem}"
        llm = conv.assistant.llm
        checks["llm"] = (f"degraded: {public_note(self.llm_problem)}" if self.llm_problem
                         else "ok: " + (llm.name if llm is not None else "none"))
        if self.admission is not None:
            busy, limit = self.admission.inflight, self.admission.limit
            checks["capacity"] = (f"saturated: {busy} of {limit} requests in flight"
                                  if self.admission.saturated else f"ok: {busy} of {limit} in flight")
        try:
            conv.store.ping()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"unavailable: {type(exc).__name__}"
        return checks

    def ready(self, checks: dict[str, str]) -> bool:
        """The LLM is not required: without it the agent answers, flagged degraded."""
        return all(v.startswith("ok") for k, v in checks.items() if k != "llm")


def _load_llm(assistant: Assistant) -> str | None:
    try:
        llm = assistant.llm
        if llm is not None and hasattr(llm, "model"):
            _ = llm.model  # the embedded LLM loads (and on first use converts) its weights
    except LLMUnavailable as exc:
        return str(exc)
    return None


def create_app(target: Settings | Assistant, *, store: SessionStore | None = None,
               compute_slots: int = 1, prose_queue_limit: int | None = 2,
               prepare: bool = True, settings: Settings | None = None) -> FastAPI:
    """The HTTP app over an assistant (or one built from ``settings``).

    ``store`` defaults to the settings' database (``Settings.database_url``); ``prepare``
    loads everything at start-up so that ``/readyz`` only says ready when it is.
    ``prose_queue_limit``: a turn skips LLM prose when this many turns wait (None: never).
    The settings' security fields (API keys, rate limit, requests in flight, allowed hosts,
    docs, session wait and lease) configure the guard; see docs/security.md. ``settings``
    gives them when they differ from the assistant's (tests).
    """
    assistant = target if isinstance(target, Assistant) else Assistant(Runtime(target))
    settings = settings or assistant.runtime.settings
    keys = ApiKeys.load(settings.api_keys_file) if settings.api_keys_file else None
    store = store or SessionStore(settings.database_url, lease_seconds=settings.lease_seconds,
                                  wait_seconds=settings.session_wait)
    conversations = Conversations(assistant, store, ComputeSlots(compute_slots),
                                  prose_queue_limit=prose_queue_limit,
                                  recommend_batch=settings.recommend_batch)
    admission = Admission(settings.max_inflight, settings.max_inflight_per_key)
    readiness = Readiness(conversations, admission)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if prepare:
            await run_in_threadpool(readiness.prepare)
        yield

    about = {"title": "recagent shopping assistant", "version": API_VERSION, "lifespan": lifespan,
             "summary": "Sessions, messages (JSON or server-sent events), feedback, items and "
                        "recommendations, each with its evidence and tool trace."}
    app = (FastAPIOffline(**about) if settings.docs
           else FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about))
    app.state.conversations = conversations
    app.state.readiness = readiness
    app.state.admission = admission
    app.state.auth = keys is not None
    app.dependency_overrides[get_conversations] = lambda: conversations
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(Guard, keys=keys, rate_limit=settings.rate_limit, admission=admission)
    app.add_middleware(RequestContext, allowed_hosts=settings.allowed_hosts)

    @app.get("/healthz", response_model=HealthOut, tags=["health"], summary="The process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyOut, tags=["health"],
             responses={503: {"model": ReadyOut}},
             summary="Models loaded, index complete, database reachable (503 until then)")
    def readyz() -> JSONResponse:
        checks = readiness.checks()
        ok = readiness.ready(checks)
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    page = files("recagent.server").joinpath("static/index.html").read_text(encoding="utf-8")
    page_policy = _page_policy(page)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": page_policy})

    return app


def _page_policy(page: str) -> str:
    """A Content-Security-Policy that allows exactly the page's own inline script and style
    (by their SHA-256), its API calls to this origin, and nothing else."""
    def digests(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()
                        + "'" for b in bodies)

    return (f"default-src 'none'; script-src {digests('script')}; style-src {digests('style')}; "
            "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def one_blas_thread() -> None:
    """Limit numpy's BLAS (OpenBLAS) to one thread in this server process.

    A request's model pass is small (a batch of histories times a few thousand items), and
    concurrent requests are already served by their own threads; a BLAS pool of one thread
    per core then only spins against them. On the 2-core machine, /v1/recommend at 32
    sessions went from 154 to 200 requests/s with this (docs/benchmarks.md). torch (the LLM)
    keeps its own threads.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory`` worker processes: settings from ``RECAGENT_*``."""
    import os

    from recagent.server.logs import configure_logging

    configure_logging()
    one_blas_thread()
    slots = int(os.environ.get("RECAGENT_COMPUTE_SLOTS") or 1)
    limit = int(os.environ.get("RECAGENT_PROSE_QUEUE_LIMIT") or 2)
    return create_app(Settings.from_env(), compute_slots=slots,
                      prose_queue_limit=limit if limit > 0 else None)
