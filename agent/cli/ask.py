"""``recagent ask``: one agent turn, rendered as a table (or JSON) with its tool trace."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recagent.agent.answer_json import answer_json
from recagent.agent.cli._common import (
    ChromaOpt,
    DataOpt,
    EncoderOpt,
    LlmOpt,
    LlmUrlOpt,
    app,
    err,
    make_assistant,
    out,
    short,
    user_errors,
)


@app.command()
def ask(
    message: Annotated[str, typer.Argument(help='What the user says, e.g. "running shoes under $60".')] = "",
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id (default: a new user).")] = None,
    data: DataOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many items.")] = 5,
    rerank: Annotated[str, typer.Option(help="retriever, cooccurrence, llm or fusion.")] = "retriever",
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    show_trace: Annotated[bool, typer.Option("--trace", help="Show the tool calls.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """One agent turn: parse the request, retrieve, filter, re-rank, explain."""
    with user_errors():
        assistant = make_assistant(data, llm, llm_url, rerank, k, encoder, chroma_url)
        rt = assistant.runtime
        with err().status("Loading dataset and encoder..."):
            session = assistant.session(user)
            _ = rt.encoder.model
        assistant.prepare(show_progress=True)
        if rt.settings.llm != "none":
            with err().status(f"Loading the LLM ({rt.settings.llm})..."):
                _load_llm(assistant)
        answer = assistant.agent.turn(session, message)
    if as_json:
        sys.stdout.write(json.dumps(answer_json(answer, session), indent=2, ensure_ascii=False) + "\n")
        return
    console = out()
    console.print(escape(answer.text), highlight=False, soft_wrap=True)
    table = Table(show_lines=True)
    for col, justify in (("#", "right"), ("Item", "left"), ("Price", "right"), ("Why", "left")):
        table.add_column(col, justify=justify)
    for r in answer.recommendations:
        why = escape(r.explanation.text)
        if r.explanation.source == "llm":
            why += " [dim](LLM, checked)[/]"
        table.add_row(
            str(r.rank),
            f"{escape(short(r.item.title, 60))}\n[dim]{r.item.item_id} · {escape(r.item.category)}[/]",
            f"${r.item.price:,.2f}" if r.item.price is not None else "",
            why,
        )
    if answer.recommendations:
        console.print(table)
    if show_trace:
        console.print(_trace_table(answer.trace))


def _load_llm(assistant) -> None:
    """Load (and on first use convert) the LLM up front, so the turn's timing is the turn's."""
    from recagent.agent.embedded_llm import EmbeddedLLM

    if isinstance(assistant.llm, EmbeddedLLM):
        _ = assistant.llm.model


def _trace_table(trace) -> Table:
    table = Table(title="Tool calls")
    for col in ("tool", "arguments", "result", "ms"):
        table.add_column(col, justify="right" if col == "ms" else "left")
    for call in trace:
        args = ", ".join(f"{k}={v}" for k, v in call.arguments.items())
        result = f"[red]{escape(call.error)}[/]" if call.error else escape(call.summary)
        table.add_row(call.tool, escape(short(args, 70)), result, f"{call.ms:.1f}")
    return table
