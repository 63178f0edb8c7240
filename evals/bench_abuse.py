"""The load benchmark's "abuse" level: a hostile but fair client against ``recagent serve`` on
loopback, with a crash and a restart in the middle.

Phases, each bounded in count and time, against a server with API keys on:

1. **burst**: ``burst_clients`` threads send feedback on ONE session as fast as they can while
   a bystander key uses its own session; the server answers 201, 409 (session busy) or 503
   (too many in flight), each at once, and the bystander is served throughout.
2. **flood**: a key with a low rate limit sends requests until it gets 429 with Retry-After.
3. **oversize**: chunked bodies of up to ``oversize_mb`` MB each (no Content-Length) on a raw
   socket; the server answers 413 after reading at most its limit (bytes sent and time are
   measured) and its memory does not grow.
4. **crash**: a feedback burst on two sessions; the server is stopped (SIGSTOP) while one of
   them holds a session lease, then killed (SIGKILL: no clean-up); a new server starts on the
   same database. Requests on the crashed sessions must be answered at once (the dead
   process's leases are reclaimed at start-up), and every write the dead server acknowledged
   (201 with an event id) must be in the database.

Every client request has a timeout (``request_timeout``); a request that reaches it counts as
a violation. Used by ``bench_http --levels ...,abuse`` and by the integration test
tests/test_http_crash.py.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func
from sqlalchemy import select as sql_select

from recagent.server.access import hash_key, new_key
from recagent.server.store import SessionStore, sessions

__all__ = ["AbuseConfig", "keys_file", "run_abuse"]

# start(db_url, log_path, extra_env) -> (process, base_url), once /readyz says ready.
StartServer = Callable[[str, Path, dict[str, str]], tuple[Any, str]]


@dataclass
class AbuseConfig:
    burst_clients: int = 24
    burst_seconds: float = 4.0
    crash_after_s: float = 1.5
    oversize_bodies: int = 3
    oversize_mb: int = 300
    request_timeout: float = 10.0
    max_inflight: int = 8


@dataclass
class _Tally:
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    timeouts: int = 0
    acked: list[int] = field(default_factory=list)  # feedback event ids answered 201
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | str, seconds: float, event_id: int | None = None) -> None:
        with self.lock:
            self.statuses[str(status)] += 1
            self.latencies.append(seconds)
            if event_id is not None:
                self.acked.append(event_id)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {"requests": len(lat), "statuses": dict(self.statuses), "timeouts": self.timeouts,
                "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                "max_ms": round(lat[-1] * 1000, 1) if lat else None}


def keys_file(path: Path) -> dict[str, str]:
    """Write the abuse level's keys file; returns the keys by role."""
    keys = {"burst": new_key(), "bystander": new_key(), "limited": new_key()}
    limits = {"burst": "1000000/minute", "bystander": "1000000/minute", "limited": "20/minute"}
    path.write_text("\n".join(
        f'[[keys]]\nname = "{role}"\nsha256 = "{hash_key(key)}"\nusers = "*"\n'
        f'rate_limit = "{limits[role]}"\n' for role, key in keys.items()))
    return keys


def _feedback(client: httpx.Client, sid: str, item: str, tally: _Tally, stop: threading.Event,
              timeout: float) -> None:
    started = time.perf_counter()
    try:
        r = client.post(f"/v1/sessions/{sid}/feedback", json={"item_id": item, "kind": "click"},
                        timeout=timeout)
    except httpx.TimeoutException:
        with tally.lock:
            tally.timeouts += 1
        return
    except httpx.TransportError:  # the server died under us: not acknowledged
        tally.record("conn_error", time.perf_counter() - started)
        stop.set()
        return
    event_id = r.json().get("event_id") if r.status_code == 201 else None
    tally.record(r.status_code, time.perf_counter() - started, event_id)


def _burst(client: httpx.Client, sids: list[str], items: list[str], clients: int,
           stop: threading.Event, tally: _Tally, timeout: float) -> list[threading.Thread]:
    """``clients`` threads sending feedback on ``sids`` until ``stop``; returns once all are
    ready to send, so the caller's clock measures the burst itself."""
    ready = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        ready.wait()
        i = n
        while not stop.is_set():
            _feedback(client, sids[i % len(sids)], items[i % len(items)], tally, stop, timeout)
            i += clients
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    return threads


