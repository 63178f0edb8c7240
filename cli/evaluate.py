"""``recagent eval``: offline evaluation, re-ranking and cold-start reports; ``eval prompts`` (the
behavioural prompt suite) and ``eval conversation`` (simulated users) as subcommands.

``eval`` is a command group whose callback runs the ranking evaluation when no subcommand is
given, so every ``recagent eval --data ... --models ...`` works as it always did."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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
    make_runtime,
    out,
    safe,
    user_errors,
)
from recagent.evals.models import RETRIEVERS

eval_app = typer.Typer(
    help="Offline evaluation (leave-one-out by time, full ranking, Recall/NDCG/MRR@10/20/50); "
    "`eval prompts` and `eval conversation` are the agent's suites.",
    invoke_without_command=True, no_args_is_help=False,
)
app.add_typer(eval_app, name="eval")


@eval_app.callback()
def evaluate(
    ctx: typer.Context,
    data: DataOpt = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated, of: " + "; ".join(
        f"{n}: {RETRIEVERS.help(n)}" for n in RETRIEVERS.names(evaluates=True))
        + ". Default: popularity,itemknn,text; with --cold-start: "
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
                      "with these strategies (comma-separated: cooccurrence,llm,fusion, or "
                      "ranker: the tuned LLM ranker of `recagent train-ranker`) and compare "
                      "with no re-ranking.")] = None,
    rerank_top: Annotated[int, typer.Option(help="N, the candidates re-ranked per user.")] = 20,
    explain_users: Annotated[int, typer.Option(help="With --rerank: write and check explanations "
                             "of the top 3 for this many users.")] = 0,
    ranker: Annotated[Path | None, typer.Option(help="With --rerank ranker: the trained ranker "
                      "(default: $RECAGENT_HOME/models/<dataset>-ranker); served by vLLM when "
                      "--llm vllm (the adapter's served name as RECAGENT_LLM_MODEL).")] = None,
    skip_misses: Annotated[bool, typer.Option("--skip-misses", help="With --rerank: do not "
                           "re-rank users whose target is outside the top-N (their rank cannot "
                           "change: same metrics, far less LLM time).")] = False,
    sample_users: Annotated[int | None, typer.Option(min=2, help="With --rerank: a seeded random "
                            "sample of this many users (reported with the 95% interval of the "
                            "NDCG@10 gain).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample-users.")] = 0,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Offline evaluation: leave-one-out by time, full ranking, Recall/NDCG/MRR@10/20/50.

    Without a subcommand this runs the ranking evaluation; `recagent eval prompts` and
    `recagent eval conversation` run the agent's suites."""
    if ctx.invoked_subcommand is not None:
        return
    from recagent.evals.models import harness_model
    from recagent.evals.report import build_report, write_report
    from recagent.protocol.ranking import evaluate_scorer
    from recagent.protocol.split import leave_one_out

    if cold_start:
        _evaluate_cold_start(data, out_path, models, cold_fraction, cold_seed, max_minutes,
                             device, encoder, chroma_url)
        return
    if rerank:
        _evaluate_rerank(data, out_path, (models or "itemknn").split(",")[0].strip(), rerank,
                         rerank_top, max_users, explain_users, llm, llm_url, encoder, chroma_url,
                         ranker, device, skip_misses, sample_users, seed)
        return
    names = [m.strip() for m in (models or "popularity,itemknn,text").split(",") if m.strip()]
    with user_errors():
        if stage not in ("test", "valid"):
            raise RecAgentError(f"--stage must be test or valid, not {stage!r}")
        rt = make_runtime(data, encoder, chroma_url)
        with err().status("Loading dataset..."):
            split = leave_one_out(rt.dataset)
        if not split.users:
            raise RecAgentError(f"dataset {rt.dataset.name!r} has no user with 3+ interactions")
        results = []
        for name in names:
            scorer = harness_model(rt, name)
            results.append(
                evaluate_scorer(scorer, split, stage=stage, max_users=max_users, show_progress=True)
            )
        n_users = min(len(split.users), max_users or len(split.users))
        report = build_report(split, results, stage=stage, n_users=n_users)
    out().print(_report_table(report))
    if out_path is not None:
        write_report(report, out_path)
        out().print(f"report written to {safe(out_path)}", soft_wrap=True)


