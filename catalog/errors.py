"""Error hierarchy shared by every layer of recagent.

Each error carries one clear message; the CLI and HTTP edges turn them into a single
line for the user instead of a stack trace. Programming errors are not wrapped.
"""

from __future__ import annotations

from pathlib import Path


class RecAgentError(Exception):
    """Base class of every error recagent reports to a user."""


class DataError(RecAgentError):
    """A data file is missing or malformed.

    The message names the file, the line (1-based) when known, and the reason.
    """

    def __init__(self, reason: str, path: str | Path | None = None, line: int | None = None):
        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(f"{where}{reason}")


class UnknownUserError(RecAgentError):
    """A user id that the dataset does not have."""


class UnknownItemError(RecAgentError):
    """An item id that the catalog does not have."""


class IndexUnavailable(RecAgentError):
    """The vector index is missing, stale, or its server cannot be reached."""


class ToolError(RecAgentError):
    """A tool could not do what it was asked (bad arguments, unknown item, ...).

    The agent hands the message back to the LLM as an observation it can act on.
    """
