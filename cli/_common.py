"""What every command shares: the typer app, consoles, common options and error handling.

Text from data or users reaches the terminal through :func:`safe` (controls, bidi and
invisible characters made visible by ``recagent.catalog.safe_text``, then Rich markup
escaped), JSON through :func:`write_json`; and the consoles themselves replace any control
character a call site let through (:class:`SafeConsole`), so Rich never prints one raw.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.catalog.safe_text import json_visible, visible

__all__ = [
    "AgentOpt",
    "ChromaOpt",
    "DataOpt",
    "EncoderOpt",
    "LlmOpt",
    "LlmUrlOpt",
    "SafeConsole",
    "app",
    "err",
    "make_assistant",
    "make_runtime",
    "out",
    "safe",
    "short",
    "user_errors",
    "write_json",
]

app = typer.Typer(
    name="recagent",
    help="Offline-first recommendation agent: retrieval over a Chroma index, evaluation, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def safe(value: object, *, one_line: bool = False) -> str:
    """Data or user text as Rich markup that prints it literally: controls, bidi and invisible
    characters made visible, then ``[`` escaped (``[/x]`` is text, not a closing tag)."""
    return escape(visible(value, one_line=one_line))


class SafeConsole(Console):
    """A console that makes any control, bidi or invisible character in its text visible just
    before writing (a backstop for :func:`safe`; Rich's own escape codes come from styles and
    control segments, which pass unchanged)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            seg if seg.control else Segment(visible(seg.text), seg.style) for seg in buffer)


def out() -> Console:
    return SafeConsole(soft_wrap=False)


def err() -> Console:
    return SafeConsole(stderr=True)


def check_message(message: str, *, blank_ok: bool = False) -> None:
    """What a user says must be non-blank and within the HTTP API's limit (``MAX_MESSAGE``)."""
    from recagent.server.schemas import MAX_MESSAGE

    if not blank_ok and not message.strip():
        raise RecAgentError('give a message, e.g. recagent ask "running shoes under $60"')
    if len(message) > MAX_MESSAGE:
        raise RecAgentError(f"the message is {len(message):,} characters; at most "
                            f"{MAX_MESSAGE:,} are read")


def write_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout, with no character a terminal would act on."""
    sys.stdout.write(json_visible(json.dumps(payload, indent=2, ensure_ascii=False)) + "\n")


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
        err().print(f"[bold red]error:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="instruct (default: Qwen2.5-Coder-0.5B-Instruct on the CPU, constrained decoding), embedded (Gemma-3 270M base on the CPU), vllm or none.")
]
LlmUrlOpt = Annotated[
    str | None, typer.Option("--llm-url", help="vLLM server base URL, e.g. http://127.0.0.1:8000/v1.")
]


AgentOpt = Annotated[
    str | None, typer.Option("--agent", help="Who drives a turn: plan (the fixed plan), plan-first "
                             "(one constrained LLM call plans the searches; needs structured "
                             "output), tools (the LLM calls the tools; needs a chat server) or auto "
                             "(tools, else plan-first, for a model that calls tools).")
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