def _client(url: str, key: str, connections: int) -> httpx.Client:
    """One client shared by a phase's threads (httpx.Client is thread-safe; making one per
    thread costs more than a request on a loaded machine)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(base_url=url, headers={"X-API-Key": key}, limits=limits)


def _bystander(client: httpx.Client, sid: str, item: str, stop: threading.Event, tally: _Tally,
               timeout: float) -> threading.Thread:
    """Another user's reads and writes on its own session, every 50 ms, until ``stop``."""
    def worker() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                r = client.get(f"/v1/sessions/{sid}", timeout=timeout)
                tally.record(r.status_code, time.perf_counter() - started)
                _feedback(client, sid, item, tally, threading.Event(), timeout)
            except httpx.TimeoutException:
                with tally.lock:
                    tally.timeouts += 1
            except httpx.TransportError:
                tally.record("conn_error", time.perf_counter() - started)
            time.sleep(0.05)
    t = threading.Thread(target=worker, daemon=True)
    t.start()
    return t


def _chunked_post(url: str, path: str, key: str, megabytes: int, timeout: float) -> dict[str, Any]:
    """POST a chunked body of up to ``megabytes`` MB; stops sending once the server answers.
    Returns the status, the bytes sent and the seconds to the answer."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"[" + b"1," * (32 * 1024) + b"1]"
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {key}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        try:
            while sent < megabytes << 20:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered
                sock.sendall(frame)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection after answering
        sock.settimeout(timeout)
        head = b""
        try:
            while b"\r\n" not in head:
                part = sock.recv(4096)
                if not part:
                    break
                head += part
        except OSError:
            pass
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
    return {"status": status, "bytes_sent": sent, "seconds": round(time.perf_counter() - started, 3)}


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _leases_held(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sql_select(func.count()).select_from(sessions)
                                    .where(sessions.c.lease.is_not(None))).scalar_one())
    finally:
        engine.dispose()


def run_abuse(start: StartServer, db_url: str, workdir: Path, items: list[str], users: list[str],
              config: AbuseConfig | None = None) -> dict[str, Any]:
    """The four phases; returns their figures (see the module docstring) and ``violations``:
    what broke a promise (lost acknowledged writes, timeouts, a bystander not served, a slow
    answer after the restart). An empty list is a pass."""
    cfg = config or AbuseConfig()
    keys = keys_file(workdir / "keys.toml")
    env = {"RECAGENT_API_KEYS_FILE": str(workdir / "keys.toml"),
           "RECAGENT_MAX_INFLIGHT": str(cfg.max_inflight)}
    report: dict[str, Any] = {"config": cfg.__dict__.copy()}
    violations: list[str] = []
    started = time.monotonic()
    proc, url = start(db_url, workdir / "server-a.log", env)
    report["ready_a_s"] = round(time.monotonic() - started, 1)
    t_out = cfg.request_timeout

    def session(role: str, user: str) -> str:
        r = httpx.post(f"{url}/v1/sessions", json={"user_id": user}, headers={"X-API-Key": keys[role]},
                       timeout=t_out)
        r.raise_for_status()
        return r.json()["session_id"]

    target, other_target = session("burst", users[0]), session("burst", users[1])
    mine = session("bystander", users[2])
    try:
        # 1. burst on one session, a bystander alongside
        stop, tally, side = threading.Event(), _Tally(), _Tally()
        burst_client = _client(url, keys["burst"], cfg.burst_clients + 2)
        side_client = _client(url, keys["bystander"], 2)
        by = _bystander(side_client, mine, items[0], stop, side, t_out)
        threads = _burst(burst_client, [target], items, cfg.burst_clients, stop, tally, t_out)
        time.sleep(cfg.burst_seconds)
        stop.set()
        for t in [*threads, by]:
            t.join(t_out + 5)
        side_client.close()
        report["burst"] = {"on_one_session": tally.summary(), "bystander": side.summary()}
        acked = list(tally.acked) + list(side.acked)

        # 2. flood from a key with a low rate limit
        flood = Counter()
        retry_after = None
        with httpx.Client(base_url=url, headers={"X-API-Key": keys["limited"]}) as client:
            for _ in range(40):
                r = client.get(f"/v1/items/{items[0]}", timeout=t_out)
                flood[str(r.status_code)] += 1
                if r.status_code == 429:
                    retry_after = r.headers.get("retry-after")
        report["flood"] = {"statuses": dict(flood), "retry_after_s": retry_after}
        if "429" not in flood or retry_after is None:
            violations.append("the rate-limited key was never answered 429 with Retry-After")

        # 3. oversize chunked bodies
        rss_before = _rss_mb(proc.pid)
        bodies = [_chunked_post(url, f"/v1/sessions/{target}/feedback", keys["burst"],
                                cfg.oversize_mb, t_out) for _ in range(cfg.oversize_bodies)]
        report["oversize"] = {"bodies": bodies, "rss_mb_before": rss_before,
                              "rss_mb_after": _rss_mb(proc.pid)}
        if any(b["status"] != 413 for b in bodies):
            violations.append(f"an oversize chunked body was not answered 413: {bodies}")
        if any(b["bytes_sent"] >= cfg.oversize_mb << 20 for b in bodies):
            violations.append("an oversize body was read to its end")

        # 4. crash mid-burst: SIGSTOP while a lease is held, SIGKILL, restart
        stop, tally = threading.Event(), _Tally()
        threads = _burst(burst_client, [target, other_target], items, cfg.burst_clients // 2,
                         stop, tally, t_out)
        time.sleep(cfg.crash_after_s)
        patience = time.monotonic() + t_out
        while len(tally.acked) < 3 and time.monotonic() < patience:  # mid-burst: writes acked
            time.sleep(0.05)
        held, tries = 0, 0
        while tries < 50:
            os.kill(proc.pid, signal.SIGSTOP)
            held = _leases_held(db_url)
            if held:
                break
            os.kill(proc.pid, signal.SIGCONT)
            tries += 1
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        killed_at = time.monotonic()
        stop.set()
        for t in threads:
            t.join(t_out + 5)
        acked += tally.acked
        burst_client.close()
        report["crash"] = {"burst": tally.summary(), "leases_held_at_kill": held}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    restart = time.monotonic()
    proc_b, url = start(db_url, workdir / "server-b.log", env)
    try:
        report["crash"]["restart_ready_s"] = round(time.monotonic() - restart, 1)
        after: dict[str, Any] = {}
        with httpx.Client(base_url=url, headers={"X-API-Key": keys["burst"]}) as client:
            for name, sid in (("crashed_session_1", target), ("crashed_session_2", other_target)):
                t0 = time.perf_counter()
                r = client.post(f"/v1/sessions/{sid}/feedback", json={"item_id": items[1], "kind": "click"},
                                timeout=t_out)
                after[name] = {"status": r.status_code, "ms": round((time.perf_counter() - t0) * 1000, 1)}
                if r.status_code == 201:
                    acked.append(r.json()["event_id"])
        t0 = time.perf_counter()
        by = httpx.get(f"{url}/v1/sessions/{mine}", headers={"X-API-Key": keys["bystander"]}, timeout=t_out)
        after["bystander"] = {"status": by.status_code, "ms": round((time.perf_counter() - t0) * 1000, 1)}
        after["readyz"] = httpx.get(f"{url}/readyz", timeout=t_out).status_code
        report["crash"]["after_restart"] = after
        report["crash"]["seconds_from_kill_to_served"] = round(time.monotonic() - killed_at, 1)
    finally:
        proc_b.terminate()
        try:
            proc_b.wait(30)
        except Exception:  # noqa: BLE001 - it is stopped either way
            proc_b.kill()

    store = SessionStore(db_url, reclaim=False)
    stored = {e["id"] for e in store.events(kind="feedback")}
    store.engine.dispose()
    lost = sorted(set(acked) - stored)
    report["writes"] = {"acknowledged": len(acked), "stored_feedback_rows": len(stored), "lost": len(lost)}
    if lost:
        violations.append(f"{len(lost)} acknowledged writes lost: {lost[:10]}")
    timeouts = (report["burst"]["on_one_session"]["timeouts"] + report["burst"]["bystander"]["timeouts"]
                + report["crash"]["burst"]["timeouts"])
    if timeouts:
        violations.append(f"{timeouts} requests reached their {t_out:g} s timeout")
    side = report["burst"]["bystander"]["statuses"]
    if set(side) - {"200", "201"} or not side:
        violations.append(f"the bystander was not served throughout: {side}")
    for name in ("crashed_session_1", "crashed_session_2", "bystander"):
        got = report["crash"]["after_restart"][name]
        if got["status"] not in (200, 201) or got["ms"] > 2000:
            violations.append(f"after the restart {name} got {got['status']} in {got['ms']} ms")
    if report["crash"]["after_restart"]["readyz"] != 200:
        violations.append("/readyz was not ready after the restart")
    report["violations"] = violations
    return report
