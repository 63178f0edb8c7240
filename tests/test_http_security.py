"""Issue 14's probes of the HTTP backend, each a test: auth and ownership, bounded resources,
busy and crashed sessions, body limits, headers, Host check, what errors and notes reveal.
(The crash during a burst with real processes is in test_http_crash.py; the terminal probes
are in test_cli_safety.py.)"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from dataclasses import replace

import pytest
from fake_llm import ScriptedLLM
from fastapi.testclient import TestClient
from http_support import LOOPBACK, tiny_app, tiny_assistant

from recagent.agent.session import Session
from recagent.llm.base import LLMUnavailable
from recagent.server.access import hash_key, new_key
from recagent.server.middleware import BodyLimit

KEY_A, KEY_B, KEY_C = new_key(), new_key(), new_key()


@pytest.fixture(scope="module")
def assistant(tiny_shop_dir, encoder, tmp_path_factory):
    return tiny_assistant(tmp_path_factory.mktemp("sec-home"), tiny_shop_dir, encoder)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    path.write_text(f'''
[[keys]]
name = "shop-a"
sha256 = "{hash_key(KEY_A)}"
users = ["1", "2"]

[[keys]]
name = "shop-b"
sha256 = "{hash_key(KEY_B)}"
users = "*"
new_users = false

[[keys]]
name = "shop-a"          # a second key of the same principal (rotation)
sha256 = "{hash_key(KEY_C)}"
users = ["1", "2"]
''')
    return path


def _client(assistant, tmp_path, **security) -> TestClient:
    settings = replace(assistant.runtime.settings, **security)
    return TestClient(tiny_app(assistant, tmp_path / "s.db", settings=settings), client=LOOPBACK)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def authed(assistant, tmp_path, keys_file):
    with _client(assistant, tmp_path, api_keys_file=keys_file) as c:
        yield c


def test_probe_2_every_api_path_and_the_docs_need_a_key(authed):
    for path in ("/v1/items/P00001", "/docs", "/openapi.json", "/redoc"):
        r = authed.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    assert authed.post("/v1/sessions", json={"user_id": "1"}, headers=_auth("rk_wrong")).status_code == 401
    assert authed.get("/v1/items/P00001", headers={"X-API-Key": KEY_A}).status_code == 200
    assert authed.get("/openapi.json", headers=_auth(KEY_B)).status_code == 200
    assert authed.get("/healthz").status_code == 200 and authed.get("/").status_code == 200


def test_probe_2_a_session_is_its_owners_alone(authed):
    """POST /v1/sessions {"user_id": "1"} returned user 1's history to anyone, and any
    caller could read or change any session."""
    r = authed.post("/v1/sessions", json={"user_id": "1"}, headers=_auth(KEY_A))
    assert r.status_code == 201 and r.json()["history_length"] > 0
    sid = r.json()["session_id"]
    item = r.json()["recent_history"][0]["item_id"]
    other = _auth(KEY_B)
    for response in (
        authed.get(f"/v1/sessions/{sid}", headers=other),
        authed.post(f"/v1/sessions/{sid}/messages", json={"message": "hi"}, headers=other),
        authed.post(f"/v1/sessions/{sid}/messages/stream", json={"message": "hi"}, headers=other),
        authed.post(f"/v1/sessions/{sid}/feedback", json={"item_id": item, "kind": "like"}, headers=other),
        authed.post("/v1/recommend", json={"session_id": sid}, headers=other),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "unknown_session", "as if it did not exist"
    assert authed.get(f"/v1/sessions/{sid}", headers=_auth(KEY_C)).status_code == 200, "same principal"
    assert authed.get(f"/v1/sessions/{sid}", headers=_auth(KEY_A)).json()["liked"] == []


def test_probe_2_a_key_acts_only_for_its_users_and_errors_name_no_users(authed, tiny_shop):
    outside = next(u for u in tiny_shop.histories if u not in ("1", "2"))
    a = _auth(KEY_A)
    denied = authed.post("/v1/sessions", json={"user_id": outside}, headers=a)
    missing = authed.post("/v1/sessions", json={"user_id": "no-such-user"}, headers=a)
    assert denied.status_code == missing.status_code == 404
    assert denied.json()["error"]["message"] == missing.json()["error"]["message"], "no oracle"
    assert not re.search(r"\b\d+\b", missing.json()["error"]["message"]), "no user ids listed"
    rec = authed.post("/v1/recommend", json={"user_id": outside}, headers=a)
    assert rec.status_code == 404 and rec.json()["error"]["code"] == "unknown_user"
    assert authed.post("/v1/recommend", json={"user_id": "2", "k": 2}, headers=a).status_code == 200
    new = authed.post("/v1/sessions", json={}, headers=_auth(KEY_B))
    assert new.status_code == 403 and new.json()["error"]["code"] == "forbidden"


def test_probe_2_docs_can_be_turned_off(assistant, tmp_path):
    with _client(assistant, tmp_path, docs=False) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404
        assert c.get("/v1/items/P00001").status_code == 200


def test_probe_2_rate_limit_per_key_answers_429_with_retry_after(assistant, tmp_path, keys_file):
    with _client(assistant, tmp_path, api_keys_file=keys_file, rate_limit="3/minute") as c:
        codes = [c.get("/v1/items/P00001", headers=_auth(KEY_A)).status_code for _ in range(3)]
        limited = c.get("/v1/items/P00001", headers=_auth(KEY_C))  # same principal
        assert codes == [200] * 3 and limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert c.get("/v1/items/P00001", headers=_auth(KEY_B)).status_code == 200, "per key"


class _Blocked:
    """``/v1/recommend`` requests that wait inside the server until released."""

    def __init__(self, client: TestClient, headers: list[dict[str, str]]) -> None:
        self.client, self.gate, self.inside = client, threading.Event(), threading.Semaphore(0)
        self.chat = client.app.state.conversations
        self.real = self.chat.recommend
        self.statuses: list[int] = []
        self.threads = [threading.Thread(target=self._call, args=(h,)) for h in headers]

    def _slow(self, history, k):
        self.inside.release()
        self.gate.wait(10)
        return self.real(history, k)

    def _call(self, headers) -> None:
        r = self.client.post("/v1/recommend", json={"user_id": "1", "k": 2}, headers=headers)
        self.statuses.append(r.status_code)

    def __enter__(self):
        self.chat.recommend = self._slow
        for t in self.threads:
            t.start()
        for _ in self.threads:
            assert self.inside.acquire(timeout=10)
        return self

    def __exit__(self, *exc) -> None:
        self.gate.set()
        for t in self.threads:
            t.join()
        self.chat.recommend = self.real


def test_probe_1_a_saturated_server_answers_503_at_once_and_readyz_says_so(assistant, tmp_path):
    """About 45 requests waiting on a locked session took every worker thread: /readyz and
    other users timed out. Now at most max_inflight requests run; the next get 503 at once."""
    with _client(assistant, tmp_path, max_inflight=2, max_inflight_per_key=2) as c:
        c.app.state.readiness.prepared = True
        with _Blocked(c, [{}, {}]) as blocked:
            started = time.monotonic()
            over = c.get("/v1/items/P00001")
            assert over.status_code == 503 and over.headers["retry-after"] == "1"
            assert over.json()["error"]["code"] == "overloaded"
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["capacity"].startswith("saturated")
            assert c.get("/healthz").status_code == 200
            assert time.monotonic() - started < 2
        assert blocked.statuses == [200, 200]
        assert c.get("/readyz").json()["checks"]["capacity"].startswith("ok")
        assert c.get("/v1/items/P00001").status_code == 200


def test_probe_1_one_keys_burst_cannot_take_the_other_keys_share(assistant, tmp_path, keys_file):
    c = _client(assistant, tmp_path, api_keys_file=keys_file, max_inflight=4, max_inflight_per_key=2)
    with c, _Blocked(c, [_auth(KEY_A), _auth(KEY_C)]):  # shop-a's two slots taken
        assert c.get("/v1/items/P00001", headers=_auth(KEY_A)).status_code == 503
        assert c.get("/v1/items/P00001", headers=_auth(KEY_B)).status_code == 200


def test_probe_1_a_busy_session_answers_409_within_the_wait_while_others_are_served(assistant, tmp_path):
    with _client(assistant, tmp_path, session_wait=0.3) as c:
        sid = c.post("/v1/sessions", json={"user_id": "1"}).json()["session_id"]
        other = c.post("/v1/sessions", json={"user_id": "2"}).json()["session_id"]
        store = c.app.state.conversations.store
        store.wait_seconds = 0.3
        with store.hold(sid):  # a long turn holds the session
            started = time.monotonic()
            busy = [c.post(f"/v1/sessions/{sid}/feedback", json={"item_id": "P00007", "kind": "click"})
                    for _ in range(5)]
            assert time.monotonic() - started < 5 * 1.0
            for r in busy:
                assert r.status_code == 409 and r.json()["error"]["code"] == "session_busy"
                assert r.headers["retry-after"] == "1"
            assert c.post(f"/v1/sessions/{other}/feedback",
                          json={"item_id": "P00007", "kind": "click"}).status_code == 201
            stream = c.post(f"/v1/sessions/{sid}/messages/stream", json={"message": "hi"})
            assert stream.status_code == 409 and stream.headers["retry-after"] == "1"
            assert c.get(f"/v1/sessions/{sid}").status_code == 200, "reads need no lease"
        assert c.post(f"/v1/sessions/{sid}/feedback",
                      json={"item_id": "P00007", "kind": "click"}).status_code == 201


def test_probe_1_a_restart_serves_the_sessions_a_killed_process_held(assistant, tmp_path):
    """After kill -9 the sessions kept their lease for 600 s and the restarted server hung on
    them; a new app on the same database now reclaims the dead process's leases at start."""
    import subprocess
    import sys

    from sqlalchemy import update

    from recagent.server.store import holder_id, sessions

    with _client(assistant, tmp_path) as first:
        sid = first.post("/v1/sessions", json={"user_id": "1"}).json()["session_id"]
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        host = holder_id().split("/")[0]
        with first.app.state.conversations.store.engine.begin() as conn:
            conn.execute(update(sessions).where(sessions.c.id == sid).values(
                lease="d" * 32, lease_until=time.time() + 600, holder=f"{host}/{child.pid}/gone"))
    with _client(assistant, tmp_path) as restarted:
        started = time.monotonic()
        r = restarted.post(f"/v1/sessions/{sid}/feedback", json={"item_id": "P00007", "kind": "click"})
        assert r.status_code == 201 and time.monotonic() - started < 1.5


