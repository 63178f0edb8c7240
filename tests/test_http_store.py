"""The session store (SQLAlchemy) and the compute slots, without HTTP. The store tests run on
SQLite and on a real PostgreSQL (``pg_support``: skipped with the reason when none is up)."""

from __future__ import annotations

import threading
import time

import pytest
from pg_support import postgres_url

from recagent.agent.session import Session
from recagent.catalog.model import Interaction
from recagent.server.slots import ComputeSlots
from recagent.server.store import Event, SessionBusy, SessionNotFound, SessionStore
from recagent.tools.filter_items import Constraints


def _session() -> Session:
    s = Session("u1", history=[Interaction("u1", "A", 1.0, rating=4.0, event="purchase")])
    s = s.answered(Constraints(max_price=30.0, brands=("Pacer",), query="shoes"), ["B", "C"])
    s.feedback("B", "like", timestamp=5.0)
    s.feedback("C", "dislike")
    s.turns = 2
    return s


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "postgres":
        return postgres_url()
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_a_session_round_trips_exactly():
    s = _session()
    assert Session.from_dict(s.to_dict()) == s


def test_state_and_events_survive_a_new_store_on_the_same_file(url):
    first = SessionStore(url)
    sid = first.create("shop", _session())
    with first.hold(sid) as held:
        s = held.session
        s.feedback("D", "purchase", timestamp=9.0)
        ids = held.save(s, Event("feedback", item_id="D", feedback="purchase", request_id="r1"))
    second = SessionStore(url)
    stored = second.load(sid)
    assert stored.session == s and stored.version == 1 and stored.dataset == "shop"
    assert [(e["id"], e["item_id"], e["request_id"]) for e in second.events(sid)] == [(ids[0], "D", "r1")]
    with pytest.raises(SessionNotFound):
        second.load("nope")


def test_two_stores_on_one_database_serialise_a_session(url):
    """Two store objects stand for two processes: the DB lease, not a thread lock, orders them."""
    a, b = SessionStore(url), SessionStore(url)
    sid = a.create("shop", Session("u1"))
    order: list[str] = []
    entered = threading.Event()

    def slow_writer():
        with a.hold(sid) as held:
            entered.set()
            order.append("a-in")
            time.sleep(0.4)
            s = held.session
            s.feedback("X", "click", timestamp=1.0)
            held.save(s, Event("feedback", item_id="X", feedback="click"))
            order.append("a-out")

    t = threading.Thread(target=slow_writer)
    t.start()
    entered.wait(5)
    with b.hold(sid) as held:
        order.append("b-in")
        assert [x.item_id for x in held.session.history] == ["X"], "b sees a's committed write"
        s = held.session
        s.feedback("Y", "click", timestamp=2.0)
        held.save(s, Event("feedback", item_id="Y", feedback="click"))
    t.join()
    assert order == ["a-in", "a-out", "b-in"]
    assert [x.item_id for x in a.load(sid).session.history] == ["X", "Y"]
    assert a.count_events("feedback", [sid]) == 2


def test_a_lease_left_by_a_dead_process_expires_and_its_late_write_is_refused(url):
    # A lease of 2 s: long enough that a loaded CI machine still finds it held, short enough
    # to wait out (0.3 s expired before the second store asked, under load).
    dead = SessionStore(url, lease_seconds=2.0)
    sid = dead.create("shop", Session("u1"))
    zombie = dead.hold(sid)
    held = zombie.__enter__()  # never released: the process "died" holding it
    dead.close()  # ... and stopped renewing its lease
    waiting = SessionStore(url, lease_seconds=2.0, wait_seconds=0.1)
    with pytest.raises(SessionBusy), waiting.hold(sid):
        pass
    time.sleep(2.1)
    with SessionStore(url).hold(sid) as fresh:
        fresh.save(fresh.session, Event("turn", message="after expiry"))
    with pytest.raises(SessionBusy, match="taken over"):
        held.save(held.session, Event("turn", message="too late"))
    assert [e["message"] for e in dead.events(sid)] == ["after expiry"]


