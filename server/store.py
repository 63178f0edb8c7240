"""Sessions and their events in a SQL database (SQLAlchemy 2.x; SQLite by default, any URL).

Two tables: ``sessions`` (the whole :class:`~recagent.agent.session.Session` as JSON, with a
version and a lease) and ``events`` (every turn and every piece of feedback, append-only).
A change is written in one transaction: the new state and its events together.

One request per session at a time, across threads and processes: :meth:`SessionStore.hold`
takes an in-process lock, then a lease on the session's row (an atomic ``UPDATE ... WHERE
lease IS NULL OR lease_until < now``), so two servers on the same database serialise too.
A caller waits at most ``wait_seconds`` (default 2 s) for a busy session, then gets
:class:`SessionBusy` (HTTP 409 with Retry-After): requests never pile up behind a long turn.

Leases are short (``lease_seconds``, default 30 s) and renewed by one background thread while
their block runs, so a slow turn keeps its session and a killed process loses it within
``lease_seconds``. Each lease names its holder (host, pid, process instance): a new store
reclaims at once the leases of dead processes on its own host (:meth:`reclaim_dead_leases`),
so a restart after ``kill -9`` serves the crashed sessions immediately.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine

from recagent.agent.session import Session
from recagent.catalog.errors import RecAgentError

__all__ = ["Event", "HeldSession", "SessionBusy", "SessionNotFound", "SessionStore", "holder_id"]

_log = logging.getLogger("recagent.http")
_INSTANCE = uuid.uuid4().hex[:12]  # this process's identity, with its pid (pids get reused)


def holder_id() -> str:
    """``host/pid/instance``: who holds a lease, so a restart can tell a dead holder."""
    return f"{socket.gethostname()}/{os.getpid()}/{_INSTANCE}"

metadata = MetaData()

sessions = Table(
    "sessions", metadata,
    Column("id", String(36), primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("user_id", String(200), nullable=True),
    Column("state", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("lease", String(36), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("holder", String(200), nullable=True),  # holder_id() of the lease's process
    Column("owner", String(200), nullable=True),  # the API principal that created it
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(36), ForeignKey("sessions.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # "turn" | "feedback"
    Column("item_id", String(200), nullable=True),
    Column("feedback", String(16), nullable=True),
    Column("message", Text, nullable=True),
    Column("payload", JSON, nullable=True),  # a turn's answer
    Column("request_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
)


class SessionNotFound(RecAgentError):
    """No session with that id (or it belongs to another dataset)."""


class SessionBusy(RecAgentError):
    """Another request holds the session; retry after ``retry_after`` seconds."""

    retry_after = 1


@dataclass(frozen=True)
class Event:
    kind: str
    item_id: str | None = None
    feedback: str | None = None
    message: str | None = None
    payload: dict[str, Any] | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class StoredSession:
    id: str
    dataset: str
    session: Session
    version: int
    owner: str | None = None


class SessionStore:
    """``reclaim``: release the leases of dead processes on this host now (start-up)."""

    def __init__(self, url: str, *, lease_seconds: float = 30.0, wait_seconds: float = 2.0,
                 reclaim: bool = True):
        if lease_seconds <= 0 or wait_seconds < 0:
            raise ValueError("lease_seconds must be > 0 and wait_seconds >= 0")
        self.url = url
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.holder = holder_id()
        self.engine = _engine(url)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()
        self._held: dict[str, str] = {}  # lease token -> session id, renewed while held
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()
        self.reclaimed = self.reclaim_dead_leases() if reclaim else []

    def close(self) -> None:
        """Stop renewing leases (a process that stops; tests use it to play a dead one)."""
        self._closed.set()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create(self, dataset: str, session: Session, owner: str | None = None) -> str:
        session_id = uuid.uuid4().hex
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert(sessions).values(
                id=session_id, dataset=dataset, user_id=session.user_id, state=session.to_dict(),
                version=0, owner=owner, created_at=now, updated_at=now,
            ))
        return session_id

    def owner(self, session_id: str) -> str | None:
        """Who created the session (None: created without auth); SessionNotFound if none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions.c.owner).where(sessions.c.id == session_id)).first()
        if row is None:
            raise SessionNotFound(f"unknown session {session_id!r}")
        return row.owner

    def busy(self, session_id: str) -> bool:
        """Whether a request holds the session now (a hint: it may change at once)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions.c.lease, sessions.c.lease_until)
                               .where(sessions.c.id == session_id)).first()
        return row is not None and row.lease is not None and (row.lease_until or 0) > time.time()

    def reclaim_dead_leases(self) -> list[str]:
        """Release the leases whose holder is a dead process on this host (or a lease from a
        version that did not record its holder); returns the sessions released. Leases held
        on other hosts are left to expire (``lease_seconds``)."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(sessions.c.id, sessions.c.lease, sessions.c.holder)
                                .where(sessions.c.lease.is_not(None))).all()
            dead = [r for r in rows if r.holder is None or _holder_dead(r.holder)]
            for r in dead:
                conn.execute(update(sessions).where(sessions.c.id == r.id, sessions.c.lease == r.lease)
                             .values(lease=None, lease_until=None, holder=None))
        if dead:
            _log.warning("reclaimed leases of dead processes",
                         extra={"fields": {"sessions": len(dead)}})
        return [r.id for r in dead]

    def load(self, session_id: str) -> StoredSession:
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
        if row is None:
            raise SessionNotFound(f"unknown session {session_id!r}")
        return StoredSession(row.id, row.dataset, Session.from_dict(row.state), row.version,
                             row.owner)

    @contextmanager
    def hold(self, session_id: str) -> Iterator[HeldSession]:
        """The session, for this caller alone until the block ends; ``save`` writes it."""
        with self._guard:
            lock = self._locks.get(session_id)
            if lock is None:
                lock = self._locks[session_id] = threading.Lock()
        if not lock.acquire(timeout=self.wait_seconds):
            raise SessionBusy(f"session {session_id!r} is busy with another request; retry")
        try:
            token = self._lease(session_id)
            self._renew(token, session_id)
            try:
                yield HeldSession(self, self.load(session_id), token)
            finally:
                with self._guard:
                    self._held.pop(token, None)
                with self.engine.begin() as conn:
                    conn.execute(update(sessions).where(sessions.c.id == session_id,
                                                        sessions.c.lease == token)
                                 .values(lease=None, lease_until=None, holder=None))
        finally:
            lock.release()

    def _renew(self, token: str, session_id: str) -> None:
        """Keep ``token``'s lease alive until its block ends: one thread renews them all, and
        ends when no lease is held (the next hold starts it again)."""
        with self._guard:
            self._held[token] = session_id
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                                 name="lease-renewer")
                self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._closed.wait(self.lease_seconds / 3):
            with self._guard:
                tokens = list(self._held)
                if not tokens:
                    self._renewer = None
                    return
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(sessions).where(sessions.c.lease.in_(tokens))
                                 .values(lease_until=time.time() + self.lease_seconds))
            except Exception:  # noqa: BLE001 - retried next round; the lease may lapse
                _log.exception("lease renewal failed")

    def _lease(self, session_id: str) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_seconds
        pause = 0.01
        while True:
            now = time.time()
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id,
                           (sessions.c.lease.is_(None)) | (sessions.c.lease_until < now))
                    .values(lease=token, lease_until=now + self.lease_seconds,
                            holder=self.holder)
                ).rowcount
            if taken == 1:
                return token
            self.load(session_id)  # SessionNotFound when it does not exist at all
            if time.monotonic() > deadline:
                raise SessionBusy(f"session {session_id!r} is busy in another process; retry")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def events(self, session_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        query = select(events).order_by(events.c.id)
        if session_id is not None:
            query = query.where(events.c.session_id == session_id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count_events(self, kind: str, session_ids: list[str] | None = None) -> int:
        query = select(func.count()).select_from(events).where(events.c.kind == kind)
        if session_ids is not None:
            query = query.where(events.c.session_id.in_(session_ids))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


class HeldSession:
    """A session leased to one request: read ``stored.session``, then :meth:`save` it."""

    def __init__(self, store: SessionStore, stored: StoredSession, token: str) -> None:
        self.store = store
        self.stored = stored
        self.token = token

    @property
    def session(self) -> Session:
        return self.stored.session

    def save(self, session: Session, *new_events: Event) -> list[int]:
        """Write the new state and its events in one transaction; returns the events' ids."""
        now = time.time()
        sid = self.stored.id
        with self.store.engine.begin() as conn:
            changed = conn.execute(
                update(sessions).where(sessions.c.id == sid, sessions.c.lease == self.token)
                .values(state=session.to_dict(), version=sessions.c.version + 1, updated_at=now,
                        lease_until=now + self.store.lease_seconds)
            ).rowcount
            if changed != 1:  # the lease expired and someone else took the session
                raise SessionBusy(f"session {sid!r} was taken over by another request; retry")
            ids = []
            for e in new_events:
                result = conn.execute(insert(events).values(
                    session_id=sid, kind=e.kind, item_id=e.item_id, feedback=e.feedback,
                    message=e.message, payload=e.payload, request_id=e.request_id, created_at=now,
                ))
                ids.append(int(result.inserted_primary_key[0]))
        return ids


def _holder_dead(holder: str) -> bool:
    """Whether the process that wrote ``holder`` (``host/pid/instance``) is gone. Only this
    host's processes can be checked; a pid in use by this process but with another instance
    is a predecessor whose pid was reused (pid 1 in a restarted container)."""
    try:
        host, pid_text, instance = holder.split("/")
        pid = int(pid_text)
    except ValueError:
        return True  # not written by this code
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return instance != _INSTANCE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _add_missing_columns(engine: Engine) -> None:
    """Databases made by an earlier version lack ``holder`` and ``owner``: add them."""
    have = {c["name"] for c in inspect(engine).get_columns("sessions")}
    for column in ("holder", "owner"):
        if column in have:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE sessions ADD COLUMN {column} VARCHAR(200)"))
        except Exception:  # another process added it first
            if column not in {c["name"] for c in inspect(engine).get_columns("sessions")}:
                raise


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and url not in ("sqlite://", "sqlite:///:memory:"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # WAL: readers never block the writer
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine
