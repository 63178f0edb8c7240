"""The gate in front of the API: authentication, per-key rate limits and a bounded number of
requests in flight (a pure ASGI middleware, so a rejected request costs no thread and no body).

- Every path but the page, ``/healthz``, ``/readyz`` and the docs' static files needs a key
  (``Authorization: Bearer <key>`` or ``X-API-Key``) when keys are configured: 401 otherwise.
  The principal is put in ``scope["state"]["principal"]`` for the routes' owner checks.
- Rate limits: a moving window per principal (per client address in no-auth mode); over it,
  429 with ``Retry-After``.
- Admission: at most ``max_inflight`` ``/v1`` requests at once (streams count until they end),
  and at most ``per_key`` of them from one principal (client address without auth); the next
  one gets 503 with ``Retry-After`` at once instead of a thread that waits, so one client's
  burst cannot take the others' share, health checks keep their threads, and ``/readyz``
  reports the saturation.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time

from limits import parse, storage, strategies

from recagent.server.access import LOCAL, ApiKeys, Principal
from recagent.server.logs import request_id
from recagent.server.middleware import send_json_error

__all__ = ["Admission", "Guard", "is_loopback"]

_PUBLIC = {"/", "/healthz", "/readyz", "/favicon.ico"}
_PUBLIC_PREFIXES = ("/static-offline-docs/",)


class Admission:
    """How many ``/v1`` requests run now, in all and per principal, against the limits
    (shared with ``/readyz``). ``per_key`` defaults to a quarter of ``limit``."""

    def __init__(self, limit: int, per_key: int | None = None) -> None:
        if limit < 1:
            raise ValueError("max_inflight must be >= 1")
        self.limit = limit
        self.per_key = max(1, min(limit, per_key or limit // 4))
        self.inflight = 0
        self._by_key: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, who: str) -> bool:
        with self._lock:
            mine = self._by_key.get(who, 0)
            if self.inflight >= self.limit or mine >= self.per_key:
                return False
            self.inflight += 1
            self._by_key[who] = mine + 1
            return True

    def leave(self, who: str) -> None:
        with self._lock:
            self.inflight -= 1
            left = self._by_key[who] - 1
            if left:
                self._by_key[who] = left
            else:
                del self._by_key[who]

    @property
    def saturated(self) -> bool:
        return self.inflight >= self.limit


class Guard:
    def __init__(self, app, *, keys: ApiKeys | None, rate_limit: str, admission: Admission) -> None:
        self.app = app
        self.keys = keys
        self.default_rate = parse(rate_limit)
        self.admission = admission
        self.limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.keys is None and not is_loopback(_client(scope)):
            # No-auth mode is for this machine only, however the app was started (`recagent
            # serve` refuses other addresses; `uvicorn --factory app_from_env` does not).
            await send_json_error(send, 403, "forbidden",
                                  "this server runs without API keys, so it answers clients on "
                                  "this machine only; give it keys (RECAGENT_API_KEYS_FILE) to "
                                  "serve others", request_id.get())
            return
        path = scope.get("path", "")
        if path in _PUBLIC or path.startswith(_PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        if principal is None:
            await send_json_error(send, 401, "unauthorized",
                                  "a valid API key is required (Authorization: Bearer <key>)",
                                  request_id.get(), headers=[(b"www-authenticate", b"Bearer")])
            return
        rate = parse(principal.rate_limit) if principal.rate_limit else self.default_rate
        who = principal.name if self.keys is not None else _client(scope)
        if not self.limiter.hit(rate, who):
            reset = self.limiter.get_window_stats(rate, who).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            await send_json_error(send, 429, "rate_limited",
                                  f"over the rate limit of {rate}; retry in {wait} s",
                                  request_id.get(), headers=[(b"retry-after", str(wait).encode())])
            return
        scope.setdefault("state", {})["principal"] = principal
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if not self.admission.enter(who):
            await send_json_error(send, 503, "overloaded",
                                  "too many requests in flight (for this key or in all); retry "
                                  "shortly", request_id.get(), headers=[(b"retry-after", b"1")])
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(who)

    def _principal(self, scope) -> Principal | None:
        if self.keys is None:
            return LOCAL
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        key = key or headers.get(b"x-api-key", b"").decode("latin-1").strip()
        return self.keys.principal(key) if key else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"
