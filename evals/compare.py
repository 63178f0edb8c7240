"""One comparison report per dataset, merged from the harness's own reports.

Every input is a report of ``recagent eval`` (or ``evals.peers.measure``) on the same split,
candidate set and metrics, so the rows are comparable. The output is
``compare-<dataset>.json`` and a markdown table next to it; the commands that produced each
input are recorded with it.

    python -m recagent.evals.compare ml-100k          # reads and writes evals/reports/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["build_comparison", "commands", "to_markdown"]

REPORTS = Path(__file__).resolve().parent / "reports"
DATA = {"ml-100k": "../shared/data/ml-100k", "amazon-scientific": "../shared/data/amazon-scientific"}
OURS = ("popularity", "itemknn", "text", "seqrec", "fusion")
# How the shipped seqrec checkpoints were trained (chosen on validation N@10: the cosine
# schedule won on Amazon, 0.0616 vs 0.0613, and lost on ML-100K, 0.0843 vs 0.0852).
TRAIN_FLAGS = {
    "ml-100k": "--max-minutes 13",
    "amazon-scientific": "--lr 3e-3 --schedule cosine --epochs 70 --max-minutes 13",
}


def commands(dataset: str) -> dict[str, str]:
    """The command that produced each input report of ``dataset``."""
    data = DATA[dataset]
    return {
        f"eval-{dataset}.json": f"recagent eval --data {data} --out evals/reports/eval-{dataset}.json",
        f"seqrec-train-{dataset}.json": f"recagent train-retriever --data {data} "
        f"{TRAIN_FLAGS[dataset]}",
        f"fusion-{dataset}.json": f"recagent eval --data {data} --models seqrec,fusion "
        f"--out evals/reports/fusion-{dataset}.json",
        f"peers-{dataset}.json": f"python -m recagent.evals.peers {data} "
        f"evals/reports/peers-{dataset}.json",
        f"peers-recbole-{dataset}.json": "RECAGENT_RECBOLE_PYTHON=$PWD/.venv-recbole/bin/python "
        f"python -m recagent.evals.peers {data} evals/reports/peers-recbole-{dataset}.json "
        "recbole-sasrec recbole-bert4rec",
        f"coldstart-{dataset}.json": f"recagent eval --cold-start --data {data} --max-minutes 8 "
        f"--out evals/reports/coldstart-{dataset}.json",
    }


def _load(name: str, reports: Path) -> dict[str, Any]:
    path = reports / name
    return json.loads(path.read_text()) if path.is_file() else {}


def build_comparison(dataset: str, reports: Path = REPORTS,
                     wall_seconds: dict[str, float] | None = None,
                     training_seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Merge the dataset's reports; later files win for a model measured twice.

    ``training_seconds``: models trained outside the harness (seqrec, and fusion, whose
    seqrec side is trained by ``recagent train-retriever`` and whose weights are tuned on
    validation before the harness times it)."""
    rows: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    meta: dict[str, Any] = {}
    for name in (f"eval-{dataset}.json", f"fusion-{dataset}.json", f"peers-{dataset}.json",
                 f"peers-recbole-{dataset}.json"):
        report = _load(name, reports)
        for model, metrics in report.get("models", {}).items():
            rows[model] = {"ours": model in OURS, **metrics}
            sources[model] = name
        if report:
            meta = {k: report[k] for k in ("dataset", "protocol", "stage", "n_users", "n_items")}
    peers = [m for m, r in rows.items() if not r["ours"]]
    best = {metric: max(peers, key=lambda m: rows[m][metric]) for metric in ("recall@10", "ndcg@10")} if peers else {}
    cold = _load(f"coldstart-{dataset}.json", reports)
    fusion = _load(f"fusion-choice-{dataset}.json", reports)
    return {
        **meta,
        "models": rows,
        "sources": sources,
        "best_peer": {metric: {"model": m, "value": rows[m][metric]} for metric, m in best.items()},
        "fusion_choice": {k: fusion[k] for k in ("components", "variant", "weight", "valid")
                          if k in fusion},
        "cold_start": cold,
        "commands": {k: v for k, v in commands(dataset).items() if _load(k, reports)},
        "wall_seconds": wall_seconds or {},
        "training_seconds": training_seconds or {},
    }


def to_markdown(report: dict[str, Any]) -> str:
    cols = ["recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "coverage@10", "seconds"]
    title = (f"# {report.get('dataset')}: comparison ({report.get('stage')}, "
             f"{report.get('n_users')} users, {report.get('n_items')} items, full ranking)")
    lines = [title, "",
             f"Protocol: {report.get('protocol')}", "",
             "| model | ours | " + " | ".join(cols) + " | trained outside the harness (s) |",
             "|---|---|" + "---:|" * (len(cols) + 1)]
    training = report.get("training_seconds", {})
    for name, m in sorted(report["models"].items(), key=lambda kv: -kv[1]["ndcg@10"]):
        lines.append(f"| {name} | {'yes' if m['ours'] else 'peer'} | "
                     + " | ".join(f"{m[c]:.1f}" if c == "seconds" else f"{m[c]:.4f}" for c in cols)
                     + (f" | {training[name]:.0f} |" if name in training else " | |"))
    cold = report.get("cold_start") or {}
    if cold:
        share = f"{cold['n_cold_test_cases']} of {cold['n_test_cases']} test cases have a cold target."
        lines += ["", f"## Cold start: {cold['cold_start']}", "", share, "", "| model | recall@10 | ndcg@10 | recall@50 | mrr | seconds | note |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, m in cold["models"].items():
            if "recall@10" not in m:
                lines.append(f"| {name} | | | | | | {m.get('note', '')} |")
                continue
            lines.append(f"| {name} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} | "
                         f"{m['recall@50']:.4f} | {m['mrr']:.4f} | {m['seconds']:.1f} | "
                         f"{m.get('note', '')} |")
    lines += ["", ("## Commands (2-core CPU, one thread; seconds: wall, or for the peers the sum of"
              " their harness seconds; seqrec-train is the checkpoint metadata; fusion tunes on"
              " validation first)"), ""]
    lines += [f"- `{cmd}`  ({report['wall_seconds'][name]:.0f} s)"
              if name in report.get("wall_seconds", {}) else f"- `{cmd}`"
              for name, cmd in report["commands"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    dataset = argv[0]
    pairs = [a.split("=") for a in argv[1:]]
    # Times given on an earlier run are kept unless given again: re-merging after one report
    # changed must not lose the others' wall times.
    before = _load(f"compare-{dataset}.json", REPORTS)
    walls = {**before.get("wall_seconds", {}),
             **{k: float(v) for k, v in pairs if not k.startswith("train.")}}
    training = {**before.get("training_seconds", {}),
                **{k.removeprefix("train."): float(v) for k, v in pairs if k.startswith("train.")}}
    report = build_comparison(dataset, wall_seconds=walls, training_seconds=training)
    (REPORTS / f"compare-{dataset}.json").write_text(json.dumps(report, indent=2) + "\n")
    (REPORTS / f"compare-{dataset}.md").write_text(to_markdown(report))


# python -m recagent.evals.compare DATASET [REPORT_FILE=WALL_SECONDS ...] [train.MODEL=SECONDS ...]
if __name__ == "__main__":
    main(sys.argv[1:])
