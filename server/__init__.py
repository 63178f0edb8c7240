"""``recagent serve``: the shopping-assistant HTTP backend (FastAPI).

:func:`create_app` builds the app; the modules, one concept each: :mod:`.app` (factory,
health, the page), :mod:`.routes` (``/v1``), :mod:`.schemas` (bodies and limits),
:mod:`.conversations` (turns and feedback on stored sessions, outages), :mod:`.store`
(SQLAlchemy persistence and per-session leases), :mod:`.streaming` (server-sent events),
:mod:`.slots` (FIFO compute slots),
:mod:`.middleware` and :mod:`.logs` (request ids, JSON logs), :mod:`.errors`.
"""

from recagent.server.app import create_app

__all__ = ["create_app"]
