"""The HTTP backend's routes on the tiny shop: answers, streaming, feedback, validation,
persistence across app objects, isolation of concurrent sessions, and outages."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from fake_llm import ScriptedLLM
from fastapi.testclient import TestClient
from http_support import LOOPBACK, sse_events, tiny_app, tiny_assistant

from recagent.catalog.errors import IndexUnavailable
from recagent.server.logs import JsonFormatter


@pytest.fixture(scope="module")
def assistant(tiny_shop_dir, encoder, tmp_path_factory):
    return tiny_assistant(tmp_path_factory.mktemp("http-home"), tiny_shop_dir, encoder)


@pytest.fixture
def client(assistant, tmp_path):
    with TestClient(tiny_app(assistant, tmp_path / "sessions.db"), client=LOOPBACK) as c:
        yield c


def _session(client, user_id="1") -> str:
    r = client.post("/v1/sessions", json={"user_id": user_id} if user_id else {})
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def _say(client, sid, message, **extra) -> dict:
    r = client.post(f"/v1/sessions/{sid}/messages", json={"message": message, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_session_for_a_dataset_user_and_for_a_new_user(client, tiny_shop):
    r = client.post("/v1/sessions", json={"user_id": "1"})
    assert r.status_code == 201
    body = r.json()
    assert body["user_id"] == "1" and body["history_length"] == len(tiny_shop.histories["1"])
    assert body["recent_history"][0]["item_id"] == tiny_shop.histories["1"][-1].item_id
    assert client.get(f"/v1/sessions/{body['session_id']}").json() == body
    new = client.post("/v1/sessions").json()
    assert new["user_id"] is None and new["history_length"] == 0


def test_a_message_gets_recommendations_explanations_and_the_trace(client, tiny_shop):
    sid = _session(client)
    r = client.post(f"/v1/sessions/{sid}/messages", json={"message": "something under $30"},
                    headers={"X-Request-ID": "test-req-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "test-req-1"
    body = r.json()
    assert body["session_id"] == sid and body["turn"] == 1 and body["degraded"] is False
    answer = body["answer"]
    assert 1 <= len(answer["recommendations"]) <= 3
    assert answer["constraints"] == ["price <= $30"]
    for rec in answer["recommendations"]:
        assert rec["price"] is not None and rec["price"] <= 30
        assert rec["explanation"] and rec["explanation_source"] == "evidence"
        assert rec["explanation_trimmed"] is False
        assert rec["item_id"] not in {x.item_id for x in tiny_shop.histories["1"]}
    tools = [c["tool"] for c in answer["trace"]]
    assert tools[0] == "parse_constraints" and "recommend_for_user" in tools and "explain" in tools
    state = client.get(f"/v1/sessions/{sid}").json()
    assert state["turns"] == 1 and state["last_shown"] == [x["item_id"] for x in answer["recommendations"]]
    assert client.post("/v1/sessions", headers={"X-Request-ID": "bad id!"}).headers["x-request-id"] != "bad id!"


@pytest.mark.parametrize(("send", "status", "code"), [
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", json={"message": ""}), 422, "validation_error"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", json={"message": "   "}), 422, "validation_error"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", json={"message": "x" * 2001}), 422, "validation_error"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", json={"message": "hi", "k": 3}), 422, "validation_error"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", content=b'{"message": "hi"',
                         headers={"content-type": "application/json"}), 400, "malformed_json"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", content=b'["hi"]',
                         headers={"content-type": "application/json"}), 400, "malformed_json"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/messages", content=b"x" * 70_000,
                         headers={"content-type": "application/json"}), 413, "too_large"),
    (lambda c, s: c.post("/v1/sessions/nope/messages", json={"message": "hi"}), 404, "unknown_session"),
    (lambda c, s: c.post("/v1/sessions/no%20pe/messages", json={"message": "hi"}), 422, "validation_error"),
    (lambda c, s: c.post("/v1/sessions/nope/messages/stream", json={"message": "hi"}), 404, "unknown_session"),
    (lambda c, s: c.get("/v1/sessions/nope"), 404, "unknown_session"),
    (lambda c, s: c.post("/v1/sessions", json={"user_id": "no-such-user"}), 404, "unknown_user"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/feedback", json={"item_id": "P00001", "kind": "love"}), 422, "validation_error"),
    (lambda c, s: c.post(f"/v1/sessions/{s}/feedback", json={"item_id": "NOPE", "kind": "like"}), 404, "unknown_item"),
    (lambda c, s: c.get("/v1/items/NOPE"), 404, "unknown_item"),
    (lambda c, s: c.post("/v1/recommend", json={"k": 3}), 422, "validation_error"),
    (lambda c, s: c.post("/v1/recommend", json={"user_id": "no-such-user"}), 404, "unknown_user"),
    (lambda c, s: c.post("/v1/recommend", json={"user_id": "1", "k": 0}), 422, "validation_error"),
    (lambda c, s: c.get("/v2/nothing"), 404, "not_found"),
    (lambda c, s: c.get("/v1/recommend"), 405, "method_not_allowed"),
])
def test_bad_requests_get_a_clear_4xx(client, send, status, code):
    sid = _session(client)
    r = send(client, sid)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"] and error["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text


def test_feedback_updates_the_history_the_next_turn_builds_on(client, tiny_shop):
    sid = _session(client, user_id=None)  # a new user: no history, popular items
    first = _say(client, sid, "show me something")["answer"]
    assert all(not r["evidence"]["related"] for r in first["recommendations"])
    liked = next(i for i in tiny_shop.items.values() if "Running Shoes" in i.category)
    r = client.post(f"/v1/sessions/{sid}/feedback", json={"item_id": liked.item_id, "kind": "like"})
    assert r.status_code == 201 and r.json()["history_length"] == 1 and r.json()["liked"] == [liked.item_id]
    second = _say(client, sid, "show me something")["answer"]
    retrieval = next(c for c in second["trace"] if c["tool"] == "recommend_for_user")
    assert retrieval["arguments"]["history"] == 1
    related = {e["item_id"] for r in second["recommendations"] for e in r["evidence"]["related"]}
    assert related == {liked.item_id}, "the next answer is explained by the liked item"
    assert liked.item_id not in [r["item_id"] for r in second["recommendations"]]

    disliked = second["recommendations"][0]["item_id"]
    client.post(f"/v1/sessions/{sid}/feedback", json={"item_id": disliked, "kind": "dislike"})
    third = _say(client, sid, "show me something")["answer"]
    assert disliked not in [r["item_id"] for r in third["recommendations"]]
    store = client.app.state.conversations.store
    assert [(e["kind"], e["feedback"]) for e in store.events(sid)] == [
        ("turn", None), ("feedback", "like"), ("turn", None), ("feedback", "dislike"), ("turn", None)]


def test_a_new_app_on_the_same_database_continues_the_session(assistant, tmp_path):
    db = tmp_path / "sessions.db"
    with TestClient(tiny_app(assistant, db), client=LOOPBACK) as first:
        sid = _session(first)
        _say(first, sid, "something under $30")
        shown = first.get(f"/v1/sessions/{sid}").json()["last_shown"]
        first.post(f"/v1/sessions/{sid}/feedback", json={"item_id": shown[0], "kind": "purchase"})
        before = first.get(f"/v1/sessions/{sid}").json()
    with TestClient(tiny_app(assistant, db), client=LOOPBACK) as second:  # a restart: new app, new store object
        assert second.get(f"/v1/sessions/{sid}").json() == before
        body = _say(second, sid, "more like #1")
        assert body["turn"] == 2
        assert "price <= $30" in body["answer"]["constraints"], "constraints carry over"
        assert f"like item {shown[0]}" in body["answer"]["constraints"], "#1 is the last answer's"
        assert shown[0] not in [r["item_id"] for r in body["answer"]["recommendations"]], "purchased"


def test_concurrent_sessions_do_not_see_each_others_state(client):
    prices = [15, 25, 40, 60, 80, 120]
    sids = [_session(client, user_id=str(n + 1)) for n in range(len(prices))]
    answers: dict[str, dict] = {}
    errors: list[BaseException] = []

    def talk(sid: str, price: int) -> None:
        try:
            answers[sid] = _say(client, sid, f"something under ${price}")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(s, p)) for s, p in zip(sids, prices, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for sid, price in zip(sids, prices, strict=True):
        state = client.get(f"/v1/sessions/{sid}").json()
        assert state["constraints"] == [f"price <= ${price}"] and state["turns"] == 1
        assert all(r["price"] <= price for r in answers[sid]["answer"]["recommendations"])


def test_requests_on_one_session_serialise(client, tiny_shop):
    sid = _session(client)
    start = client.get(f"/v1/sessions/{sid}").json()["history_length"]
    items = [i for i in list(tiny_shop.items)[:40] if i not in {x.item_id for x in tiny_shop.histories["1"]}][:24]

    def like(chunk):
        for item_id in chunk:
            assert client.post(f"/v1/sessions/{sid}/feedback",
                               json={"item_id": item_id, "kind": "click"}).status_code == 201

    threads = [threading.Thread(target=like, args=(items[n::4],)) for n in range(4)]
    threads.append(threading.Thread(target=_say, args=(client, sid, "something new")))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = client.get(f"/v1/sessions/{sid}").json()
    assert state["history_length"] == start + len(items), "no feedback lost to a concurrent write"
    assert state["turns"] == 1
    assert client.app.state.conversations.store.count_events("feedback", [sid]) == len(items)


def test_the_stream_reports_the_turn_as_it_happens(tiny_shop_dir, encoder, tmp_path):
    llm = ScriptedLLM(reply=lambda prompt: "It goes well with the running gear you bought.")
    assistant = tiny_assistant(tmp_path / "home", tiny_shop_dir, encoder, llm=llm)
    with TestClient(tiny_app(assistant, tmp_path / "s.db"), client=LOOPBACK) as client:
        sid = _session(client)
        r = client.post(f"/v1/sessions/{sid}/messages/stream", json={"message": "running gear under $80"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.text)
        names = [n for n, _ in events]
        assert names[0] == "tool_call" and names[-1] == "answer" and "error" not in names
        picked = names.index("picked")
        assert {"parse_constraints", "recommend_for_user", "filter_items"} <= {
            d["tool"] for n, d in events[:picked] if n == "tool_call"}
        answer = events[-1][1]
        recs = answer["answer"]["recommendations"]
        assert [i["item_id"] for i in events[picked][1]["items"]] == [x["item_id"] for x in recs]
        prose = [d for n, d in events if n == "prose"]
        explained = [d for n, d in events if n == "explained"]
        assert prose and "".join(d["text"] for d in prose if d["rank"] == 1).strip()
        assert names.index("prose") > picked
        assert [d["rank"] for d in explained] == [x["rank"] for x in recs]
        assert [d["text"] for d in explained] == [x["explanation"] for x in recs]
        stored = client.app.state.conversations.store.events(sid, "turn")
        assert stored[-1]["payload"] == answer["answer"], "what was streamed is what was stored"


def test_an_llm_outage_gives_a_degraded_answer(tiny_shop_dir, encoder, tmp_path):
    assistant = tiny_assistant(tmp_path / "home", tiny_shop_dir, encoder, llm=ScriptedLLM(down=True))
    with TestClient(tiny_app(assistant, tmp_path / "s.db"), client=LOOPBACK) as client:
        body = _say(client, _session(client), "running gear")
        assert body["degraded"] is True and body["answer"]["recommendations"]
        assert any("LLM unavailable" in n for n in body["answer"]["degraded"])


def test_a_chroma_outage_gives_a_degraded_answer_not_a_500(assistant, client, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("chroma server refused the connection")

    sid = _session(client)
    index = assistant.runtime.index
    monkeypatch.setattr(index, "search", down)
    monkeypatch.setattr(type(index), "collection", property(down))
    # The default model (item-kNN + text) keeps the item vectors it has read; one that has not
    # read them yet (a server that just started) meets the outage.
    monkeypatch.delitem(assistant.recommender.text.__dict__, "item_embeddings", raising=False)
    body = _say(client, sid, "something under $40")
    assert body["degraded"] is True
    assert "search index unavailable" in body["answer"]["degraded"][0]
    recs = body["answer"]["recommendations"]
    assert recs and all(r["price"] <= 40 for r in recs)
    assert client.get(f"/v1/sessions/{sid}").json()["constraints"] == ["price <= $40"]
    rec = client.post("/v1/recommend", json={"user_id": "1", "k": 4}).json()
    assert rec["retriever"] == "popularity" and len(rec["recommendations"]) == 4 and rec["degraded"]
    stream = sse_events(client.post(f"/v1/sessions/{sid}/messages/stream", json={"message": "more"}).text)
    assert stream[-1][0] == "answer" and stream[-1][1]["degraded"] is True
    client.app.state.readiness.prepared = True
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["index"].startswith("unavailable")


def test_index_unavailable_from_a_tool_is_degraded_too(assistant, client, monkeypatch):
    def missing(*args, **kwargs):
        raise IndexUnavailable("index 'x' lacks 3 of 302 items: run `recagent index`")

    monkeypatch.setattr(assistant.runtime.index, "search", missing)
    monkeypatch.setattr(assistant.recommender, "recommend", missing)
    body = _say(client, _session(client), "running shoes")
    assert body["degraded"] is True and "run `recagent index`" in body["answer"]["degraded"][0]


def test_a_programming_error_is_a_json_500_without_the_traceback(assistant, client, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(type(assistant.agent), "turn", boom)
    with caplog.at_level(logging.ERROR, logger="recagent.http"):
        r = client.post(f"/v1/sessions/{_session(client)}/messages", json={"message": "hi"})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error" and "secret" not in r.text
    logged = [JsonFormatter().format(rec) for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert any("secret internal detail" in line and r.headers["x-request-id"] in line for line in logged)


def test_one_json_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="recagent.http"):
        client.get("/v1/items/P00001", headers={"X-Request-ID": "log-me"})
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "log-me" and line["route"] == "/v1/items/{item_id}"
    assert line["status"] in (200, 404) and line["ms"] >= 0 and line["method"] == "GET"


def test_items_recommend_health_docs_and_the_page(client, tiny_shop):
    item = next(iter(tiny_shop.items.values()))
    body = client.get(f"/v1/items/{item.item_id}").json()
    assert body["title"] == item.title and body["price"] == item.price
    rec = client.post("/v1/recommend", json={"user_id": "1", "k": 4}).json()
    assert rec["user"] == "1" and len(rec["recommendations"]) == 4 and rec["degraded"] == []
    assert all(r["evidence"] and r["category"] for r in rec["recommendations"])
    sid = _session(client)
    client.post(f"/v1/sessions/{sid}/feedback", json={"item_id": rec["recommendations"][0]["item_id"],
                                                     "kind": "purchase"})
    by_session = client.post("/v1/recommend", json={"session_id": sid, "k": 4}).json()
    assert rec["recommendations"][0]["item_id"] not in [r["item_id"] for r in by_session["recommendations"]]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 503, "not prepared: not ready"
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/sessions", "/v1/sessions/{session_id}/messages/stream", "/v1/recommend"} <= set(paths)
    # The documented 422 is the body the server sends, not FastAPI's HTTPValidationError.
    invalid = paths["/v1/recommend"]["post"]["responses"]["422"]["content"]["application/json"]
    assert invalid["schema"]["$ref"].endswith("/ErrorOut")
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    sent = client.post("/v1/recommend", json={"k": "many"}).json()
    assert set(sent) == {"error"} and {"code", "message", "request_id"} <= set(sent["error"])
    docs = client.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "cdn." not in docs, "the docs page works offline"
    page = client.get("/")
    assert page.status_code == 200 and "messages/stream" in page.text and "http" not in page.text.split("<script>")[1].split("fetch(")[0]


def test_readyz_after_start_up(assistant, tmp_path):
    from recagent.server import create_app
    from recagent.server.store import SessionStore

    app = create_app(assistant, store=SessionStore(f"sqlite:///{tmp_path}/s.db"))
    with TestClient(app, client=LOOPBACK) as client:  # the lifespan prepares: index check, models
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        checks = r.json()["checks"]
        assert checks["index"] == "ok" and checks["database"] == "ok" and checks["llm"] == "ok: none"


def test_the_http_api_can_do_what_the_chat_can(client, tiny_shop):
    """Messages go through the same conversation service as the terminal chat: filters,
    feedback by number, "more", forget, and "I bought ..." for a new user."""
    sid = _session(client)
    first = _say(client, sid, "something under $40")["answer"]
    shown = [r["item_id"] for r in first["recommendations"]]
    assert shown
    filtered = _say(client, sid, "/filter price<20")["answer"]
    assert any(n["text"].startswith("Filters now:") for n in filtered["notices"])
    assert "price <= $20" in filtered["constraints"]
    assert all(r["price"] <= 20 for r in filtered["recommendations"])
    liked = filtered["recommendations"][0]["item_id"]
    after_like = _say(client, sid, "/like 1")["answer"]
    assert liked not in [r["item_id"] for r in after_like["recommendations"]]
    state = client.get(f"/v1/sessions/{sid}").json()
    assert state["liked"] == [liked] and state["recent_history"][0]["item_id"] == liked
    more = _say(client, sid, "/more")["answer"]
    assert not {r["item_id"] for r in more["recommendations"]} & set(state["shown"])
    forgot = _say(client, sid, "/forget 1")["answer"]
    assert any("Forgot" in n["text"] for n in forgot["notices"])
    assert client.get(f"/v1/sessions/{sid}").json()["liked"] == []
    # A line the chat cannot act on is the client's error, and changes nothing.
    before = client.get(f"/v1/sessions/{sid}").json()
    r = client.post(f"/v1/sessions/{sid}/messages", json={"message": "/forget 999"})
    assert r.status_code == 400 and "there is no entry 999" in r.json()["error"]["message"]
    assert client.get(f"/v1/sessions/{sid}").json() == before
    # A new user builds a history by saying what they bought.
    new = _session(client, None)
    pen = next(i for i in tiny_shop.items.values() if "pen" in i.title.lower())
    bought = _say(client, new, f"I just bought a {pen.title}")["answer"]
    assert any(n["kind"] == "ok" and "Added to your history" in n["text"] for n in bought["notices"])
    assert client.get(f"/v1/sessions/{new}").json()["history_length"] == 1


def test_the_server_keeps_numpy_blas_to_one_thread():
    import subprocess
    import sys

    code = ("import numpy\nfrom threadpoolctl import threadpool_info\n"
            "from recagent.server.app import one_blas_thread\none_blas_thread()\n"
            "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1]"
