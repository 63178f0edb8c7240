"""Structured logs: one JSON object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

__all__ = ["JsonFormatter", "configure_logging", "log", "request_id"]

request_id: ContextVar[str | None] = ContextVar("recagent_request_id", default=None)
log = logging.getLogger("recagent.http")


def _stamp(record: logging.LogRecord) -> bool:
    """Give every record the request id of the request being served when it was logged."""
    if getattr(record, "request_id", None) is None:
        record.request_id = request_id.get()
    return True


log.addFilter(_stamp)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...fields}``; fields come from
    ``extra={"fields": {...}}``; an exception's traceback goes in ``"error"``, never to a client."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": round(record.created, 3) if record.created else round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            data["request_id"] = rid
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", stream=None) -> None:
    """JSON lines on stderr for recagent's and uvicorn's loggers (uvicorn's access log is
    replaced by ours, which has the request id and the route)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("recagent", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
