"""Issue 14, probe 1 with real processes: ``recagent serve`` killed (SIGKILL) during a feedback
burst while it holds a session lease, then restarted on the same database. Runs the benchmark's
abuse level (recagent.evals.bench_abuse: a burst on one session, a rate-limit flood, oversize
chunked bodies, the crash and the restart), smaller, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest
from pg_support import postgres_url
from serve_support import start_server

from recagent.evals.bench_abuse import AbuseConfig, run_abuse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("crash-home")


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_probe_1_a_crash_mid_burst_loses_no_acknowledged_write_and_the_restart_serves_at_once(
        database, home, tiny_shop, tiny_shop_dir, tmp_path):
    db_url = postgres_url() if database == "postgres" else f"sqlite:///{tmp_path / 'sessions.db'}"

    def start(url, log, env):
        server = start_server(home, url, log, data=tiny_shop_dir, env=env)
        return server.proc, server.url

    users = [u for u in tiny_shop.histories][:3]
    seen = {x.item_id for u in users for x in tiny_shop.histories[u]}
    items = [i for i in tiny_shop.items if i not in seen][:40]
    config = AbuseConfig(burst_clients=16, burst_seconds=2.0, crash_after_s=1.5,
                         oversize_bodies=2, oversize_mb=50, request_timeout=10.0)
    report = run_abuse(start, db_url, tmp_path, items, users, config)
    assert report["violations"] == [], report
    assert report["crash"]["leases_held_at_kill"] >= 1, "the kill happened while a lease was held"
    assert report["crash"]["burst"]["statuses"].get("201", 0) > 0
    assert report["writes"]["acknowledged"] > 0 and report["writes"]["lost"] == 0
    busy = report["burst"]["on_one_session"]["statuses"]
    assert set(busy) <= {"201", "409", "503"}, busy
    for body in report["oversize"]["bodies"]:
        # bytes_sent counts what the kernel's socket buffers took too, not only what was read
        assert body["status"] == 413 and body["bytes_sent"] < 16 << 20
