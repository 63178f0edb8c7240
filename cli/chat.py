"""``recagent chat``: a conversation in the terminal, or a script of lines read one per turn.

The chat's logic is :class:`recagent.app.chat.Chat`; this module only reads lines, shows a
turn while it runs (the step in progress, then the picked items with their explanations as
the LLM writes them) and renders what each line produced.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table

from recagent.catalog.errors import RecAgentError
from recagent.cli._agent_view import items_table, step, trace_table, warm_up, why_cell
from recagent.cli._common import (
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
    short,
    user_errors,
)

PROMPT = "you> "
WHY_CHARS = 150


@app.command()
def chat(
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id (default: a new user with no history).")] = None,
    data: DataOpt = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    rerank: Annotated[str, typer.Option(help="retriever, cooccurrence, llm or fusion.")] = "retriever",
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many items per answer.")] = 5,
    script: Annotated[Path | None, typer.Option(
        "--script", help="Read the lines from FILE, one turn each ('#' lines are comments), "
        "then exit. Piped stdin works the same way.", dir_okay=False)] = None,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Chat with the agent: ask, refine with /filter, /like, /dislike, /more; /help lists all."""
    from recagent.app.chat import Chat

    with user_errors():
        lines = _script_lines(script) if script is not None else None
        assistant = make_assistant(data, llm, llm_url, rerank, k, encoder, chroma_url)
        with step("Loading the dataset..."):
            conversation = Chat(assistant, user)
        warm_up(assistant)
    console = out()
    if lines is None and not sys.stdin.isatty():
        lines = sys.stdin
    _render(console, [conversation.greeting()])
    if lines is not None:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            console.print(f"[bold cyan]{PROMPT}[/]{safe(line)}", highlight=False)
            if not _run(console, conversation, line):
                break
        return
    _interactive(console, conversation)


def _script_lines(path: Path) -> list[str]:
    from recagent.catalog.errors import RecAgentError

    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RecAgentError(f"cannot read the script {path}: {exc}") from None


def _interactive(console: Console, conversation) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:  # pragma: no cover - not on every platform
        pass
    prompt = PROMPT
    if console.color_system is not None:  # \001 \002 tell readline the codes take no width
        prompt = f"\001\x1b[1;36m\002{PROMPT}\001\x1b[0m\002"
    while True:
        try:
            line = input(prompt)
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not _run(console, conversation, line):
            return


def _run(console: Console, conversation, line: str) -> bool:
    """Handle one line and show what it produced; False once the user asked to quit."""
    try:
        check_message(line, blank_ok=True)
    except RecAgentError as exc:
        console.print(f"[bold red]error:[/] {safe(exc)}", highlight=False, soft_wrap=True)
        return True
    view = _LiveTurn(console)
    try:
        outputs = conversation.handle(line, on_event=view)
    except KeyboardInterrupt:
        view.close()
        console.print("[yellow]interrupted[/]")
        return True
    view.close()
    return _render(console, outputs)


