"""bench_http's wrk client: counts, latency and the check of every answer, against a small
real HTTP server (not recagent: the point is the client's bookkeeping)."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recagent.evals.bench_http import run_wrk_level

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (.ci/run installs it)")


def _server(items_per_answer: int):
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            answer = json.dumps({"recommendations": [{"item_id": f"P{k}"} for k in range(items_per_answer)]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.mark.parametrize("items", [10, 4])
def test_wrk_level_counts_requests_and_checks_each_answer(items):
    server, seen = _server(items)
    try:
        level = run_wrk_level(f"http://127.0.0.1:{server.server_port}", 2, 1.0, ['1', 'u "2"'])
    finally:
        server.shutdown()
    summary = level.summary()
    assert summary["client"] == "wrk" and seen
    assert {s["user_id"] for s in seen} <= {"1", 'u "2"'} and all(s["k"] == 10 for s in seen)
    if items == 10:
        assert summary["errors"] == 0 and summary["requests"] >= 10
        assert summary["requests_per_s"] > 0 and 0 < summary["p50_ms"] <= summary["p95_ms"]
    else:  # answers with too few items are failures, not throughput
        assert summary["requests"] == 0 and summary["errors"] >= 10
