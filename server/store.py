"""Sessions and their events in a SQL database (SQLAlchemy 2.x; SQLite by default, any URL).

Two tables: ``sessions`` (the whole :class:`~recagent.agent.session.Session` as JSON, with a
version and a lease) and ``events`` (every turn and every piece of feedback, append-only).
A change is written in one transaction: the new state and its events together.

One request per session at a time, across threads and processes: :meth:`SessionStore.hold`
takes an in-process lock, then a lease on the session's row (an atomic ``UPDATE ... WHERE
lease IS NULL OR lease_until < now``), so two servers on the same database serialise too.
A lease that its holder never released (a killed process) expires after ``lease_seconds``.
"""

from __future__ import annotations

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
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine

from recagent.agent.session import Session
from recagent.catalog.errors import RecAgentError

__all__ = ["Event", "HeldSession", "SessionBusy", "SessionNotFound", "SessionStore"]

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
    """Another request held the session for longer than a caller may wait."""


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


class SessionStore:
    def __init__(self, url: str, *, lease_seconds: float = 600.0, wait_seconds: float = 600.0):
        self.url = url
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.engine = _engine(url)
        metadata.create_all(self.engine)
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def create(self, dataset: str, session: Session) -> str:
        session_id = uuid.uuid4().hex
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert(sessions).values(
                id=session_id, dataset=dataset, user_id=session.user_id, state=session.to_dict(),
                version=0, created_at=now, updated_at=now,
            ))
        return session_id

    def load(self, session_id: str) -> StoredSession:
        with self.engine.connect() as conn:
            row = conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
        if row is None:
            raise SessionNotFound(f"unknown session {session_id!r}")
        return StoredSession(row.id, row.dataset, Session.from_dict(row.state), row.version)

    @contextmanager
    def hold(self, session_id: str) -> Iterator[HeldSession]:
        """The session, for this caller alone until the block ends; ``save`` writes it."""
        with self._guard:
            lock = self._locks.get(session_id)
            if lock is None:
                lock = self._locks[session_id] = threading.Lock()
        if not lock.acquire(timeout=self.wait_seconds):
            raise SessionBusy(f"session {session_id!r} is busy with another request")
        try:
            token = self._lease(session_id)
            try:
                yield HeldSession(self, self.load(session_id), token)
            finally:
                with self.engine.begin() as conn:
                    conn.execute(update(sessions).where(sessions.c.id == session_id,
                                                        sessions.c.lease == token)
                                 .values(lease=None, lease_until=None))
        finally:
            lock.release()

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
                    .values(lease=token, lease_until=now + self.lease_seconds)
                ).rowcount
            if taken == 1:
                return token
            self.load(session_id)  # SessionNotFound when it does not exist at all
            if time.monotonic() > deadline:
                raise SessionBusy(f"session {session_id!r} is busy in another process")
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