def _evaluate_rerank(data, out_path, base, strategies, top_n, max_users, explain_users, llm,
                     llm_url, encoder, chroma_url, ranker_dir=None, device="cpu",
                     skip_misses=False, sample_users=None, seed=0) -> None:
    from recagent.agent.explanations import ExplanationWriter
    from recagent.app.llm_backend import make_llm
    from recagent.evals.models import harness_model
    from recagent.evals.rerank_eval import evaluate_rerank
    from recagent.protocol.split import leave_one_out
    from recagent.tools import RANKER, STRATEGIES, Explain, Rerank

    names = [x.strip() for x in strategies.split(",") if x.strip()]
    with user_errors():
        unknown = [n for n in names if n not in (*STRATEGIES, RANKER)]
        if unknown:
            raise RecAgentError(f"--rerank: unknown {unknown}; choose from "
                                f"{', '.join((*STRATEGIES, RANKER))}")
        settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url,
                                                llm=llm, llm_url=llm_url)
        from recagent.app.runtime import Runtime

        rt = Runtime(settings)
        with err().status("Loading dataset..."):
            split = leave_one_out(rt.dataset)
        model = make_llm(settings) if {"llm", "fusion"} & set(names) or explain_users else None
        noun = "movies" if "ml-" in rt.dataset.name else "items"
        tuned, ranker_meta = None, None
        if RANKER in names:
            tuned, ranker_meta = _load_ranker(settings, ranker_dir or rt.model_dir("ranker"), device)
            if ranker_meta.get("config", {}).get("top_n", top_n) < top_n:
                raise RecAgentError(f"the ranker reads {ranker_meta['config']['top_n']} candidates; "
                                    f"pass --rerank-top {ranker_meta['config']['top_n']}")
        reranker = Rerank(rt.dataset, model, cooccurrence_histories=split.train, noun=noun,
                          ranker=tuned)
        explain = writer = None
        if explain_users:
            rt.ensure_index(show_progress=True)
            explain = Explain(rt.dataset, rt.index.embeddings)
            writer = ExplanationWriter(rt.dataset, model)
        results = evaluate_rerank(
            harness_model(rt, base), split, reranker, names, top_n=top_n, max_users=max_users,
            explain=explain, writer=writer, explain_users=explain_users, show_progress=True,
            skip_misses=skip_misses, sample_users=sample_users, seed=seed,
        )
    n_users = min(len(split.users), max_users or len(split.users), sample_users or len(split.users))
    table = Table(title=f"{safe(rt.dataset.name)}: {base} top-{top_n} re-ranked ({n_users} users"
                  f"{f', seeded sample (seed {seed})' if sample_users else ''})")
    for col in ("rerank", "recall@10", "ndcg@10", "recall@20", "mrr", "ms/user", "faithful"):
        table.add_column(col, justify="left" if col == "rerank" else "right")
    for r in results:
        m = r.metrics
        faithful = "" if r.faithful_share is None else f"{r.faithful_share:.0%} of {r.explanations}"
        table.add_row(r.strategy, f"{m['recall@10']:.4f}", f"{m['ndcg@10']:.4f}",
                      f"{m['recall@20']:.4f}", f"{m['mrr']:.4f}", f"{r.ms_per_user:.1f}", faithful)
    out().print(table)
    if out_path is not None:
        payload = {
            "dataset": rt.dataset.name, "base": base, "top_n": top_n, "llm": model.name if model else None,
            "users": n_users, "sample_seed": seed if sample_users else None,
            "command": "recagent " + " ".join(sys.argv[1:]),
            "skip_misses": skip_misses,
            "results": {r.strategy: {"metrics": r.metrics, "ms_per_user": r.ms_per_user,
                                     "reranked_users": r.reranked_users,
                                     "faithful_share": r.faithful_share,
                                     "explanations": r.explanations,
                                     "ndcg@10_gain_ci95": r.ndcg10_gain_ci95} for r in results},
            "ceiling": {f"recall@{top_n}": results[0].metrics.get(f"recall@{top_n}")},
        }
        if ranker_meta is not None:
            payload["ranker"] = {k: ranker_meta.get(k) for k in (
                "base", "base_name", "candidates", "config", "train_config", "n_examples",
                "best_epoch", "epochs_run", "steps", "seconds", "valid_users", "valid_metrics",
                "valid_metrics_no_rerank", "helps_on_validation")}
            payload["ranker"]["served_by"] = tuned.name
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(payload, indent=2) + "\n")
        out().print(f"report written to {safe(out_path)}", soft_wrap=True)


