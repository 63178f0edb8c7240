"""``recagent ask``: one agent turn, rendered as a table (or JSON) with its tool trace."""

from __future__ import annotations

from typing import Annotated

import typer

from recagent.app.answer_json import answer_json
from recagent.cli._agent_view import recommendations_table, step, trace_table, warm_up
from recagent.cli._common import (
    AgentOpt,
    ChromaOpt,
    DataOpt,
    EncoderOpt,
    LlmOpt,
    LlmUrlOpt,
    app,
    check_message,
    make_assistant,
    out,
    safe,
    user_errors,
    write_json,
)


@app.command()
def ask(
    message: Annotated[str | None, typer.Argument(
        help='What the user says, e.g. "running shoes under $60"; leave it out for plain '
             "recommendations from the user's history. A blank message is refused.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id (default: a new user).")] = None,
    data: DataOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many items.")] = 5,
    rerank: Annotated[str, typer.Option(help="retriever, cooccurrence, llm or fusion.")] = "retriever",
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    agent: AgentOpt = None,
    show_trace: Annotated[bool, typer.Option("--trace", help="Show the tool calls.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """One agent turn: parse the request, retrieve, filter, re-rank, explain."""
    with user_errors():
        if message is not None:
            check_message(message)
        assistant = make_assistant(data, llm, llm_url, rerank, k, encoder, chroma_url, agent)
        with step("Loading the dataset..."):
            session = assistant.session(user)
        warm_up(assistant)
        answer = assistant.agent.turn(session, message or "")
    if as_json:
        write_json(answer_json(answer, answer.session))
        return
    console = out()
    console.print(safe(answer.text), highlight=False, soft_wrap=True)
    if answer.recommendations:
        console.print(recommendations_table(answer.recommendations))
    if show_trace:
        console.print(trace_table(answer.trace))
