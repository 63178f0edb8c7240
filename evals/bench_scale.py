"""Scale benchmark: generate -> index -> train -> tune -> evaluate -> serve on demo shops of
growing size, with the wall time and peak RSS of every stage.

    python -m recagent.evals.bench_scale [--sizes 3000x3000,30000x3000,1000000x3000]
        [--datasets amazon-scientific] [--data-dir ../shared/data] [--epochs 1]
        [--train-minutes 5] [--max-cases 20000] [--text-cases 500]
        [--out evals/reports/bench_scale.json]

A size is USERSxITEMS of :class:`~recagent.catalog.demo_shop.DemoShopConfig`; a dataset is a
folder under ``--data-dir`` (its ``generate`` stage loads it instead). Each stage
runs in a child process of its own (``--stage``), so its peak RSS (``ru_maxrss`` of that
process) is the stage's alone; the stages of one size share a temporary RECAGENT_HOME (the
saved dataset, the Chroma index, the checkpoint). Children run single-threaded
(OMP_NUM_THREADS=1, torch one thread).

Stages: ``generate`` the shop (and save it in columns for the others); ``index`` the item texts with
MiniLM; ``train`` seqrec for ``--epochs`` or ``--train-minutes``, whichever ends first
(validation on at most ``--max-cases`` users); ``tune`` the product's fusion (kNN variant and
weight on at most ``--max-cases`` validation cases; the cold offset on ``--text-cases`` of
them, since each encodes its history's text); ``evaluate`` popularity, item-kNN and seqrec
on at most ``--max-cases`` test cases, fusion on ``--text-cases`` (its cold items are scored
by the history's text profile, from cached item vectors); ``serve``: fit the product's fusion on every history and time
``recommend`` for 50 users. Every cap is a seeded sample of users, the same in every stage
and model; below the cap every case counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recagent.evals.data import data_root

STAGES = ("generate", "index", "train", "tune", "evaluate", "serve")
DEFAULT_SIZES = ("3000x3000,30000x3000,100000x3000,1000000x3000,"
                 "3000x10000,3000x30000,3000x100000")
_DATASET = "dataset"  # the shop in columns (catalog.columnar), read by every stage


def maxrss_mb() -> float:
    """Peak RSS of this process so far (MB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _runtime(home: Path) -> Any:
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings
    from recagent.catalog.columnar import load_columns

    rt = Runtime(Settings(home=home))
    start = time.perf_counter()
    rt.dataset = load_columns(home / _DATASET)  # a cached property: preset, not loaded
    _LOAD_S.append(time.perf_counter() - start)
    return rt


_LOAD_S: list[float] = []  # seconds spent loading the saved dataset in this process


def _generate(home: Path, users: int, items: int, data: Path | None = None,
              **_: Any) -> dict[str, Any]:
    from recagent.catalog.columnar import save_columns
    from recagent.catalog.demo_shop import DemoShopConfig, generate_demo_shop
    from recagent.catalog.load import load_dataset

    dataset = (load_dataset(data) if data is not None
               else generate_demo_shop(DemoShopConfig(n_users=users, n_items=items)))
    save_columns(dataset, home / _DATASET)
    return {"items": len(dataset.items), "users": len(dataset.histories),
            "interactions": len(dataset.interactions)}


def _index(home: Path, **_: Any) -> dict[str, Any]:
    stats = _runtime(home).ensure_index(show_progress=False)
    return {"encoded": stats.encoded}


def _train(home: Path, epochs: int, train_minutes: float, max_cases: int,
           **_: Any) -> dict[str, Any]:
    from recagent.protocol.split import leave_one_out
    from recagent.retrieval.seq_train import TrainConfig, default_negatives, train_seq_retriever

    rt = _runtime(home)
    config = TrainConfig(epochs=epochs, max_minutes=train_minutes, valid_cases=max_cases,
                         negatives=default_negatives(len(rt.dataset.items)))
    result = train_seq_retriever(leave_one_out(rt.dataset), rt.index.embeddings(),
                                 rt.model_dir("seqrec"), config=config)
    last = result.history[-1] if result.history else {}
    return {"epochs": result.epochs_run, "valid_ndcg@10": result.best_valid.get("ndcg@10"),
            "negatives": config.negatives, "steps": last.get("steps"), "epoch_train_s": last.get("train_s"),
            "train_s": result.seconds}


def _tune(home: Path, text_cases: int, max_cases: int, **_: Any) -> dict[str, Any]:
    from recagent.retrieval.fusion_choice import CHOICE_FILE, cold_text_scorer, tuned_fusion

    rt = _runtime(home)
    directory = rt.model_dir("seqrec")
    tuned_fusion(rt.dataset, directory, lambda: cold_text_scorer(rt.context()), cold_cases=text_cases,
                 max_cases=max_cases)
    choice = json.loads((directory / CHOICE_FILE).read_text())
    return {"variant": choice["variant"], "weight": choice["weight"],
            "cold_offset": choice["cold_offset"], "valid_ndcg@10": choice["valid"]["ndcg@10"],
            "cold_cases": choice["cold_n_cases"]}


def _evaluate(home: Path, text_cases: int, max_cases: int, **_: Any) -> dict[str, Any]:
    from recagent.evals.models import harness_model
    from recagent.protocol.ranking import evaluate_scorer
    from recagent.protocol.split import leave_one_out

    rt = _runtime(home)
    split = leave_one_out(rt.dataset)
    out: dict[str, Any] = {"test_cases": min(max_cases, len(split.users)),
                           "fusion_cases": min(text_cases, max_cases, len(split.users))}
    for name in ("popularity", "itemknn", "seqrec", "fusion"):
        model = harness_model(rt, name, show_progress=False)
        cap = min(text_cases, max_cases) if name == "fusion" else max_cases
        start = time.perf_counter()
        result = evaluate_scorer(model, split, max_users=cap, sample_seed=0)
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_ndcg@10"] = result.metrics["ndcg@10"]
    return out


def _serve(home: Path, **_: Any) -> dict[str, Any]:
    from recagent.retrieval.registry import RETRIEVERS

    rt = _runtime(home)
    model = RETRIEVERS.create("fusion", rt.context())
    start = time.perf_counter()
    model.fit(list(rt.dataset.histories.values()))
    fit_s = time.perf_counter() - start
    histories = list(rt.dataset.histories.values())[:50]
    latencies = []
    for history in histories:
        start = time.perf_counter()
        model.recommend(history, k=10)
        latencies.append(time.perf_counter() - start)
    return {"fit_s": fit_s, "recommend_ms_median": 1000 * statistics.median(latencies)}


_RUN = {"generate": _generate, "index": _index, "train": _train, "tune": _tune,
        "evaluate": _evaluate, "serve": _serve}


def run_stage(stage: str, home: Path, **kwargs: Any) -> dict[str, Any]:
    """One stage in this process: its figures, wall seconds and this process's peak RSS."""
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = _RUN[stage](home, **kwargs)
    return {**result, "seconds": time.perf_counter() - start, "maxrss_mb": maxrss_mb(),
            "load_s": sum(_LOAD_S), "loadavg": [load_before, os.getloadavg()[0]]}


def _child(stage: str, home: Path, args: argparse.Namespace, users: int, items: int,
           data: Path | None = None) -> dict:
    out = home / f"{stage}.json"
    cmd = [sys.executable, "-m", "recagent.evals.bench_scale", "--stage", stage,
           "--home", str(home), "--users", str(users), "--items", str(items),
           "--epochs", str(args.epochs), "--text-cases", str(args.text_cases),
           "--train-minutes", str(args.train_minutes), "--max-cases", str(args.max_cases),
           "--stage-out", str(out), *(["--data", str(data)] if data else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"],
                "process_s": wall}
    return {**json.loads(out.read_text()), "process_s": wall}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    default_dir = str(data_root())
    p = argparse.ArgumentParser(prog="python -m recagent.evals.bench_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated USERSxITEMS")
    p.add_argument("--datasets", default="", help="comma-separated folders under --data-dir")
    p.add_argument("--data-dir", type=Path, default=Path(default_dir))
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in order")
    p.add_argument("--epochs", type=int, default=1, help="seqrec training epochs")
    p.add_argument("--train-minutes", type=float, default=5.0,
                   help="seqrec training budget (stops inside an epoch)")
    p.add_argument("--max-cases", type=int, default=20_000,
                   help="cases tuned and evaluated on (a seeded sample of users beyond it)")
    p.add_argument("--text-cases", type=int, default=500,
                   help="cases that encode history text (cold-offset tuning, fusion eval)")
    p.add_argument("--out", type=Path, default=Path("evals/reports/bench_scale.json"))
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--users", type=int, help=argparse.SUPPRESS)
    p.add_argument("--items", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stage-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in (s.strip() for s in text.split(",") if s.strip()):
        users, sep, items = part.partition("x")
        if not sep or not users.isdigit() or not items.isdigit():
            raise SystemExit(f"--sizes: {part!r} is not USERSxITEMS")
        sizes.append((int(users), int(items)))
    return sizes


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"Scale benchmark, {report['timestamp']}: {report['machine']}.",
             f"Command: `{report['command']}`", "",
             (f"Training: {report.get('epochs')} epoch(s) or {report.get('train_minutes')} "
              f"min, whichever ends first. Tuning and evaluation: at most "
              f"{report.get('max_cases', 0):,} cases (a seeded sample of users beyond that); "
              f"fusion's evaluation and cold offset: {report.get('text_cases', 0):,} cases."),
             "",
             ("Per stage: wall seconds of the stage (reading the saved dataset included) / "
              "peak RSS of its process (MB)."), "",
             "| dataset | users | items | interactions | " + " | ".join(report["stages"]) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(report["stages"])]
    for run in report["runs"]:
        cells = []
        for stage in report["stages"]:
            r = run["stages"].get(stage, {})
            cells.append("failed" if "error" in r else
                         f"{r['seconds']:.1f} s / {r['maxrss_mb']:,.0f} MB" if r else "—")
        made = run["stages"].get("generate", {})
        counts = [made.get(k) for k in ("users", "items", "interactions")]
        label = run.get("name") or f"{run['users']}x{run['items']}"
        lines.append(f"| {label} | "
                     + " | ".join("—" if n is None else f"{n:,}" for n in counts) + " | "
                     + " | ".join(cells) + " |")
    lines += ["", ("What each stage did (`load_s` = seconds reading the saved dataset; "
                   "`loadavg` = the machine's 1-minute load average at its start and end):"),
              ""]
    for run in report["runs"]:
        label = run.get("name") or f"{run['users']}x{run['items']}"
        for stage, r in run["stages"].items():
            shown = {k: v for k, v in r.items() if k not in ("seconds", "maxrss_mb")}
            lines.append(f"- {label} {stage}: " + ", ".join(
                f"{k} {_figure(v)}" for k, v in shown.items()))
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, list):
        return "/".join(_figure(v) for v in value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.stage:  # a child: one stage
        result = run_stage(args.stage, args.home, users=args.users, items=args.items,
                           epochs=args.epochs, text_cases=args.text_cases, data=args.data,
                           train_minutes=args.train_minutes, max_cases=args.max_cases)
        args.stage_out.write_text(json.dumps(result) + "\n")
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if unknown := [s for s in stages if s not in STAGES]:
        raise SystemExit(f"--stages: unknown {unknown}; choose from {', '.join(STAGES)}")
    report: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "recagent.evals.bench_scale", *argv]),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}, children single-threaded",
        "epochs": args.epochs, "train_minutes": args.train_minutes,
        "max_cases": args.max_cases, "text_cases": args.text_cases, "stages": stages,
        "runs": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    todo: list[tuple[str, int, int, Path | None]] = [
        (f"{u}x{i}", u, i, None) for u, i in _sizes(args.sizes)]
    for name in (d.strip() for d in args.datasets.split(",") if d.strip()):
        if not (args.data_dir / name).is_dir():
            raise SystemExit(f"--datasets: {args.data_dir / name} is not a folder")
        todo.append((name, 0, 0, args.data_dir / name))
    for label, users, items, data in todo:
        run: dict[str, Any] = {"name": label, "users": users, "items": items, "stages": {}}
        report["runs"].append(run)
        with tempfile.TemporaryDirectory(prefix="recagent-scale-") as home:
            for stage in stages:
                run["stages"][stage] = r = _child(stage, Path(home), args, users, items, data)
                shown = r.get("error") or f"{r['seconds']:.1f}s, {r['maxrss_mb']:.0f} MB"
                print(f"{label} {stage}: {shown}", file=sys.stderr, flush=True)
                args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
                if "error" in r:
                    break
        args.out.with_suffix(".md").write_text(to_markdown(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