def _lease_of_a_dead_process(url: str, sid: str) -> None:
    """Write the lease a process killed mid-request leaves: a holder whose pid has exited."""
    import subprocess
    import sys

    from sqlalchemy import create_engine, update

    from recagent.server.store import holder_id, sessions

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host, _, _ = holder_id().split("/")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(update(sessions).where(sessions.c.id == sid).values(
            lease="x" * 32, lease_until=time.time() + 600, holder=f"{host}/{child.pid}/dead0000"))
    engine.dispose()


def test_a_restart_reclaims_the_leases_of_a_killed_process_at_once(url):
    """Probe 1 (issue 14): after kill -9 a session kept its 600 s lease and the restarted
    server left requests on it waiting; now the new store releases it at start-up."""
    first = SessionStore(url)
    dead_sid, live_sid = first.create("shop", Session("u1")), first.create("shop", Session("u2"))
    _lease_of_a_dead_process(url, dead_sid)
    with first.hold(live_sid):  # a live holder in this process keeps its session
        restarted = SessionStore(url, wait_seconds=0)
        assert restarted.reclaimed == [dead_sid]
        started = time.monotonic()
        with restarted.hold(dead_sid) as held:
            held.save(held.session, Event("feedback", item_id="A", feedback="click"))
        assert time.monotonic() - started < 1
        with pytest.raises(SessionBusy), restarted.hold(live_sid):
            pass


def test_a_busy_session_answers_within_the_wait_and_a_long_hold_keeps_its_lease(url):
    """Probe 1's other half: a slow turn (longer than the lease) keeps its session, renewed,
    and a second caller gets SessionBusy after ``wait_seconds``, not after the turn."""
    slow = SessionStore(url, lease_seconds=0.4)
    sid = slow.create("shop", Session("u1"))
    other = SessionStore(url, lease_seconds=0.4, wait_seconds=0.2)
    inside = threading.Event()
    release = threading.Event()

    def long_turn():
        with slow.hold(sid) as held:
            inside.set()
            release.wait(5)
            held.save(held.session, Event("turn", message="slow"))

    t = threading.Thread(target=long_turn)
    t.start()
    inside.wait(5)
    try:
        for _ in range(3):  # 1.5 s in all: well past the 0.4 s lease
            started = time.monotonic()
            with pytest.raises(SessionBusy, match="retry"), other.hold(sid):
                pass
            assert time.monotonic() - started < 1.0
            time.sleep(0.3)
    finally:
        release.set()
        t.join()
    assert [e["message"] for e in other.events(sid)] == ["slow"], "the slow turn's write kept"
    slow.close()


def test_sessions_record_their_owner_and_old_databases_gain_the_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the sessions table as the previous version made it
        conn.execute("CREATE TABLE sessions (id VARCHAR(36) PRIMARY KEY, dataset VARCHAR(200) "
                     "NOT NULL, user_id VARCHAR(200), state JSON NOT NULL, version INTEGER NOT "
                     "NULL, lease VARCHAR(36), lease_until FLOAT, created_at FLOAT NOT NULL, "
                     "updated_at FLOAT NOT NULL)")
        conn.execute("INSERT INTO sessions VALUES ('old', 'shop', 'u1', '{\"user_id\": \"u1\"}', "
                     "0, 'tok', 9e99, 0, 0)")
    store = SessionStore(f"sqlite:///{db}")
    assert store.reclaimed == ["old"], "a lease without a holder came from an older server"
    assert store.owner("old") is None
    sid = store.create("shop", Session("u2"), owner="shop-web")
    assert store.owner(sid) == "shop-web" and store.load(sid).owner == "shop-web"
    with pytest.raises(SessionNotFound):
        store.owner("nope")


def test_compute_slots_serve_in_arrival_order():
    slots = ComputeSlots(1)
    order: list[int] = []
    waits: list[int] = []
    gate = threading.Event()

    def first():
        with slots.acquire():
            gate.set()
            time.sleep(0.3)
            order.append(0)

    def later(n):
        with slots.acquire(on_wait=waits.append):
            order.append(n)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    gate.wait(5)
    for n in range(1, 6):
        threads.append(threading.Thread(target=later, args=(n,)))
        threads[-1].start()
        time.sleep(0.02)  # arrive in order 1..5
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4, 5]
    assert waits == [1, 2, 3, 4, 5], "each caller was told how many go first"
    assert slots.waiting == 0
