"""Data commands: build the index, export or validate a dataset, recommend for a user."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recagent.app.answer_json import recommendations_json
from recagent.cli._common import (
    ChromaOpt,
    DataOpt,
    EncoderOpt,
    app,
    err,
    make_runtime,
    out,
    safe,
    short,
    user_errors,
    write_json,
)
from recagent.retrieval.registry import RETRIEVERS


@app.command()
def index(
    data: DataOpt = None,
    encoder: Annotated[Path | None, typer.Option("--encoder", help="sentence-transformers model "
                       "dir (default: MiniLM), or a seqrec checkpoint folder from `recagent "
                       "train-retriever`: its item vectors then go to their own collection.")] = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Build or update the Chroma index of item embeddings (incremental)."""
    from recagent.retrieval.seq_retriever import is_seqrec_checkpoint

    if encoder is not None and is_seqrec_checkpoint(encoder):
        with user_errors():
            rt = make_runtime(data, None, chroma_url)
            stats = RETRIEVERS.create("seqrec", rt.context(encoder)).prepare(show_progress=True)
        out().print(
            f"[green]index[/] {safe(stats.collection)}: {stats.total} items "
            f"({stats.encoded} written, {stats.unchanged} unchanged{_refreshed(stats)}, {stats.deleted} removed) "
            f"in {stats.seconds:.1f}s  [dim]dataset {safe(rt.dataset.name)}, seqrec {safe(encoder)}[/]",
            soft_wrap=True,
        )
        return
    with user_errors():
        rt = make_runtime(data, encoder, chroma_url)
        with err().status(f"Loading dataset and encoder {safe(rt.encoder.name)}..."):
            dataset = rt.dataset
            _ = rt.encoder.model
        stats = rt.ensure_index(show_progress=True)
        out().print(
            f"[green]index[/] {safe(stats.collection)}: {stats.total} items "
            f"({stats.encoded} encoded, {stats.unchanged} unchanged{_refreshed(stats)}, {stats.deleted} removed) "
            f"in {stats.seconds:.1f}s  [dim]dataset {safe(dataset.name)}[/]",
            soft_wrap=True,
        )


def _refreshed(stats) -> str:
    """", N metadata refreshed" when an index built by an earlier version had its metadata
    (not its vectors) brought up to date."""
    return f", {stats.refreshed} metadata refreshed" if stats.refreshed else ""


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write items.jsonl, interactions.csv, dataset.json.")],
    data: DataOpt = None,
) -> None:
    """Write a dataset (default: the demo shop) in the generic format users bring data in."""
    from recagent.catalog.generic import save_generic

    with user_errors():
        dataset = make_runtime(data).dataset
        save_generic(dataset, out_dir)
    out().print(
        f"wrote {safe(dataset.name)}: {len(dataset.items)} items, {len(dataset.interactions)} "
        f"interactions of {len(dataset.histories)} users to {safe(out_dir)}",
        soft_wrap=True,
    )


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="Dataset folder: items.jsonl + interactions.csv "
                      "(the generic format), MovieLens 100K or RecBole atomic files.")],
) -> None:
    """Check a dataset folder: report the first malformed line (exit 1), or what it holds."""
    from recagent.catalog.load import detect_format, load_dataset
    from recagent.catalog.summary import summarize
    from recagent.protocol.split import MIN_HISTORY

    with user_errors():
        fmt = detect_format(folder)
        with err().status(f"Reading {safe(folder)}..."):
            dataset = load_dataset(folder)
    summary = summarize(dataset, min_history=MIN_HISTORY)
    console = out()
    console.print(
        f"[green]ok[/] {safe(summary.name)} ({fmt} format): {summary.items:,} items, "
        f"{summary.users:,} users, {summary.interactions:,} interactions",
        highlight=False, soft_wrap=True,
    )
    fields = ", ".join(f"{name} {share:.0%}" for name, share in summary.coverage.items())
    console.print(f"items with: {fields}", highlight=False, soft_wrap=True)
    for note in summary.notes:
        console.print(f"note: {safe(note)}", highlight=False, soft_wrap=True)


@app.command()
def recommend(
    user: Annotated[str, typer.Option("--user", "-u", help="User id in the dataset.")],
    data: DataOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=500, help="How many items.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    retriever: Annotated[str, typer.Option(help="; ".join(
        f"{n}: {RETRIEVERS.help(n)}" for n in RETRIEVERS.names(serves=True)) + ".")] = "auto",
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Recommend items for a user from their history, with the evidence for each."""
    with user_errors():
        rt = make_runtime(data, encoder, chroma_url)
        with err().status("Loading dataset and model..."):
            history = rt.dataset.history(user)
            model = rt.recommender(retriever)
        model.prepare(show_progress=True)
        recs = model.recommend(history, k)
        user_id = rt.dataset.resolve_user(user)
    if as_json:
        payload = recommendations_json(user_id, rt.dataset.name, model.name, recs)
        write_json(payload)
        return
    _print_history(rt.dataset, history)
    out().print(_recommendations_table(rt.dataset, recs, f"user {user_id} ({rt.dataset.name}, "
                                                         f"{model.name})"))


def _recommendations_table(dataset, recs, title: str) -> Table:
    """Two lines an item at 80 columns (the title; id, category and price) and the closest
    history item; on a terminal of 120 columns or more, the score and every evidence item too."""
    wide = out().width >= 120
    table = Table(title=f"Recommendations for {safe(title)}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("Item", ratio=3)
    table.add_column("Because you have", ratio=2)
    for n, r in enumerate(recs, 1):
        item = dataset.items[r.item_id]
        facts = [r.item_id, short(item.category[-1], 18) if item.category else "",
                 f"${item.price:,.2f}" if item.price is not None else "",
                 f"score {r.score:.3f}" if wide else ""]
        evidence = r.evidence if wide else r.evidence[:1]
        why = "\n".join(f"{safe(short(e.title, 50 if wide else 24), one_line=True)} "
                        f"[dim]{e.similarity:.2f}[/]" for e in evidence)
        if len(r.evidence) > len(evidence):
            why += f"\n[dim]+{len(r.evidence) - len(evidence)} more[/]"
        table.add_row(
            str(n),
            f"{safe(short(r.title, 70 if wide else 38), one_line=True)}\n"
            f"[dim]{safe(' · '.join(f for f in facts if f), one_line=True)}[/]",
            why or safe(r.explanation),
        )
    return table


def _print_history(dataset, history, n: int = 5) -> None:
    shown = list(reversed(history))[:n]
    lines = [f"  • {safe(short(dataset.items[x.item_id].title, 100))}" for x in shown]
    more = f"  … and {len(history) - n} earlier" if len(history) > n else ""
    console = out()
    console.print(f"[bold]Recent history[/] ({len(history)} items):", highlight=False, soft_wrap=True)
    console.print("\n".join(lines + ([more] if more else [])) or "  (none)", highlight=False,
              soft_wrap=True)
