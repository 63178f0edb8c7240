"""A real PostgreSQL for the store tests: ``RECAGENT_TEST_PG_URL`` (``.ci/postgres`` starts
Debian's server and prints it), else the URL ``.ci/postgres`` uses by default.

Without a reachable server the Postgres cases skip and say how to start one; with
``RECAGENT_REQUIRE_PG=1`` (CI) they fail instead, so CI cannot silently skip them.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_URL = "postgresql+psycopg://recagent:recagent@127.0.0.1:54329/recagent_test"


def postgres_url() -> str:
    """A reachable, empty (tables dropped) Postgres database URL, or a skip."""
    url = os.environ.get("RECAGENT_TEST_PG_URL") or DEFAULT_URL
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import create_engine

        from recagent.server.store import metadata

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        metadata.drop_all(engine)
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        reason = (f"no PostgreSQL at {url.split('@')[-1]} ({type(exc).__name__}): run "
                  "`eval \"$(.ci/postgres)\"` (Debian's postgresql) or set RECAGENT_TEST_PG_URL")
        if os.environ.get("RECAGENT_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url
