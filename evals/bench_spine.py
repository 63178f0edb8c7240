"""Benchmark of the retrieval spine: load -> index build -> encode -> retrieve -> evaluate.

    python -m recagent.evals.bench_spine [--datasets demo,ml-100k,amazon-scientific]
        [--data-dir ../shared/data] [--out evals/reports/bench_spine.json] [--quick]

Each dataset gets a fresh temporary RECAGENT_HOME (embedded Chroma store), so its index
build is cold. Writes a JSON report and a markdown table next to it (same stem, ``.md``).
``--quick`` (a smoke test) cuts each catalog to 300 items and every sample small.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.catalog.load import load_dataset
from recagent.catalog.model import Dataset
from recagent.evals.data import data_root
from recagent.evals.models import harness_model
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import leave_one_out
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.retriever import HistoryRetriever
from recagent.retrieval.text import item_text

DATASETS = ("demo", "ml-100k", "amazon-scientific")
MODELS = ("popularity", "itemknn", "text")
FULL = {"items": None, "encode": None, "single": 100, "batch": 256, "single_raw": 100, "eval": None}
QUICK = {"items": 300, "encode": 128, "single": 10, "batch": 32, "single_raw": 32, "eval": 100}

# (key, label, format) of the rows in the printed and markdown tables.
ROWS = [
    ("items", "items", "{:,}"), ("users", "users", "{:,}"), ("interactions", "interactions", "{:,}"),
    ("load_s", "dataset load (s)", "{:.2f}"), ("index_mb", "index on disk (MB)", "{:.1f}"),
    ("build_items_per_s", "index build, cold (items/s)", "{:.1f}"),
    ("build_s", "index build, cold (s)", "{:.1f}"),
    ("rebuild_noop_s", "re-build, nothing to do (s)", "{:.2f}"),
    ("encode_items_per_s", "encoder alone, item texts (items/s)", "{:.1f}"),
    ("recommend_qps", "recommend(), one user at a time (users/s)", "{:.1f}"),
    ("recommend_ms_median", "recommend() latency, median (ms)", "{:.1f}"),
    ("batch_encode_per_s", "history encoding, batched (histories/s)", "{:.1f}"),
    ("batch_search_qps", "Chroma search k=50, batched (queries/s)", "{:.1f}"),
    ("raw_search_single_qps", "Chroma search k=10, single (queries/s)", "{:.1f}"),
    ("raw_search_batch_qps", "Chroma search k=10, batches of 100 (queries/s)", "{:,.1f}"),
    *[row for m in MODELS for row in ((f"eval_{m}_s", f"eval {m} (s)", "{:.2f}"),
                                       (f"eval_{m}_users_per_s", f"eval {m} (users/s)", "{:,.1f}"))],
    ("eval_users", "eval users (test split)", "{:,}"),
    ("maxrss_mb", "peak RSS so far, cumulative (MB)", "{:.0f}"),
]


def _timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls of ``fn``, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _first_items(dataset: Dataset, n_items: int | None) -> Dataset:
    """``dataset`` cut to its first ``n_items`` items (and the interactions with them)."""
    if n_items is None or n_items >= len(dataset.items):
        return dataset
    keep = set(dataset.item_ids[:n_items])  # items in catalog order; the set is for lookups
    return Dataset(f"{dataset.name}-first{n_items}", list(dataset.items.values())[:n_items],
                   [x for x in dataset.interactions if x.item_id in keep],
                   has_timestamps=dataset.has_timestamps, user_aliases=dataset.user_aliases)


def _bench_index(rt: Runtime, sizes: dict) -> dict[str, float]:
    build_s, stats = _timed(rt.index.build)
    noop_s, noop = _timed(rt.index.build, repeats=3)
    texts = [item_text(i) for i in rt.dataset.items.values()][: sizes["encode"]]
    encode_s, _ = _timed(lambda: rt.encoder.encode(texts))
    return {"build_s": build_s, "build_items_per_s": _rate(stats.encoded, build_s),
            "rebuild_noop_s": noop_s,
            "rebuild_noop_encoded": noop.encoded,  # 0 unless the incremental check is broken
            "encode_items": len(texts), "encode_items_per_s": _rate(len(texts), encode_s)}


def _bench_retrieval(rt: Runtime, histories: Sequence, sizes: dict) -> dict[str, float]:
    retriever = HistoryRetriever.from_context(rt.context())  # the text spine, measured inside
    embeddings_s, _ = _timed(lambda: retriever.item_embeddings)  # once, outside the others
    single = histories[: sizes["single"]]
    latencies = [_timed(lambda h=h: retriever.recommend(h, k=10))[0] for h in single]
    batch = histories[: sizes["batch"]]
    encode_s, vectors = _timed(lambda: retriever.query_vectors(batch))
    search_s, _ = _timed(lambda: rt.index.search(vectors, 50))
    few = vectors[: sizes["single_raw"]]
    one_s, _ = _timed(lambda: [rt.index.search(v[np.newaxis], 10) for v in few], repeats=3)
    many_s, _ = _timed(lambda: rt.index.search(vectors, 10), repeats=3)
    return {"embeddings_load_s": embeddings_s, "recommend_users": len(single),
            "recommend_qps": _rate(len(single), sum(latencies)),
            "recommend_ms_median": 1000 * statistics.median(latencies),
            "batch_histories": len(batch), "batch_encode_per_s": _rate(len(batch), encode_s),
            "batch_search_qps": _rate(len(batch), search_s),
            "raw_search_single_qps": _rate(len(few), one_s),
            "raw_search_batch_qps": _rate(len(vectors), many_s)}


def _bench_eval(rt: Runtime, split: Any, sizes: dict) -> dict[str, float]:
    n_users = min(len(split.users), sizes["eval"] or len(split.users))
    out: dict[str, float] = {"eval_users": n_users}
    for name in MODELS:
        scorer = harness_model(rt, name, show_progress=False)  # "text": an index hash check
        result = evaluate_scorer(scorer, split, stage="test", max_users=sizes["eval"])
        out[f"eval_{name}_s"] = result.seconds
        out[f"eval_{name}_users_per_s"] = _rate(n_users, result.seconds)
    return out


def bench_dataset(path: Path | None, encoder: TextEncoder, sizes: dict) -> dict[str, float]:
    """Every measurement for one dataset (``path`` None: the built-in demo shop)."""
    load_s, full = _timed(lambda: load_dataset(path))
    dataset = _first_items(full, sizes["items"])
    result: dict[str, float] = {"load_s": load_s, "items": len(dataset.items), "users":
                                len(dataset.histories), "interactions": len(dataset.interactions)}
    with tempfile.TemporaryDirectory(prefix="recagent-bench-") as home:
        rt = Runtime(Settings(home=Path(home)))
        rt.dataset, rt.encoder = dataset, encoder  # cached properties: preset, not reloaded
        result |= _bench_index(rt, sizes)
        split = leave_one_out(dataset)
        _, histories, _ = split.cases("test")
        result |= _bench_retrieval(rt, histories, sizes)
        result |= _bench_eval(rt, split, sizes)
        result["index_mb"] = _dir_mb(rt.settings.store)
    result["maxrss_mb"] = maxrss_mb()
    return result


def machine_info() -> dict[str, Any]:
    import chromadb
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "chromadb": chromadb.__version__}


def _rows(report: dict[str, Any]) -> list[list[str]]:
    """The table: a row per metric (label first), a column per dataset."""
    def cell(value: Any, fmt: str) -> str:
        return "—" if value is None else fmt.format(value)

    runs = report["datasets"].values()
    return [[label, *(cell(d.get(key), fmt) for d in runs)] for key, label, fmt in ROWS]


def to_markdown(report: dict[str, Any]) -> str:
    m, quick = report["machine"], " (--quick)" if report["quick"] else ""
    machine = (f"{m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
               f"chromadb {m['chromadb']}, Python {m['python']}, {m['platform']}")
    lines = [f"Spine benchmark{quick}, {report['timestamp']}: {machine}.",
             f"Command: `{report['command']}`", "",
             "| metric | " + " | ".join(report["datasets"]) + " |",
             "|---|" + "---:|" * len(report["datasets"])]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    return "\n".join(lines) + "\n"


def _table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="recagent spine benchmark" + (" (--quick)" if report["quick"] else ""))
    table.add_column("metric")
    for name in report["datasets"]:
        table.add_column(name, justify="right")
    for row in _rows(report):
        table.add_row(*row)
    return table


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    default_dir = str(data_root())
    p = argparse.ArgumentParser(prog="python -m recagent.evals.bench_spine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    p.add_argument("--data-dir", type=Path, default=Path(default_dir))
    p.add_argument("--out", type=Path, default=Path("evals/reports/bench_spine.json"))
    p.add_argument("--quick", action="store_true", help="small samples: a smoke test")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    args, console = _parse(argv), Console()
    sizes = QUICK if args.quick else FULL
    encoder = TextEncoder(batch_size=64)
    encoder_load_s, _ = _timed(lambda: encoder.model)
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "recagent.evals.bench_spine", *argv]),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "quick": args.quick, "sizes": sizes,
        "encoder": {"name": encoder.name, "version": encoder.version,
                    "batch_size": encoder.batch_size, "load_s": encoder_load_s},
        "datasets": {}, "skipped": {},
    }
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        path = None if name == "demo" else args.data_dir / name
        if path is not None and not path.is_dir():
            report["skipped"][name] = f"{path} not found"
            console.print(f"[yellow]skipping {name}[/]: {path} not found")
            continue
        with console.status(f"Benchmarking {name}..."):
            report["datasets"][name] = bench_dataset(path, encoder, sizes)
        console.print(f"[green]done[/] {name}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(to_markdown(report), encoding="utf-8")
    console.print(_table(report))
    console.print(f"report written to {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
