"""Load benchmark of ``recagent serve``: a real server in a second process, driven on loopback.

    python -m recagent.evals.bench_http [--levels 1,8,32[,abuse]] [--recommend-seconds 10]
        [--chat-seconds 45] [--llm embedded] [--data DIR] [--baseline-src DIR] [--client wrk]
        [--out evals/reports/bench_http]

The server starts as ``recagent serve`` on a free loopback port with the embedded default
(demo shop, embedded Gemma unless ``--llm`` says otherwise) and a fresh SQLite database.
Each level runs N concurrent sessions (asyncio + httpx) for a fixed time, first against
``/v1/recommend``, then with chat turns: each virtual user sends a short scripted
conversation and, after every answer, feedback (like, click, dislike or purchase) on the first
recommendation. A level stops issuing requests at its deadline and waits for those in flight,
so its wall time is the window plus the drain. Requests/s counts completed requests over that
wall time. After the run, the feedback rows in the database are counted against the feedback
requests that got a 201 (none may be lost). Writes ``<out>.json`` and ``<out>.md``.

``--client wrk`` drives the ``/v1/recommend`` levels with wrk (one thread, N connections,
each answer checked for status 200 and ten recommendations in Lua) instead of httpx: the
Python client takes a good part of the two cores it shares with the server, wrk very little.

``--baseline-src DIR`` compares with other code (e.g. ``git worktree add DIR <commit>``): a
second server runs that tree's ``recagent`` (same Python, same home, same dataset), and each
level runs on the baseline server and then on this one, so both see the same machine load.

The load levels measure capacity, so their server runs with a rate limit no client reaches.
The level ``abuse`` (:mod:`recagent.evals.bench_abuse`) then runs its own pair of servers with
API keys on: a burst on one session, a rate-limit flood, oversize chunked bodies, and a crash
(SIGKILL while a session lease is held) with a restart on the same database; it reports its
violations (lost acknowledged writes, timeouts, other sessions not served), which must be none.
``--levels abuse`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from recagent.catalog.load import load_dataset
from recagent.evals.bench_abuse import AbuseConfig, run_abuse
from recagent.server.store import SessionStore

__all__ = ["main"]

# One virtual user's conversation; after the last line it starts a new session.
SCRIPT = [
    ("something for running", False),
    ("show me more", True),
    ("under $80", False),
    ("more like #1", False),
]
FEEDBACK = ("like", "click", "dislike", "purchase")
# The load levels measure capacity from one client address (no keys): no rate limit they can
# reach, and room in flight for the largest level (32 sessions) within the 40-thread pool.
LOAD_ENV = {"RECAGENT_RATE_LIMIT": "1000000/minute", "RECAGENT_MAX_INFLIGHT": "36",
            "RECAGENT_MAX_INFLIGHT_PER_KEY": "36"}


@dataclass
class Level:
    kind: str  # "recommend" | "chat"
    sessions: int
    window_s: float
    server: str = "this tree"
    load_after: float | None = None  # the 1-min load average when the level ended
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    degraded: int = 0
    feedback_ok: int = 0
    feedback_latencies: list[float] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    client: str = "httpx"
    counted: dict[str, Any] | None = None  # wrk's own counts and percentiles (ms)

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies)
        out = {
            "server": self.server, "kind": self.kind, "sessions": self.sessions,
            "client": self.client,
            "window_s": self.window_s, "load_average_1min": self.load_after,
            "wall_s": round(self.wall_s, 1), "requests": done, "errors": len(self.errors),
            "requests_per_s": round(done / self.wall_s, 2) if self.wall_s else 0.0,
            "p50_ms": _pct(self.latencies, 50), "p95_ms": _pct(self.latencies, 95),
            "max_ms": round(max(self.latencies) * 1000, 1) if self.latencies else None,
            "error_samples": self.errors[:5],
        }
        if self.counted is not None:
            out.update(self.counted)
        if self.kind == "chat":
            out.update(degraded=self.degraded, feedback_sent=self.feedback_ok,
                       feedback_p50_ms=_pct(self.feedback_latencies, 50),
                       feedback_p95_ms=_pct(self.feedback_latencies, 95))
        return out


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _recommend_worker(client: httpx.AsyncClient, level: Level, users: list[str],
                            deadline: float, rng: random.Random) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            r = await client.post("/v1/recommend", json={"user_id": rng.choice(users), "k": 10})
            if r.status_code != 200 or len(r.json()["recommendations"]) != 10:
                level.errors.append(f"recommend {r.status_code}: {r.text[:200]}")
                continue
        except httpx.HTTPError as exc:
            level.errors.append(f"recommend {type(exc).__name__}: {exc}")
            continue
        level.latencies.append(time.perf_counter() - started)


async def _chat_worker(client: httpx.AsyncClient, level: Level, users: list[str],
                       deadline: float, rng: random.Random) -> None:
    step, sid, n_feedback = len(SCRIPT), None, 0
    while time.monotonic() < deadline:
        try:
            if step == len(SCRIPT):
                r = await client.post("/v1/sessions", json={"user_id": rng.choice(users)})
                if r.status_code != 201:
                    level.errors.append(f"session {r.status_code}: {r.text[:200]}")
                    continue
                sid, step = r.json()["session_id"], 0
                level.session_ids.append(sid)
            message, more = SCRIPT[step]
            step += 1
            started = time.perf_counter()
            r = await client.post(f"/v1/sessions/{sid}/messages",
                                  json={"message": message, "exclude_shown": more})
            if r.status_code != 200:
                level.errors.append(f"message {r.status_code}: {r.text[:200]}")
                continue
            level.latencies.append(time.perf_counter() - started)
            body = r.json()
            level.degraded += bool(body["degraded"])
            recs = body["answer"]["recommendations"]
            if not recs:
                continue
            kind = FEEDBACK[n_feedback % len(FEEDBACK)]
            n_feedback += 1
            started = time.perf_counter()
            r = await client.post(f"/v1/sessions/{sid}/feedback",
                                  json={"item_id": recs[0]["item_id"], "kind": kind})
            if r.status_code != 201:
                level.errors.append(f"feedback {r.status_code}: {r.text[:200]}")
                continue
            level.feedback_latencies.append(time.perf_counter() - started)
            level.feedback_ok += 1
        except httpx.HTTPError as exc:
            level.errors.append(f"chat {type(exc).__name__}: {exc}")


async def run_level(base_url: str, kind: str, sessions: int, window_s: float,
                    users: list[str], seed: int = 0, server: str = "this tree") -> Level:
    level = Level(kind, sessions, window_s, server)
    # Idle connections are dropped after 2 s, before the server's keep-alive timeout (uvicorn's
    # 5 s): at equal timeouts a request can go out on a connection the server is closing
    # (the likely cause of one ReadError seen in 491 requests at 32 sessions).
    limits = httpx.Limits(max_connections=sessions + 4, max_keepalive_connections=sessions + 4,
                          keepalive_expiry=2.0)
    worker = _recommend_worker if kind == "recommend" else _chat_worker
    async with httpx.AsyncClient(base_url=base_url, timeout=900, limits=limits) as client:
        started = time.monotonic()
        deadline = started + window_s
        await asyncio.gather(*(worker(client, level, users, deadline, random.Random(seed * 1000 + i))
                               for i in range(sessions)))
        level.wall_s = time.monotonic() - started
    level.load_after = round(os.getloadavg()[0], 2)
    return level


# wrk's Lua: random users, each answer checked (200 with ten recommendations), counts and
# percentiles printed as one JSON line at the end.
_WRK_SCRIPT = """
local users = {%(users)s}
math.randomseed(%(seed)d)
bad = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function request()
  local user = users[math.random(#users)]
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"},
                    '{"user_id": ' .. user .. ', "k": 10}')
end
function response(status, headers, body)
  local _, items = string.gsub(body, '"item_id"', '')
  if status ~= 200 or items < 10 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + t:get("bad") end
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "errors": %%d, '
    .. '"p50_us": %%d, "p95_us": %%d, "max_us": %%d}\\n', summary.requests, summary.duration,
    failed + e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(95), latency.max))
