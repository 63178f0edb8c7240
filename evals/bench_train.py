"""seqrec training variants side by side: epoch time and validation NDCG@10, one after the
other in one process (so the machine's load is alike for all).

    python -m recagent.evals.bench_train --data demo:40000x3000 \
        --variants full-fp32,full-bf16,sampled-fp32,sampled-bf16 [--negatives 1024] \
        [--epochs 2] [--max-minutes 4] [--home DIR] [--out evals/reports/bench_train.json] \
        [--device cuda] [--save-embeddings FILE.npz | --embeddings FILE.npz]

``--data`` is a dataset folder (or ``demo:USERSxITEMS``, a generated demo shop). A variant is
NEGATIVES-PRECISION[-clWEIGHT]: ``full`` (softmax over the whole catalog) or ``sampled`` (the
batch's items plus ``--negatives`` drawn ones), ``fp32`` or ``bf16`` (autocast), and
optionally the CL4SRec contrastive term at that weight (``full-fp32-cl0.1``). Each trains from
scratch with the same seed for ``--epochs`` or ``--max-minutes``, whichever ends first, and
validates after every epoch (at most ``--valid-cases`` users, a seeded sample). The item
texts are encoded into the index under ``--home`` (kept there for the next run).
On the CPU, single-threaded (torch one thread); ``--device cuda`` trains on a GPU.

``--save-embeddings FILE.npz`` writes the item ids and text embeddings the run used;
``--embeddings FILE.npz`` reads them back instead of building the index, so a machine
without the index stack (Chroma, the text encoder), such as a bare GPU box, can train on
exactly the vectors this one computed. The ids must match the dataset's items, in order.
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

import numpy as np

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


def _item_embeddings(dataset: Any, args: argparse.Namespace) -> np.ndarray:
    """Text embeddings aligned with ``dataset.item_ids``: read from ``--embeddings``, or
    taken from the index under ``--home`` (built when missing)."""
    if args.embeddings is not None:
        return load_embeddings(args.embeddings, dataset.item_ids)
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings

    rt = Runtime(Settings(home=args.home))
    rt.dataset = dataset  # a cached property: preset, not loaded from settings
    rt.ensure_index(show_progress=False)
    vectors = rt.index.embeddings()
    if args.save_embeddings is not None:
        args.save_embeddings.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_embeddings, item_ids=np.asarray(dataset.item_ids),
                            vectors=vectors.astype(np.float16))
    return vectors


def load_embeddings(path: Path, item_ids: Sequence[str]) -> np.ndarray:
    """The float32 vectors saved by ``--save-embeddings``; exits when they are not for these
    items (another dataset, or the same items in another order)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            ids, vectors = saved["item_ids"], saved["vectors"]
    except (OSError, KeyError, ValueError) as exc:
        raise SystemExit(f"--embeddings: cannot read {path}: {exc}") from exc
    if list(ids) != list(item_ids):
        raise SystemExit(f"--embeddings: {path} holds {len(ids):,} items that are not this "
                         f"dataset's {len(item_ids):,} items in order")
    return vectors.astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recagent.protocol.split import leave_one_out
    from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever

    if args.device == "cpu":
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA device")
    dataset = _dataset(args.data)
    embeddings = _item_embeddings(dataset, args)
    split = leave_one_out(dataset)
    report: dict[str, Any] = {
        "dataset": dataset.name, "items": len(dataset.items),
        "users": len(dataset.histories), "interactions": len(dataset.interactions),
        "epochs": args.epochs, "max_minutes": args.max_minutes, "valid_cases": args.valid_cases,
        "negatives": args.negatives, "lr": args.lr, "schedule": args.schedule,
        "patience": args.patience, "device": args.device, "runs": {},
    }
    if args.device != "cpu":
        report["gpu"] = torch.cuda.get_device_name(args.device)
    for name in args.variants.split(","):
        config = TrainConfig(epochs=args.epochs, max_minutes=args.max_minutes,
                             valid_cases=args.valid_cases, patience=args.patience,
                             lr=args.lr, schedule=args.schedule, device=args.device,
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
             ("| variant | epochs | best epoch | best valid NDCG@10 | train s / epoch | s/step "
              "| total s (validation included) |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, run in report["runs"].items():
        history = run["history"]
        if not history:
            continue
        train_s = sum(h["train_s"] for h in history)
        steps = sum(h["steps"] for h in history)
        lines.append(f"| {name} | {len(history)} | {run['best_epoch']} | "
                     f"{run['best_valid_ndcg@10']:.4f} | {train_s / len(history):.2f} | "
                     f"{train_s / max(1, steps):.4f} | {run['seconds']:.0f} |")
    if all(len(run["history"]) <= 10 for run in report["runs"].values()):
        lines += ["", "| variant | epoch | train s | steps | s/step | valid NDCG@10 | load avg |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, run in report["runs"].items():
            for h in run["history"]:
                lines.append(
                    f"| {name} | {h['epoch']} | {h['train_s']:.0f} | {h['steps']:,} | "
                    f"{h['train_s'] / max(1, h['steps']):.3f} | {h['valid_ndcg@10']:.4f} | "
                    f"{run['loadavg'][0]:.1f} -> {run['loadavg'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def _machine(report: dict[str, Any]) -> str:
    cpu = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    python = f"Python {platform.python_version()}"
    if report["device"] == "cpu":
        return f"{cpu}, {python}, torch one thread"
    return f"{report['gpu']} ({report['device']}), {cpu}, {python}"


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
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (train-retriever's)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "recagent-bench-train")
    p.add_argument("--out", type=Path, default=Path("evals/reports/bench_train.json"))
    p.add_argument("--device", default="cpu", help="cpu (one thread), cuda or cuda:N")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--embeddings", type=Path, default=None,
                        help="item text embeddings saved by --save-embeddings (no index)")
    source.add_argument("--save-embeddings", type=Path, default=None,
                        help="also write the index's item text embeddings to this .npz")
    args = p.parse_args(argv)
    report = run(args)
    report |= {"command": shlex.join(["python", "-m", "recagent.evals.bench_train", *argv]),
               "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": _machine(report)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(to_markdown(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
