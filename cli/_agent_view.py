"""How an agent turn looks in the terminal, and the warm-up before it (``ask`` and ``chat``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from recagent.cli._common import err, safe, short

__all__ = ["item_cell", "items_table", "price_cell", "recommendations_table", "step", "trace_table", "warm_up",
           "why_cell"]


def item_cell(item) -> str:
    """Title, then id and category path, dimmed (``item`` is an ``ItemFacts``)."""
    return (f"{safe(short(item.title, 60), one_line=True)}\n"
            f"[dim]{safe(item.item_id)} · {safe(item.category, one_line=True)}[/]")


def price_cell(item) -> str:
    return f"${item.price:,.2f}" if item.price is not None else ""


def why_cell(explanation, limit: int | None = None, more: str = "") -> str:
    """The explanation, cut to ``limit`` characters (with the hint ``more``) when given."""
    text = explanation.text
    cut = limit is not None and len(text) > limit
    why = safe(short(text, limit) if cut else text)
    if explanation.source == "llm":
        why += " [dim](LLM, checked)[/]"
    return why + (f" [dim]{safe(more)}[/]" if cut and more else "")


def items_table(rows) -> Table:
    """A table of ``(rank, ItemFacts, why markup)`` rows."""
    table = Table(show_lines=True)
    for col, justify in (("#", "right"), ("Item", "left"), ("Price", "right"), ("Why", "left")):
        table.add_column(col, justify=justify)
    for rank, item, why in rows:
        table.add_row(str(rank), item_cell(item), price_cell(item), why)
    return table


def recommendations_table(recommendations) -> Table:
    return items_table((r.rank, r.item, why_cell(r.explanation)) for r in recommendations)


def trace_table(trace) -> Table:
    table = Table(title="Tool calls")
    for col in ("tool", "arguments", "result", "ms"):
        table.add_column(col, justify="right" if col == "ms" else "left")
    for call in trace:
        args = ", ".join(f"{k}={v}" for k, v in call.arguments.items())
        result = f"[red]{safe(call.error)}[/]" if call.error else safe(call.summary)
        table.add_row(safe(call.tool), safe(short(args, 70), one_line=True), result, f"{call.ms:.1f}")
    return table


@contextmanager
def step(message: str, console: Console | None = None, *, first_time: bool = False) -> Iterator[None]:
    """A spinner with ``message`` while the block runs, on a terminal. Elsewhere (a pipe, a
    log) only ``first_time`` work, which takes long once, prints ``message`` as a line."""
    console = console or err()
    if console.is_terminal:
        with console.status(message):
            yield
        return
    if first_time:
        console.print(safe(message), highlight=False)
    yield


def warm_up(assistant) -> None:
    """Load the encoder, build or check the indexes, and load the LLM (converting the
    embedded one on first use), each with visible progress, so a turn's time is the turn's."""
    rt = assistant.runtime
    console = err()
    with step("Loading the encoder...", console):
        _ = rt.encoder.model
    assistant.prepare(show_progress=True)
    if rt.settings.llm == "none":
        return
    from recagent.llm.embedded import CHECKPOINT_NAME, EmbeddedLLM

    llm = assistant.llm
    if isinstance(llm, EmbeddedLLM):
        first = not (llm.models_dir / CHECKPOINT_NAME / "config.json").is_file()
        message = ("Converting the embedded Gemma-3 270M once (30-80 s, 1.1 GB; later starts "
                   "take seconds)..." if first else "Loading the embedded LLM (Gemma-3 270M)...")
        with step(message, console, first_time=first):
            _ = llm.model