end
"""


def run_wrk_level(base_url: str, sessions: int, window_s: float, users: list[str],
                  seed: int = 0, server: str = "this tree") -> Level:
    """A /v1/recommend level driven by wrk (one thread, ``sessions`` connections): a client
    in C takes far less of the two cores than Python's, so the server's own capacity shows."""
    if shutil.which("wrk") is None:
        raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
    level = Level("recommend", sessions, window_s, server, client="wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % {"users": ", ".join(json.dumps(json.dumps(u)) for u in users),
                               "seed": seed})
    try:
        done = subprocess.run(
            ["wrk", "-t1", f"-c{sessions}", f"-d{window_s:g}s", "--timeout", "60s", "-s", f.name,
             f"{base_url}/v1/recommend"], capture_output=True, text=True, check=False,
            timeout=window_s + 120)
    finally:
        os.unlink(f.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}")
    got = json.loads(line[4:])
    level.wall_s = got["duration_us"] / 1e6
    ok = got["requests"] - got["errors"]
    level.counted = {"requests": ok, "errors": got["errors"],
                     "requests_per_s": round(ok / level.wall_s, 2) if level.wall_s else 0.0,
                     "p50_ms": round(got["p50_us"] / 1000, 1), "p95_ms": round(got["p95_us"] / 1000, 1),
                     "max_ms": round(got["max_us"] / 1000, 1)}
    if got["errors"]:
        level.errors.append(f"{got['errors']} requests failed or answered without ten items")
    level.load_after = round(os.getloadavg()[0], 2)
    return level


def _start_server(port: int, db_url: str, args, log_path: Path,
                  env: dict[str, str] | None = None, source: Path | None = None) -> subprocess.Popen:
    """``recagent serve``; ``source``: a folder whose ``recagent`` package is imported first."""
    cmd = [sys.executable, "-m", "recagent.cli", "serve", "--port", str(port),
           "--db-url", db_url, "--llm", args.llm, "--log-level", "warning",
           "--workers", str(args.workers)]
    if args.data:
        cmd += ["--data", str(args.data)]
    log = log_path.open("w")
    extra = {"PYTHONPATH": str(source)} if source is not None else {}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(LOAD_ENV if env is None else env), **extra})


def _baseline_package(tree: Path, workdir: Path) -> tuple[Path, str]:
    """A folder whose ``recagent`` package is the checkout ``tree`` (its layer folders linked
    as ``recagent.<folder>``, as the project installs them), and the tree's commit."""
    tree = tree.resolve()
    if not (tree / "pyproject.toml").is_file():
        raise SystemExit(f"--baseline-src {tree} is not a checkout of recagent (no pyproject.toml)")
    package = workdir / "baseline" / "recagent"
    package.mkdir(parents=True)
    for folder in sorted(p for p in tree.iterdir() if (p / "__init__.py").is_file()):
        (package / folder.name).symlink_to(folder, target_is_directory=True)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    return package.parent, f"baseline {head or tree.name}"