def _load_ranker(settings, directory: Path, device: str):
    """The trained ranker in ``directory``: in-process, or through the vLLM server that serves
    its adapter when the LLM backend is vllm. Returns it and its ``ranker.json``."""
    from recagent.app.llm_backend import make_llm
    from recagent.llm.ranker import LetterRanker, ServedRanker, read_ranker_meta

    meta = read_ranker_meta(directory)
    with err().status(f"Loading the LLM ranker from {directory}..."):
        if settings.llm == "vllm":
            ranker = ServedRanker.from_saved(make_llm(settings), directory)
        else:
            ranker = LetterRanker.load(directory, device=device)
    return ranker, meta


def _evaluate_cold_start(data, out_path, models, fraction, seed, max_minutes, device, encoder,
                         chroma_url) -> None:
    from recagent.evals.coldstart import COLD_MODELS, run_cold_start
    from recagent.evals.report import write_report

    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(COLD_MODELS)
    with user_errors():
        if not 0 < fraction < 1:
            raise RecAgentError(f"--cold-fraction must be between 0 and 1, not {fraction}")
        rt = make_runtime(data, encoder, chroma_url)
        report = run_cold_start(rt, names, fraction=fraction, seed=seed, max_minutes=max_minutes,
                                device=device, show_progress=True)
    cols = ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "seconds"]
    table = Table(title=f"{safe(report['dataset'])}: cold start, {report['n_cold_test_cases']} test "
                  f"cases with a cold target ({report['n_cold_items']} items held out)")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in report["models"].items():
        if "recall@10" not in m:
            table.add_row(safe(name), *([""] * (len(cols) - 1)), safe(m.get("note", "")))
            continue
        table.add_row(name, *(f"{m[c]:.1f}" if c == "seconds" else f"{m[c]:.4f}" for c in cols))
    out().print(table)
    if out_path is not None:
        write_report(report, out_path)
        out().print(f"report written to {safe(out_path)}", soft_wrap=True)


def _report_table(report: dict) -> Table:
    cols = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50", "mrr",
            "precision@10", "coverage@10", "seconds"]
    table = Table(
        title=f"{safe(report['dataset'])} — {report['stage']}, {report['n_users']} users, "
        f"{report['n_items']} items, full ranking"
    )
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, m in report["models"].items():
        table.add_row(name, *(f"{m[c]:.1f}" if c == "seconds" else f"{m[c]:.4f}" for c in cols))
    return table


