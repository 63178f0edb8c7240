"""seqrec training variants side by side: epoch time and validation NDCG@10, one after the
other in one process (so the machine's load is alike for all).

    python -m recagent.evals.bench_train --data demo:40000x3000 \
        --variants full-fp32,full-bf16,sampled-fp32,sampled-bf16 [--negatives 1024] \
        [--epochs 2] [--max-minutes 4] [--home DIR] [--out evals/reports/bench_train.json]

``--data`` is a dataset folder (or ``demo:USERSxITEMS``, a generated demo shop). A variant is
NEGATIVES-PRECISION[-clWEIGHT]: ``full`` (softmax over the whole catalog) or ``sampled`` (the
batch's items plus ``--negatives`` drawn ones), ``fp32`` or ``bf16`` (autocast), and
optionally the CL4SRec contrastive term at that weight (``full-fp32-cl0.1``). Each trains from
scratch with the same seed for ``--epochs`` or ``--max-minutes``, whichever ends first, and
validates after every epoch (at most ``--valid-cases`` users, a seeded sample). The item
texts are encoded into the index under ``--home`` (kept there for the next run).
Single-threaded (torch one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VARIANTS = ("full-fp32", "full-bf16", "sampled-fp32", "sampled-bf16")


def _dataset(spec: str) -> Any:
    from recagent.catalog.demo_shop import DemoShopConfig, generate_demo_shop
    from recagent.catalog.load import load_dataset

    if spec.startswith("demo:"):
        users, sep, items = spec[5:].partition("x")
        if not sep or not users.isdigit() or not items.isdigit():
            raise SystemExit(f"--data: {spec!r} is not demo:USERSxITEMS")
        return generate_demo_shop(DemoShopConfig(n_users=int(users), n_items=int(items)))
    return load_dataset(Path(spec))


def _variant(name: str, negatives: int) -> dict[str, Any]:
    kind, _, rest = name.partition("-")
    precision, _, cl = rest.partition("-")
    if (kind not in ("full", "sampled") or precision not in ("fp32", "bf16")
            or (cl and not (cl.startswith("cl") and _is_number(cl[2:])))):
        raise SystemExit(f"--variants: {name!r} is not full|sampled-fp32|bf16[-clWEIGHT]")
    return {"negatives": negatives if kind == "sampled" else 0, "precision": precision,
            "cl_weight": float(cl[2:]) if cl else 0.0}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings
    from recagent.protocol.split import leave_one_out
    from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever

    torch.set_num_threads(1)
    rt = Runtime(Settings(home=args.home))
    rt.dataset = _dataset(args.data)  # a cached property: preset, not loaded from settings
    rt.ensure_index(show_progress=False)
    embeddings = rt.index.embeddings()
    split = leave_one_out(rt.dataset)
    report: dict[str, Any] = {
        "dataset": rt.dataset.name, "items": len(rt.dataset.items),
        "users": len(rt.dataset.histories), "interactions": len(rt.dataset.interactions),
        "epochs": args.epochs, "max_minutes": args.max_minutes, "valid_cases": args.valid_cases,
        "negatives": args.negatives, "runs": {},
    }
    for name in args.variants.split(","):
        config = TrainConfig(epochs=args.epochs, max_minutes=args.max_minutes,
                             valid_cases=args.valid_cases, patience=args.patience,
                             **_variant(name.strip(), args.negatives))
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="recagent-bench-train-") as out:
            result = train_seq_retriever(split, embeddings, Path(out), config=config,
                                         resume=False)
        report["runs"][name] = {
            "history": result.history, "best_valid_ndcg@10": result.best_valid.get("ndcg@10"),
            "best_epoch": result.best_epoch,
            "seconds": result.seconds, "loadavg": [load, os.getloadavg()[0]],
        }
        print(f"{name}: " + "; ".join(
            f"epoch {h['epoch']} {h['train_s']:.0f} s ({h['steps']} steps) "
            f"valid N@10 {h['valid_ndcg@10']:.4f}" for h in result.history),
            file=sys.stderr, flush=True)
    return report


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"seqrec training variants, {report['timestamp']}: {report['machine']}.",
             f"Command: `{report['command']}`", "",
             (f"{report['dataset']}: {report['users']:,} users, {report['items']:,} items, "
             f"{report['interactions']:,} interactions; {report['epochs']} epoch(s) or "
             f"{report['max_minutes']} min each; validation on at most "
             f"{report['valid_cases']:,} users."), "",
             "| variant | epoch | train s | steps | s/step | valid NDCG@10 | load avg |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, run in report["runs"].items():
        for h in run["history"]:
            lines.append(f"| {name} | {h['epoch']} | {h['train_s']:.0f} | {h['steps']:,} | "
                         f"{h['train_s'] / max(1, h['steps']):.3f} | {h['valid_ndcg@10']:.4f} | "
                         f"{run['loadavg'][0]:.1f} -> {run['loadavg'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m recagent.evals.bench_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder, or demo:USERSxITEMS")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--negatives", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=4.0)
    p.add_argument("--valid-cases", type=int, default=20_000)
    p.add_argument("--patience", type=int, default=1000, help="early stopping (default: none)")
    p.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "recagent-bench-train")
    p.add_argument("--out", type=Path, default=Path("evals/reports/bench_train.json"))
    args = p.parse_args(argv)
    report = run(args)
    report |= {"command": shlex.join(["python", "-m", "recagent.evals.bench_train", *argv]),
               "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
                          f"Python {platform.python_version()}, torch one thread"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(to_markdown(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