class _LiveTurn:
    """A turn while it runs, on a terminal: the step in progress and the seconds so far, then
    the picked items with their explanations as they are written. Transient: the final
    answer replaces it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self.started = time.perf_counter()
        self.spinner = Spinner("dots")
        self.status = "thinking"
        self.rows: dict[int, list] = {}  # rank -> [ItemFacts, why text]

    def __call__(self, event) -> None:
        from recagent.agent.events import Explained, Picked, ProseDelta
        from recagent.agent.turn import ToolCall

        if not self.console.is_terminal:
            return
        if isinstance(event, ToolCall):
            if not self.rows:  # once items are picked, the status follows the explanations
                self.status = f"{event.tool} done"
        elif isinstance(event, Picked):
            self.rows = {n: [item, ""] for n, item in enumerate(event.items, 1)}
            self.status = "explaining #1"
        elif isinstance(event, ProseDelta) and event.rank in self.rows:
            self.rows[event.rank][1] += event.text
            self.status = f"writing why #{event.rank}"
        elif isinstance(event, Explained) and event.rank in self.rows:
            self.rows[event.rank][1] = event.explanation.text  # replaces prose that failed the check
            self.status = f"explaining #{event.rank + 1}" if event.rank < len(self.rows) else "done"
        if self.live is None:
            self.live = Live(self._view(), console=self.console, transient=True,
                             refresh_per_second=12)
            self.live.start()
        else:
            self.live.update(self._view(), refresh=True)

    def __rich__(self) -> Spinner:
        seconds = time.perf_counter() - self.started
        self.spinner.update(text=f"{safe(self.status)} [dim]{seconds:.1f} s[/]")
        return self.spinner

    def _view(self):
        if not self.rows:
            return self
        return Group(self, items_table((n, item, safe(why)) for n, (item, why) in self.rows.items()))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _render(console: Console, outputs) -> bool:
    from recagent.agent.turn import AgentAnswer
    from recagent.app import chat as c

    for o in outputs:
        if isinstance(o, c.Quit):
            console.print("Bye.")
            return False
        if isinstance(o, c.Notice):
            style = {"error": "[bold red]error:[/] ", "ok": "[green]✓[/] "}.get(o.kind, "")
            console.print(style + safe(o.text), highlight=False, soft_wrap=True)
        elif isinstance(o, AgentAnswer):
            console.print(safe(o.text.strip()), highlight=False, soft_wrap=True)
            if o.recommendations:
                console.print(items_table((r.rank, r.item, _short_why(r)) for r in o.recommendations))
        elif isinstance(o, c.Why):
            _print_why(console, o.recommendation)
        elif isinstance(o, c.HistoryView):
            _print_history(console, o)
        elif isinstance(o, c.TraceView):
            console.print(trace_table(o.calls))
        elif isinstance(o, c.HelpView):
            table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
            for usage, what in o.commands:
                table.add_row(f"[bold]{safe(usage)}[/]", safe(what))
            console.print("Type what you are looking for (\"running shoes under $60\", \"I just "
                          "bought a DSLR\"), or a command:", highlight=False)
            console.print(table)
    return True


def _short_why(r) -> str:
    """One line of why for the table (``/why N`` shows all): the checked LLM sentence, or
    the closest history item and what the pick shares with it, from the evidence."""
    ev = r.evidence
    if r.explanation.source == "llm" or not ev.related:
        return why_cell(r.explanation, WHY_CHARS, f"(/why {r.rank})")
    why = f'Close to your "{short(ev.related[0].title, 60)}"'
    if ev.shared:
        why += "; same " + ", ".join(v if k == "category" else f"{k} {v}" for k, v in ev.shared.items())
    return safe(short(why, WHY_CHARS))


def _print_why(console: Console, r) -> None:
    item, ev, ex = r.item, r.evidence, r.explanation
    price = f" · ${item.price:,.2f}" if item.price is not None else ""
    brand = f" · {item.brand}" if item.brand else ""
    console.print(f"[bold]#{r.rank} {safe(item.title)}[/] [dim]({safe(item.item_id)} · "
                  f"{safe(item.category)}{safe(brand)}{price})[/]", highlight=False, soft_wrap=True)
    source = ("from the evidence" if ex.source != "llm" else
              "written by the LLM, cut to the part that passed the check" if ex.trimmed else
              "written by the LLM, checked against the evidence")
    console.print(f"  Why: {safe(ex.text)} [dim]({source})[/]", highlight=False, soft_wrap=True)
    if ex.problems:
        console.print(f"  [dim]The LLM's sentence was rejected: {safe('; '.join(ex.problems))}[/]",
                      highlight=False, soft_wrap=True)
    if ev.related:
        console.print("  Closest in your history:")
        for e in ev.related:
            console.print(f"    • {safe(e.title)} [dim]({safe(e.item_id)}, similarity {e.similarity:.2f})[/]",
                          highlight=False)
    if ev.shared:
        shared = ", ".join(f"{k} {v}" for k, v in ev.shared.items())
        console.print(f"  Shares: {safe(shared)}", highlight=False)
    if ev.satisfies:
        console.print(f"  Meets: {safe(', '.join(ev.satisfies))}", highlight=False)
    scores = ", ".join(f"{k} {v:.3f}" for k, v in r.scores.items())
    console.print(f"  Scores: {safe(scores)}", highlight=False)


def _print_history(console: Console, view, limit: int = 15) -> None:
    if not view.entries:
        console.print("Your history is empty. Tell me what you have (\"I just bought a DSLR\") "
                      "or /like an item.", highlight=False)
    else:
        table = Table(title=f"History ({len(view.entries)} items, newest first)")
        for col, justify in (("#", "right"), ("Item", "left"), ("Event", "left")):
            table.add_column(col, justify=justify)
        for e in view.entries[:limit]:
            event = safe(e.event or "") + (" [green](this chat)[/]" if e.added_in_chat else "")
            table.add_row(str(e.number), f"{safe(short(e.title, 60), one_line=True)} "
                          f"[dim]{safe(e.item_id)}[/]", event)
        console.print(table)
        if len(view.entries) > limit:
            console.print(f"  … and {len(view.entries) - limit} earlier")
    for label, ids in (("Liked", view.liked), ("Disliked", view.disliked)):
        if ids:
            console.print(f"{label}: {safe(', '.join(ids))}", highlight=False)
    console.print(f"Filters: {safe(', '.join(view.constraints.describe()) or 'none')}",
                  highlight=False)
    console.print("[dim]/forget N drops entry N; /reset starts over.[/]")