async def _drive(app, chunks):
    """Run ``app`` on a request whose body arrives in ``chunks`` (no Content-Length, like
    chunked transfer); returns (status, chunks the app read)."""
    pulled = 0
    sent: list[dict] = []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/sessions",
             "headers": [(b"content-type", b"application/json")]}
    await app(scope, receive, send)
    return sent[0]["status"], pulled


def test_probe_3_the_body_limit_counts_the_bytes_received_not_content_length():
    """A chunked 300 MB body was read and parsed; now reading stops at the first byte over."""
    import asyncio

    reached = []

    async def inner(scope, receive, send):
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = BodyLimit(inner, max_body=64 * 1024)
    chunk = b"x" * (1 << 20)
    status, pulled = asyncio.run(_drive(limited, [chunk] * 300))  # 300 MB offered
    assert status == 413 and pulled == 1 and not reached
    status, pulled = asyncio.run(_drive(limited, [b'{"user_id":', b' "1"}']))
    assert status == 200 and reached == [b'{"user_id": "1"}']


def test_probe_smaller_wrong_content_type_is_415_not_400(assistant, tmp_path):
    with _client(assistant, tmp_path) as c:
        r = c.post("/v1/sessions", content=b'{"user_id": "1"}', headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        assert c.post("/v1/sessions", content=b'{"user_id": "1"}',
                      headers={"content-type": "application/json; charset=utf-8"}).status_code == 201
        assert c.post("/v1/sessions").status_code == 201, "no body is fine"


def test_probe_smaller_security_headers_and_a_hash_pinned_csp_on_the_page(assistant, tmp_path):
    with _client(assistant, tmp_path) as c:
        page = c.get("/")
        csp = page.headers["content-security-policy"]
        script = page.text.split("<script>")[1].split("</script>")[0]
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
        for r in (page, c.get("/v1/items/P00001"), c.get("/healthz")):
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "content-security-policy" in r.headers


def test_probe_smaller_the_host_header_is_checked(assistant, tmp_path):
    settings = replace(assistant.runtime.settings, allowed_hosts=("localhost", "127.0.0.1", "[::1]"))
    app = tiny_app(assistant, tmp_path / "s.db", settings=settings)
    with TestClient(app, base_url="http://attacker.example", client=LOOPBACK) as c:
        r = c.get("/v1/items/P00001")
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"
        assert c.get("/").status_code == 400
        assert c.get("/healthz").status_code == 200, "probes come by IP address"
    for base in ("http://localhost:8080", "http://127.0.0.1", "http://[::1]:9000"):
        with TestClient(app, base_url=base, client=LOOPBACK) as c:
            assert c.get("/healthz").status_code == 200, base


class _UnreachableLLM(ScriptedLLM):
    def _check(self) -> None:
        raise LLMUnavailable("cannot reach the vLLM server at http://10.1.2.3:8000/v1 "
                             "(connection refused)")


def test_probe_smaller_degraded_notes_show_no_internal_address(tiny_shop_dir, encoder, tmp_path):
    assistant = tiny_assistant(tmp_path / "home", tiny_shop_dir, encoder, llm=_UnreachableLLM())
    with TestClient(tiny_app(assistant, tmp_path / "s.db"), client=LOOPBACK) as c:
        sid = c.post("/v1/sessions", json={"user_id": "1"}).json()["session_id"]
        body = c.post(f"/v1/sessions/{sid}/messages", json={"message": "running gear"}).json()
        stream = c.post(f"/v1/sessions/{sid}/messages/stream", json={"message": "more"}).text
    assert body["degraded"] is True and body["answer"]["degraded"]
    for text in (str(body), stream):
        assert "10.1.2.3" not in text and "http://" not in text
    assert any("LLM unavailable" in n for n in body["answer"]["degraded"])


def test_probe_2_serve_refuses_a_public_address_without_keys(tmp_path):
    """No-auth mode is for local use: `recagent serve --host 0.0.0.0` without keys exits
    before loading anything."""
    from typer.testing import CliRunner

    from recagent.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--llm", "none"])
    assert result.exit_code == 1
    assert "RECAGENT_API_KEYS_FILE" in result.output and "Traceback" not in result.output


def test_sessions_created_before_owners_were_recorded_stay_no_auth_only(assistant, tmp_path, keys_file):
    with _client(assistant, tmp_path) as local:
        store = local.app.state.conversations.store
        old = store.create(local.app.state.conversations.dataset.name, Session("1"))  # owner None
        assert local.get(f"/v1/sessions/{old}").status_code == 200
    with _client(assistant, tmp_path, api_keys_file=keys_file) as c:
        assert c.get(f"/v1/sessions/{old}", headers=_auth(KEY_A)).status_code == 404


def test_recagent_api_key_prints_a_key_and_an_entry_that_loads(tmp_path):
    from typer.testing import CliRunner

    from recagent.cli import app
    from recagent.server.access import ApiKeys

    result = CliRunner().invoke(app, ["api-key", "--name", "shop-web", "--users", "1, 2",
                                      "--rate-limit", "30/minute"])
    assert result.exit_code == 0, result.output
    key = next(line for line in result.stdout.splitlines() if line.startswith("rk_"))
    entry = result.stdout[result.stdout.index("[[keys]]"):]
    assert key not in entry, "the file holds the hash only"
    (tmp_path / "keys.toml").write_text(entry)
    principal = ApiKeys.load(tmp_path / "keys.toml").principal(key)
    assert principal is not None and principal.name == "shop-web" and principal.rate_limit == "30/minute"
    assert principal.may_act_for("2") and not principal.may_act_for("3")
    assert ApiKeys.load(tmp_path / "keys.toml").principal(key + "x") is None


@pytest.mark.parametrize(("text", "problem"), [
    ("[[keys]]\nname = 'a'\nsha256 = 'zz'\n", "sha256 must be the 64 hex digits"),
    ("[[keys]]\nname = 'local'\nsha256 = '" + "a" * 64 + "'\n", "not 'local'"),
    ("[[keys]]\nname = 'a'\nsha256 = '" + "a" * 64 + "'\nusers = 3\n", "users must be"),
    ("[[keys]]\nname = 'a'\nsha256 = '" + "a" * 64 + "'\nrate_limit = 'lots'\n", "not like '60/minute'"),
    ("[[keys]]\nname = 'a'\nsha = 'x'\n", "unknown fields sha"),
    ("keys = [", "cannot read the API keys file"),
    ("", "lists no keys"),
])
def test_a_bad_keys_file_is_one_clear_error(tmp_path, text, problem):
    from recagent.catalog.errors import RecAgentError
    from recagent.server.access import ApiKeys

    (tmp_path / "keys.toml").write_text(text)
    with pytest.raises(RecAgentError, match=re.escape(problem)):
        ApiKeys.load(tmp_path / "keys.toml")


@pytest.mark.parametrize(("host", "ok"), [
    ("localhost:8080", True), ("127.0.0.1", True), ("[::1]:9000", True), ("LOCALHOST", True),
    ("shop.example.com", True), ("a.b.example.com", True), ("example.com", False),
    ("evil.com", False), ("", False), ("localhost.evil.com", False),
])
def test_host_matching(host, ok):
    from recagent.server.middleware import host_allowed

    assert host_allowed(host, ("localhost", "127.0.0.1", "[::1]", "*.example.com")) is ok


def test_public_notes_drop_internal_addresses():
    from recagent.server.errors import public_note

    assert public_note("cannot reach http://10.0.0.5:8000/v1 (refused)") == \
        "cannot reach <internal address> (refused)"
    assert public_note("chroma at 192.168.1.9:8001 down; localhost:8000 too") == \
        "chroma at <internal address> down; <internal address> too"
    assert public_note("price <= $30, 2 items") == "price <= $30, 2 items"


def test_no_auth_mode_answers_only_clients_on_this_machine(tmp_path, tiny_shop_dir, encoder):
    """However the app is started (uvicorn --factory bypasses `recagent serve`'s check)."""
    assistant = tiny_assistant(tmp_path / "home", tiny_shop_dir, encoder)
    app = tiny_app(assistant, tmp_path / "s.db")
    with TestClient(app, client=("203.0.113.7", 4000)) as remote:
        refused = remote.get("/healthz")
        assert refused.status_code == 403 and "this machine only" in refused.json()["error"]["message"]
    with TestClient(app, client=("::1", 4000)) as local:
        assert local.get("/healthz").status_code == 200
