"""``recagent serve``: the shopping-assistant HTTP backend (FastAPI on uvicorn).

Everything loads BEFORE the server accepts a connection, with progress on the terminal: the
dataset, the encoder, the indexes (built or brought up to date), then the LLM; so ``/readyz``
never says ready while a model is still loading. Logs are JSON lines on stderr.

Without API keys (``--api-keys`` / ``RECAGENT_API_KEYS_FILE``) the server runs in no-auth
mode and refuses to bind anything but a loopback address; ``recagent api-key`` makes a key.
See docs/security.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.cli._common import (
    ChromaOpt,
    DataOpt,
    EncoderOpt,
    LlmOpt,
    LlmUrlOpt,
    app,
    err,
    user_errors,
)
from recagent.server.guard import is_loopback


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    data: DataOpt = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    db_url: Annotated[str | None, typer.Option(
        "--db-url", help="SQLAlchemy URL of the session database (default: SQLite file "
        "$RECAGENT_HOME/recagent.db; e.g. postgresql+psycopg://user:pw@host/db).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (each loads "
                                         "the models; they share the index and the database).")] = 1,
    compute_slots: Annotated[int, typer.Option(min=1, max=64, help="Requests that run models "
                             "at once per process; the others queue in arrival order.")] = 1,
    prose_queue_limit: Annotated[int, typer.Option(help="A turn that starts while this many "
                                 "turns wait answers without LLM prose (explanations from the "
                                 "evidence, flagged degraded); 0: never.")] = 2,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
    api_keys: Annotated[Path | None, typer.Option(
        "--api-keys", help="TOML file of API keys (default: $RECAGENT_API_KEYS_FILE; without "
        "one the server runs without auth, on loopback only).")] = None,
) -> None:
    """Serve the shopping assistant over HTTP: the /v1 API, /docs, and a chat page at /."""
    import uvicorn

    from recagent.app.assistant import Assistant
    from recagent.app.runtime import Runtime
    from recagent.llm.base import BACKENDS
    from recagent.server.app import create_app, one_blas_thread
    from recagent.server.logs import configure_logging

    one_blas_thread()
    with user_errors():
        settings = Settings.from_env().override(
            data=data, encoder=encoder, chroma_url=chroma_url, llm=llm, llm_url=llm_url,
            db_url=db_url, api_keys_file=api_keys,
        )
        settings = _bind_rules(settings, host)
        if settings.llm not in BACKENDS:
            raise RecAgentError(f"--llm must be one of {', '.join(BACKENDS)}, not {settings.llm!r}")
        assistant = Assistant(Runtime(settings))
        application = create_app(assistant, compute_slots=compute_slots, prepare=False,
                                 prose_queue_limit=prose_queue_limit or None)
        console = err()
        with console.status("Loading dataset and encoder..."):
            _ = assistant.runtime.dataset
            _ = assistant.runtime.encoder.model
        assistant.prepare(show_progress=True)
        with console.status(f"Loading the LLM ({settings.llm})..."):
            application.state.readiness.prepare()
        if application.state.readiness.llm_problem:
            console.print(f"[yellow]LLM unavailable, answers will be flagged degraded:[/] "
                          f"{application.state.readiness.llm_problem}", soft_wrap=True)
        database = settings.database_url
        shown_db = database.split("@")[-1] if "@" in database else database  # no password
        console.print(f"Serving {assistant.runtime.dataset.name} on http://{host}:{port} "
                      f"(chat page /, API docs /docs, database {shown_db})", soft_wrap=True)
    configure_logging(log_level.upper())
    if workers == 1:
        uvicorn.run(application, host=host, port=port, log_config=None, access_log=False)
        return
    # Each worker builds its own app from the same settings; the index and the LLM checkpoint
    # are ready on disk now, so their start-up is loading only.
    os.environ.update(settings.to_env())
    os.environ["RECAGENT_COMPUTE_SLOTS"] = str(compute_slots)
    os.environ["RECAGENT_PROSE_QUEUE_LIMIT"] = str(prose_queue_limit)
    uvicorn.run("recagent.server.app:app_from_env", factory=True, workers=workers, host=host,
                port=port, log_config=None, access_log=False)


def _bind_rules(settings: Settings, host: str) -> Settings:
    """No-auth mode binds loopback only; a public address needs keys, and the Host names
    clients use (a wildcard address cannot tell them)."""
    if is_loopback(host):
        return settings
    if settings.api_keys_file is None:
        raise RecAgentError(
            f"refusing to serve on {host!r} without authentication: no-auth mode is for "
            "loopback addresses (127.0.0.1, ::1) only. Give API keys with --api-keys or "
            "RECAGENT_API_KEYS_FILE (`recagent api-key` makes one; see docs/security.md).")
    if host in ("0.0.0.0", "::") and settings.allowed_hosts == Settings.allowed_hosts:
        raise RecAgentError(
            f"serving on {host!r} needs RECAGENT_ALLOWED_HOSTS: the host names clients use "
            "(e.g. shop.example.com); other Host headers are refused.")
    if host in ("0.0.0.0", "::") or host in settings.allowed_hosts:
        return settings
    return settings.override(allowed_hosts=(*settings.allowed_hosts, host))


@app.command("api-key")
def api_key(
    name: Annotated[str, typer.Option(help="The principal (tenant) the key stands for; "
                                      "sessions it starts belong to it.")],
    users: Annotated[str, typer.Option(help='Dataset users it may act for: "*" or ids '
                                       "separated by commas.")] = "*",
    new_users: Annotated[bool, typer.Option(help="May start sessions for new users.")] = True,
    rate_limit: Annotated[str | None, typer.Option(help='Its own rate limit, e.g. "60/minute".')] = None,
) -> None:
    """Make an API key: prints the key (once; it is stored nowhere) and the entry to append
    to the keys file, which holds only its SHA-256."""
    import json

    from recagent.server.access import check_rate, hash_key, new_key

    with user_errors():
        if rate_limit is not None:
            check_rate(rate_limit, "--rate-limit")
        ids = "*" if users.strip() == "*" else [u.strip() for u in users.split(",") if u.strip()]
        key = new_key()
        entry = ["[[keys]]", f"name = {json.dumps(name)}", f'sha256 = "{hash_key(key)}"',
                 f"users = {json.dumps(ids)}", f"new_users = {str(new_users).lower()}"]
        if rate_limit is not None:
            entry.append(f"rate_limit = {json.dumps(rate_limit)}")
    err().print("The key (give it to the client; it is not stored):", highlight=False)
    typer.echo(key)
    err().print("Append to the keys file (RECAGENT_API_KEYS_FILE):", highlight=False)
    typer.echo("\n".join(entry))


__all__ = ["api_key", "serve"]