def _wait_ready(base_url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"the server was not ready after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,32", help="concurrent sessions per level; "
                        "'abuse' adds the abuse level")
    parser.add_argument("--recommend-seconds", type=float, default=10.0)
    parser.add_argument("--chat-seconds", type=float, default=45.0)
    parser.add_argument("--llm", default="embedded", help="embedded (default), vllm or none")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the demo shop)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="a checkout of other code to run side by side (e.g. a git worktree)")
    parser.add_argument("--ready-timeout", type=float, default=900.0)
    parser.add_argument("--client", choices=("httpx", "wrk"), default="httpx",
                        help="what drives the /v1/recommend levels: Python's httpx (each answer "
                        "parsed), or wrk, a client in C that leaves the cores to the server")
    parser.add_argument("--out", type=Path, default=Path("evals/reports/bench_http"))
    args = parser.parse_args(argv)
    tokens = [x.strip() for x in args.levels.split(",") if x.strip()]
    levels = [int(x) for x in tokens if x != "abuse"]
    dataset = load_dataset(args.data)
    users = sorted(dataset.histories, key=str)

    workdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    servers: list[tuple[str, Path | None, str]] = []  # (label, source, database URL)
    if args.baseline_src is not None:
        source, label = _baseline_package(args.baseline_src, workdir)
        servers.append((label, source, f"sqlite:///{workdir / 'baseline.db'}"))
    servers.append(("this tree", None, f"sqlite:///{workdir / 'sessions.db'}"))
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    results: list[Level] = []
    ready: dict[str, float] = {}
    readyz = {"checks": {}}
    if levels:
        procs: dict[str, tuple[subprocess.Popen, str]] = {}
        try:
            for label, source, db_url in servers:  # one after the other: no two start-ups at once
                port, log_path = _free_port(), workdir / f"server-{len(procs)}.log"
                base_url = f"http://127.0.0.1:{port}"
                proc = _start_server(port, db_url, args, log_path, source=source)
                procs[label] = (proc, base_url)
                ready[label] = round(_wait_ready(base_url, proc, args.ready_timeout, log_path), 1)
                print(f"{label}: ready in {ready[label]} s ({base_url}, log {log_path})",
                      file=sys.stderr)
            for kind, window in (("recommend", args.recommend_seconds), ("chat", args.chat_seconds)):
                for n in levels:
                    for label, (_, base_url) in procs.items():
                        if kind == "recommend" and args.client == "wrk":
                            level = run_wrk_level(base_url, n, window, users, seed=n, server=label)
                        else:
                            level = asyncio.run(run_level(base_url, kind, n, window, users,
                                                          seed=n, server=label))
                        results.append(level)
                        print(json.dumps(level.summary()), file=sys.stderr)
            readyz = httpx.get(f"{procs['this tree'][1]}/readyz", timeout=10).json()
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    abuse = None
    if "abuse" in tokens:
        abuse = _abuse(args, workdir, dataset, users)
        print(json.dumps(abuse), file=sys.stderr)

    # Counted after the run, from the databases the servers wrote (not from their answers).
    chat = [x for x in results if x.kind == "chat"]
    stored = sum(SessionStore(db_url).count_events(
        "feedback", [s for x in chat if x.server == label for s in x.session_ids])
        for label, _, db_url in servers)
    sent = sum(x.feedback_ok for x in chat)
    summaries = [x.summary() for x in results]
    report = {
        "benchmark": "bench_http",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m recagent.evals.bench_http " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                    "load_average_1min": {"before": round(load_before, 2),
                                          "after": round(os.getloadavg()[0], 2)}},
        "server": {"dataset": dataset.name, "llm": readyz["checks"].get("llm"),
                   "ready_s": ready, "servers": [label for label, _, _ in servers],
                   "workers": args.workers, "compute_slots": 1,
                   "recommend_batch": os.environ.get("RECAGENT_RECOMMEND_BATCH", "64 (default)"),
                   "prose_queue_limit": 2, "database": "SQLite (WAL), fresh"},
        "script": [m for m, _ in SCRIPT],
        "levels": summaries,
        "errors": sum(x["errors"] for x in summaries),
        "feedback": {"sent_ok": sent, "stored": stored, "lost": sent - stored},
        "abuse": abuse,
        "total_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return report


