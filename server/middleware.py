"""Request ids, one structured log line per request, a body-size limit, and a JSON 500.

A pure ASGI middleware (no buffering), so streamed responses pass through as they are
written and the logged time covers the whole stream.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from recagent.server.logs import log, request_id

__all__ = ["RequestContext"]

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestContext:
    def __init__(self, app, *, max_body: int = 64 * 1024) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        state = {"status": 500, "sent": False}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["sent"] = True
                message = {**message,
                           "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            length = int(headers.get(b"content-length", b"0") or 0)
            if length > self.max_body:
                await _send_json(send_with_id, 413, "too_large",
                                 f"request body over {self.max_body} bytes", rid)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the edge: logged with its traceback, answered as JSON
            log.exception("unhandled error", extra={"fields": {"path": scope.get("path")}})
            if not state["sent"]:
                await _send_json(send_with_id, 500, "internal_error",
                                 "internal error; the server log has the details under this "
                                 "request id", rid)
        finally:
            route = scope.get("route")
            log.info("request", extra={"fields": {
                "method": scope.get("method"),
                "route": getattr(route, "path", None) or scope.get("path"),
                "path": scope.get("path"),
                "status": state["status"],
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }})
            request_id.reset(token)


async def _send_json(send, status: int, code: str, message: str, rid: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
