"""The session store (SQLAlchemy) and the compute slots, without HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from recagent.agent.session import Session
from recagent.catalog.model import Interaction
from recagent.server.slots import ComputeSlots
from recagent.server.store import Event, SessionBusy, SessionNotFound, SessionStore
from recagent.tools.filter_items import Constraints


def _session() -> Session:
    s = Session("u1", history=[Interaction("u1", "A", 1.0, rating=4.0, event="purchase")])
    s.constraints = Constraints(max_price=30.0, brands=("Pacer",), query="shoes")
    s.record_shown(["B", "C"])
    s.feedback("B", "like", timestamp=5.0)
    s.feedback("C", "dislike")
    s.turns = 2
    return s


def test_a_session_round_trips_exactly():
    s = _session()
    assert Session.from_dict(s.to_dict()) == s


def test_state_and_events_survive_a_new_store_on_the_same_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
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


def test_two_stores_on_one_database_serialise_a_session(tmp_path):
    """Two store objects stand for two processes: the DB lease, not a thread lock, orders them."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
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


def test_a_lease_left_by_a_dead_process_expires_and_its_late_write_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    dead = SessionStore(url, lease_seconds=0.3)
    sid = dead.create("shop", Session("u1"))
    zombie = dead.hold(sid)
    held = zombie.__enter__()  # never released: the process "died" holding it
    waiting = SessionStore(url, lease_seconds=0.3, wait_seconds=0.1)
    with pytest.raises(SessionBusy), waiting.hold(sid):
        pass
    time.sleep(0.35)
    with SessionStore(url).hold(sid) as fresh:
        fresh.save(fresh.session, Event("turn", message="after expiry"))
    with pytest.raises(SessionBusy, match="taken over"):
        held.save(held.session, Event("turn", message="too late"))
    assert [e["message"] for e in dead.events(sid)] == ["after expiry"]


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