def _abuse(args, workdir: Path, dataset, users: list[str]) -> dict[str, Any]:
    """The abuse level on its own fresh SQLite database and servers."""
    def start(db_url: str, log_path: Path, env: dict[str, str]):
        port = _free_port()
        proc = _start_server(port, db_url, args, log_path, env)
        _wait_ready(f"http://127.0.0.1:{port}", proc, args.ready_timeout, log_path)
        return proc, f"http://127.0.0.1:{port}"

    folder = workdir / "abuse"
    folder.mkdir()
    picked = users[:3]
    seen = {x.item_id for u in picked for x in dataset.histories[u]}
    items = [i for i in dataset.items if i not in seen][:40]
    return run_abuse(start, f"sqlite:///{folder / 'sessions.db'}", folder, items, picked, AbuseConfig())


def _abuse_markdown(a: dict[str, Any]) -> list[str]:
    burst, crash, over = a["burst"], a["crash"], a["oversize"]
    after = crash["after_restart"]
    bodies = ", ".join(f"{b['status']} after {b['bytes_sent'] / 2**20:.1f} MB sent in {b['seconds']} s"
                       for b in over["bodies"])
    return [
        "## Abuse level", "",
        (f"- Burst: {a['config']['burst_clients']} clients on one session for "
        f"{a['config']['burst_seconds']:g} s: {burst['on_one_session']['statuses']} "
        f"(max {burst['on_one_session']['max_ms']} ms); a bystander key meanwhile: "
        f"{burst['bystander']['statuses']} (max {burst['bystander']['max_ms']} ms)."),
        (f"- Flood from a key limited to 20/minute: {a['flood']['statuses']}, Retry-After "
        f"{a['flood']['retry_after_s']} s."),
        (f"- Oversize chunked bodies ({a['config']['oversize_mb']} MB offered): {bodies}; server "
        f"RSS {over['rss_mb_before']} MB before, {over['rss_mb_after']} MB after."),
        (f"- Crash: SIGKILL mid-burst with {crash['leases_held_at_kill']} session lease(s) held "
        f"(burst {crash['burst']['statuses']}); restart ready in {crash['restart_ready_s']} s; "
        f"then the crashed sessions answered {after['crashed_session_1']['status']} in "
        f"{after['crashed_session_1']['ms']} ms and {after['crashed_session_2']['status']} in "
        f"{after['crashed_session_2']['ms']} ms, the bystander {after['bystander']['status']} in "
        f"{after['bystander']['ms']} ms, /readyz {after['readyz']}."),
        (f"- Writes: {a['writes']['acknowledged']} acknowledged, {a['writes']['lost']} lost. "
        f"Violations: {a['violations'] or 'none'}."), "",
    ]


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"# HTTP load benchmark ({report['date']})", "",
        (f"`{report['command']}`: `recagent serve` ({report['server']['dataset']}) in a second "
         f"process on loopback; {machine['cpus']} CPUs (1-min load average "
         f"{machine['load_average_1min']['before']} before, {machine['load_average_1min']['after']} "
         f"after); whole run {report['total_s']} s."), "",
    ]
    if report["levels"]:
        lines += [
            (f"Load levels: LLM {report['server']['llm']}, {report['server']['database']}, ready "
             "after " + ", ".join(f"{s} s ({label})" for label, s in report['server']['ready_s'].items())
             + "; the load column is the 1-min load average at the end of the level."), "",
            ("| route | server | sessions | window s | wall s | requests | req/s | p50 ms | p95 ms "
             "| errors | degraded | load |"),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for x in report["levels"]:
            route = "/v1/recommend" if x["kind"] == "recommend" else "chat turn (/v1/sessions/{id}/messages)"
            if x.get("client", "httpx") != "httpx":
                route += f" ({x['client']})"
            lines.append(f"| {route} | {x.get('server', 'this tree')} | {x['sessions']} | "
                         f"{x['window_s']:g} | {x['wall_s']} | {x['requests']} | "
                         f"{x['requests_per_s']} | {x['p50_ms']} | {x['p95_ms']} | {x['errors']} | "
                         f"{x.get('degraded', '')} | {x.get('load_average_1min', '')} |")
        fb = report["feedback"]
        lines += ["", (f"Feedback: {fb['sent_ok']} requests answered 201, {fb['stored']} rows in the "
                  f"database after the run, {fb['lost']} lost. Errors in all: {report['errors']}."), ""]
    if report.get("abuse"):
        lines += _abuse_markdown(report["abuse"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
