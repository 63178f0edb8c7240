"""What every command shares: the typer app, consoles, common options and error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError

__all__ = [
    "AgentOpt", "ChromaOpt", "DataOpt", "EncoderOpt", "LlmOpt", "LlmUrlOpt", "app", "err", "make_assistant",
    "make_runtime", "out", "short", "user_errors",
]

app = typer.Typer(
    name="recagent",
    help="Offline-first recommendation agent: retrieval over a Chroma index, evaluation, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def out() -> Console:
    return Console(soft_wrap=False)


def err() -> Console:
    return Console(stderr=True)


DataOpt = Annotated[
    Path | None,
    typer.Option("--data", "-d", help="Dataset folder (MovieLens, RecBole atomic files or "
                 "items.jsonl + interactions.csv). Default: the built-in demo shop."),
]
EncoderOpt = Annotated[
    Path | None, typer.Option("--encoder", help="sentence-transformers model dir (default: MiniLM).")
]
ChromaOpt = Annotated[
    str | None, typer.Option("--chroma-url", help="Use a Chroma server (http://host:port).")
]


def make_runtime(data: Path | None, encoder: Path | None = None, chroma_url: str | None = None):
    from recagent.app.runtime import Runtime

    settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url)
    return Runtime(settings)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn recagent's errors into one red line and exit code 1, never a stack trace."""
    try:
        yield
    except RecAgentError as exc:
        err().print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="embedded (default: Gemma-3 270M on the CPU), instruct (Qwen2.5-Coder-0.5B-Instruct on the CPU, constrained decoding), vllm or none.")
]
LlmUrlOpt = Annotated[
    str | None, typer.Option("--llm-url", help="vLLM server base URL, e.g. http://127.0.0.1:8000/v1.")
]


AgentOpt = Annotated[
    str | None, typer.Option("--agent", help="Who drives a turn: plan (the fixed plan), tools (the "
                             "LLM calls the tools; needs --llm vllm) or auto (tools when the served "
                             "model can call them).")
]


def make_assistant(data, llm, llm_url, rerank: str, k: int, encoder=None, chroma_url=None,
                   agent: str | None = None):
    from recagent.app.assistant import Assistant
    from recagent.app.runtime import Runtime
    from recagent.tools import STRATEGIES

    if rerank not in STRATEGIES:
        raise RecAgentError(f"--rerank must be one of {', '.join(STRATEGIES)}, not {rerank!r}")
    settings = Settings.from_env().override(
        data=data, encoder=encoder, chroma_url=chroma_url, llm=llm, llm_url=llm_url, agent=agent
    )
    return Assistant(Runtime(settings), rerank=rerank, k=k)


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (tables only; JSON keeps it all)."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"
