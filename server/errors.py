"""Every error leaves the server as ``{"error": {"code", "message", "request_id"}}`` with a 4xx
status, or a 500 that names the request id and nothing else (the traceback goes to the log)."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from recagent.catalog.errors import RecAgentError, UnknownItemError, UnknownUserError
from recagent.server.access import Forbidden
from recagent.server.logs import request_id
from recagent.server.store import SessionBusy, SessionNotFound

__all__ = ["describe", "error_response", "install_error_handlers", "public_note"]

_KNOWN: list[tuple[type[Exception], int, str]] = [
    (UnknownUserError, 404, "unknown_user"),
    (UnknownItemError, 404, "unknown_item"),
    (SessionNotFound, 404, "unknown_session"),
    (SessionBusy, 409, "session_busy"),
    (Forbidden, 403, "forbidden"),
    (RecAgentError, 400, "bad_request"),
]
_NOT_AN_OBJECT = {"json_invalid", "model_attributes_type", "dict_type", "model_type"}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


# What a user may not learn from an error: the dataset's user ids (the CLI's message lists
# some), or where the internal services run.
_FIXED_MESSAGES = {UnknownUserError: "unknown user (or not one this API key may act for)"}
_ADDRESS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)'\"]+|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
                      r"|\blocalhost:\d+\b", re.IGNORECASE)


def public_note(text: str) -> str:
    """``text`` without internal addresses (URLs, ``ip:port``), for notes users see."""
    return _ADDRESS.sub("<internal address>", text)


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) of an error, for a response or a stream's ``error`` event."""
    for kind, status, code in _KNOWN:
        if isinstance(exc, kind):
            return status, code, _FIXED_MESSAGES.get(kind) or public_note(str(exc))
    return 500, "internal_error", "internal error; the server log has the details under this request id"


def error_response(status: int, code: str, message: str, **extra) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": request_id.get(), **extra}
    return JSONResponse({"error": body}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RecAgentError)
    async def _recagent(_: Request, exc: RecAgentError) -> JSONResponse:
        response = error_response(*describe(exc))
        if isinstance(exc, SessionBusy):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        if any(e.get("type") in _NOT_AN_OBJECT for e in exc.errors()):
            return error_response(400, "malformed_json", "the request body must be a JSON object",
                                  details=problems)
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, "validation_error", summary, details=problems)