@eval_app.command("prompts")
def eval_prompts(
    data: DataOpt = None,
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Only the fast cases (what CI runs).")] = False,
    compare_with: Annotated[Path | None, typer.Option("--compare", help="A report written by an "
                            "earlier run: show before/after per case.")] = None,
    template: Annotated[list[str] | None, typer.Option("--template", help="NAME=FILE: render "
                        "template NAME from this YAML file instead (try a prompt change without "
                        "editing prompts/). Repeatable.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=20, help="Items per answer.")] = 3,
    write_baseline: Annotated[bool, typer.Option("--write-baseline", help="Store this run as the "
                              "baseline of its dataset and backend (evals/prompt_baseline.json).")] = False,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """The prompt suite: fixed cases through the agent with the real LLM at greedy decoding.

    Exits with status 1 when a safety check fails, a check that passed in the baseline fails,
    or the faithful share of explanations drops below the baseline's tolerance."""
    from recagent.evals.prompt_suite import (
        BASELINE,
        compare,
        load_baseline,
        record_baseline,
        run_suite,
    )

    with user_errors():
        overrides = _template_overrides(template or [])
        settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url,
                                                llm=llm, llm_url=llm_url)
        from recagent.app.runtime import Runtime

        rt = Runtime(settings)
        before = json.loads(compare_with.read_text()) if compare_with else None
        report = run_suite(rt, fast=fast, k=k, overrides=overrides,
                           progress=lambda r: err().print(
                               f"  {r.id}: {'pass' if r.passed else 'FAIL'} ({r.seconds:.1f} s)",
                               highlight=False))
        if write_baseline:
            record_baseline(report)
        baseline = load_baseline()
        report.regressions = compare(report, baseline)
    out().print(_prompt_table(report, before))
    if report.key not in baseline:
        out().print(f"[yellow]no baseline for {report.key}:[/] only the safety checks gate this "
                    "run (record one with --write-baseline)", soft_wrap=True)
    for c in [*report.cases, *report.structured]:
        for check, ok in c.checks.items():
            line = f"{c.id}: {check} failed ({c.why.get(check, '')})"
            if not ok and line not in report.regressions:
                out().print(f"[yellow]known failure[/] (failed in the baseline too): {safe(line)}",
                            highlight=False, soft_wrap=True)
    for line in report.regressions:
        out().print(f"[red]regression:[/] {safe(line)}", highlight=False, soft_wrap=True)
    rate = report.faithful_rate
    verdict = "[green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    out().print(f"{verdict}: {sum(c.passed for c in report.cases)}/{len(report.cases)} cases pass "
                f"every check; faithful explanations "
                f"{'n/a' if rate is None else f'{rate:.0%}'} "
                f"({sum(c.faithful for c in report.cases)}/{sum(c.llm_written for c in report.cases)}); "
                f"{report.seconds:.0f} s", soft_wrap=True)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        payload = report.to_dict() | {"command": "recagent " + " ".join(sys.argv[1:])}
        out_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        out().print(f"report written to {safe(out_path)}", soft_wrap=True)
    if write_baseline:
        out().print(f"baseline recorded for {report.key} in {BASELINE}", soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)


def _template_overrides(specs: list[str]) -> dict[str, Path]:
    from recagent.evals.prompt_suite import read_template_file
    from recagent.prompts import template_names

    overrides = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not Path(path).is_file():
            raise RecAgentError(f"--template must be NAME=FILE with an existing file, not {spec!r}")
        if name not in template_names():
            raise RecAgentError(f"--template: no template {name!r}; have {', '.join(template_names())}")
        read_template_file(name, Path(path))  # a malformed file is one clear error, up front
        overrides[name] = Path(path)
    return overrides


_CHECKS = ("answered", "catalog_only", "injection_blocked", "constraints_parsed",
           "constraints_respected", "explained", "reply", "parses")


def _prompt_table(report, before: dict | None) -> Table:
    table = Table(title=f"Prompt suite: {safe(report.dataset)}, LLM {safe(report.llm)}"
                  f"{' (fast)' if report.fast else ''}")
    table.add_column("case")
    for check in _CHECKS:
        table.add_column(check.replace("_", " "), justify="center")
    table.add_column("faithful", justify="right")
    if before is not None:
        table.add_column("before", justify="left")
    old = {c["id"]: c for c in (before or {}).get("cases", []) + (before or {}).get("structured", [])}
    for c in [*report.cases, *report.structured]:
        marks = [_mark(c.checks.get(check)) for check in _CHECKS]
        faithful = f"{c.faithful}/{c.llm_written}" if c.llm_written else ""
        row = [c.id, *marks, faithful]
        if before is not None:
            was = old.get(c.id)
            if was is None:
                row.append("[dim]new case[/]")
            else:
                changed = [k for k, v in c.checks.items() if was["checks"].get(k) != v]
                row.append(("pass" if was["passed"] else "[red]fail[/]")
                           + (f", faithful {was['faithful']}/{was['llm_written']}" if was["llm_written"] else "")
                           + (f"; changed: {', '.join(changed)}" if changed else ""))
        table.add_row(*row)
    return table


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("[green]✓[/]" if ok else "[bold red]✗[/]")


@eval_app.command("conversation")
def eval_conversation(
    data: DataOpt = None,
    users: Annotated[int, typer.Option(help="Held-out (test) users, a seeded sample.")] = 200,
    turns: Annotated[int, typer.Option(min=1, max=20, help="Turns per conversation.")] = 5,
    ks: Annotated[str, typer.Option("-k", help="Items per answer; one run per value.")] = "5,10",
    llm: Annotated[str, typer.Option(help="The agent's LLM: none (default here: explanations "
                   "from evidence, fast), embedded or vllm (explanations written and checked).")] = "none",
    llm_url: LlmUrlOpt = None,
    rerank: Annotated[str, typer.Option(help="retriever, cooccurrence, llm or fusion.")] = "retriever",
    sim_llm_url: Annotated[str | None, typer.Option(help="An OpenAI-compatible server with a "
                           "capable instruct model to phrase the shopper's messages (the "
                           "embedded Gemma-3 270M base model cannot). Default: rule-based.")] = None,
    sim_llm_model: Annotated[str | None, typer.Option(help="Model name on --sim-llm-url.")] = None,
    sim_llm: Annotated[str | None, typer.Option(help="instruct: the embedded instruct model "
                       "phrases the shopper's messages (instead of --sim-llm-url).")] = None,
    agent: Annotated[str, typer.Option(help="The agent: auto, plan, plan-first or tools.")] = "auto",
    react: Annotated[bool, typer.Option(help="The shopper dislikes what was shown after a miss.")] = True,
    reaction: Annotated[str, typer.Option(help='Said before the facts after a miss, e.g. "Not these."')] = "",
    seed: Annotated[int, typer.Option(help="Seed of the user sample.")] = 0,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="Write the JSON report here "
                        "(and the Markdown table next to it, .md).")] = None,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Simulated shoppers look for their held-out item: hit rate@k within the turns, hits by
    turn (turn 1 = one-shot), average turns to hit, constraints met, faithful explanations."""
    from recagent.evals.conversation import evaluate as evaluate_conversations
    from recagent.evals.conversation import markdown

    with user_errors():
        k_values = _int_list(ks, "-k")
        settings = Settings.from_env().override(data=data, encoder=encoder, chroma_url=chroma_url,
                                                llm=llm, llm_url=llm_url, agent=agent)
        from recagent.app.runtime import Runtime

        rt = Runtime(settings)
        shopper = None
        if sim_llm_url:
            from recagent.llm.vllm_client import VLLMClient

            shopper = VLLMClient(sim_llm_url, model=sim_llm_model, timeout=settings.llm_timeout)
        elif sim_llm == "instruct":
            from recagent.app.llm_backend import make_llm

            shopper = make_llm(settings.override(llm="instruct"))
        elif sim_llm is not None:
            raise RecAgentError(f"--sim-llm must be instruct, not {sim_llm!r} (or use --sim-llm-url)")
        done = {k: 0 for k in k_values}

        def progress(k: int, conv) -> None:
            done[k] += 1
            if done[k] % 25 == 0:
                err().print(f"  k={k}: {done[k]} conversations", highlight=False)

        report = evaluate_conversations(rt, n_users=users, ks=k_values, max_turns=turns,
                                        sim_llm=shopper, react=react, reaction=reaction,
                                        rerank=rerank, seed=seed, progress=progress)
    report["command"] = "recagent " + " ".join(sys.argv[1:])
    out().print(_conversation_table(report))
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        out_path.with_suffix(".md").write_text(markdown(report))
        out().print(f"report written to {safe(out_path)} and {safe(out_path.with_suffix('.md'))}", soft_wrap=True)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RecAgentError(f"{flag} must be comma-separated whole numbers, not {text!r}") from None
    if not values or min(values) < 1:
        raise RecAgentError(f"{flag} must be comma-separated whole numbers >= 1, not {text!r}")
    return values


def _conversation_table(report: dict) -> Table:
    t = report["max_turns"]
    table = Table(title=f"Conversations: {safe(report['dataset'])}, {report['users']} users, up to {t} "
                  f"turns ({report['simulator']} simulator, LLM {report['llm'] or 'none'}), "
                  f"{report['seconds']:.0f} s")
    for col in ("k", "hit rate", *(f"by turn {i}" for i in range(1, t + 1)), "avg turns",
                "constraints met", "faithful", "leaks blocked"):
        table.add_column(col, justify="right")
    for k, m in report["k"].items():
        pct = [("n/a" if x is None else f"{x:.1%}") for x in
               (m["hit_rate"], *(m["hit_by_turn"][str(i)] for i in range(1, t + 1)),
                m["constraint_satisfaction"])]
        table.add_row(k, *pct[:-1],
                      "" if m["avg_turns_to_hit"] is None else f"{m['avg_turns_to_hit']:.2f}",
                      pct[-1], "n/a" if m["faithfulness"] is None else
                      f"{m['faithfulness']:.0%} of {m['llm_explanations']}", str(m["leaks_blocked"]))
    return table


@eval_app.command("requests")
def eval_requests(
    llm: Annotated[str, typer.Option(help="instruct (default), vllm, or none (the rules alone).")] = "instruct",
    llm_url: LlmUrlOpt = None,
    datasets: Annotated[str, typer.Option(help="Comma-separated: demo, ml-100k, amazon "
                        "(default: all; ML-100K and Amazon from RECAGENT_DATA_DIR).")] = "",
    limit: Annotated[int | None, typer.Option(help="At most this many requests per dataset.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder of the reports "
                       "requests-<llm>.json/.md (default: evals/reports).")] = None,
    requests: Annotated[str, typer.Option(help="labelled (evals/requests.yaml), heldout "
                        "(evals/requests_heldout.yaml, never used to tune the rules) or a YAML file.")] = "labelled",
    tag: Annotated[str | None, typer.Option(help="Report name: requests-<tag>.json/.md "
                   "(default: the LLM).")] = None,
) -> None:
    """Request understanding on the labelled requests (evals/requests.yaml): per-field precision
    and recall, and the share of shown items that meet the request, rules vs rules+LLM."""
    import platform

    from recagent.evals import requests as request_eval

    with user_errors():
        if llm_url:
            import os

            os.environ["RECAGENT_LLM_URL"] = llm_url
        request_eval.evaluate(
            llm_name=llm, datasets=[d.strip() for d in datasets.split(",") if d.strip()] or None,
            limit=limit, out_dir=out_dir or Path(request_eval.__file__).with_name("reports"),
            command="recagent " + " ".join(sys.argv[1:]), cpu=platform.processor() or platform.machine(),
            tag=tag, request_set=requests,
            echo=lambda text: out().print(safe(text), highlight=False, soft_wrap=True))
