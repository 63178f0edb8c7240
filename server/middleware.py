"""The outer layers of every request (pure ASGI middlewares: nothing is buffered but a bounded
request body, so streamed responses pass through as they are written):

- :class:`RequestContext`: a request id, one structured log line, the Host header check
  (all paths but the health probes),
  security headers on every response, and a JSON 500.
- :class:`BodyLimit`: the body limit on the bytes actually received (a chunked body has no
  Content-Length to trust) and 415 for a body that is not JSON.
"""

from __future__ import annotations

import json
import re
import time
import uuid

from recagent.server.logs import log, request_id

__all__ = ["BodyLimit", "RequestContext", "host_allowed", "send_json_error"]

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# JSON needs no sources at all; the page sets its own (hash-pinned) policy; the offline docs
# pages run their own inline bootstrap script.
_CSP_DEFAULT = b"default-src 'none'; frame-ancestors 'none'"
_CSP_DOCS = (b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
             b"'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
_DOCS_PATHS = ("/docs", "/redoc")
_PROBES = ("/healthz", "/readyz")  # orchestrators probe by IP address: no Host check


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header value (port stripped) matches ``allowed`` (``*`` for any,
    ``*.example.com`` for its subdomains)."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not host:
        return False
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class RequestContext:
    def __init__(self, app, *, allowed_hosts: tuple[str, ...] = ("*",)) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

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
        path = scope.get("path", "")

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["sent"] = True
                extra = [(b"x-request-id", rid.encode()), *_SECURITY_HEADERS]
                if not any(k.lower() == b"content-security-policy" for k, _ in message.get("headers", [])):
                    extra.append((b"content-security-policy",
                                  _CSP_DOCS if path.startswith(_DOCS_PATHS) else _CSP_DEFAULT))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            host = headers.get(b"host", b"").decode("latin-1")
            if path not in _PROBES and not host_allowed(host, self.allowed_hosts):
                await send_json_error(send_with_id, 400, "bad_host",
                                      "this server does not answer for that Host header", rid)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the edge: logged with its traceback, answered as JSON
            log.exception("unhandled error", extra={"fields": {"path": path}})
            if not state["sent"]:
                await send_json_error(send_with_id, 500, "internal_error",
                                      "internal error; the server log has the details under this "
                                      "request id", rid)
        finally:
            route = scope.get("route")
            log.info("request", extra={"fields": {
                "method": scope.get("method"),
                "route": getattr(route, "path", None) or path,
                "path": path,
                "status": state["status"],
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }})
            request_id.reset(token)


class BodyLimit:
    """Reads a request body up to ``max_body`` bytes as it arrives, whatever Content-Length
    says, answers 413 at the first byte over (the rest is never read) and 415 for a
    non-empty body that is not JSON; the app then reads the body from memory."""

    def __init__(self, app, *, max_body: int = 64 * 1024) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        too_large = f"request body over {self.max_body} bytes"
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared > self.max_body:
            await send_json_error(send, 413, "too_large", too_large, request_id.get())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await send_json_error(send, 413, "too_large", too_large, request_id.get(),
                                      headers=[(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if body and not (media == "application/json" or (media.startswith("application/")
                                                        and media.endswith("+json"))):
            await send_json_error(send, 415, "unsupported_media_type",
                                  "the request body must be JSON (Content-Type: application/json)",
                                  request_id.get())
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def send_json_error(send, status: int, code: str, message: str, rid: str | None, *,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
