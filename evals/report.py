"""The JSON evaluation report (the shape quoted in the README and read by comparisons)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recagent.protocol.ranking import PROTOCOL, ModelResult
from recagent.protocol.split import LeaveOneOutSplit

__all__ = ["build_report", "percentile", "write_report"]


def build_report(
    split: LeaveOneOutSplit, results: Sequence[ModelResult], *, stage: str, n_users: int
) -> dict[str, Any]:
    return {
        "dataset": split.dataset.name,
        "protocol": PROTOCOL,
        "stage": stage,
        "n_users": n_users,
        "n_items": len(split.dataset.items),
        "n_train_only_users": split.n_train_only_users,
        "models": {
            r.name: {**{k: round(v, 6) for k, v in r.metrics.items()},
                     "seconds": round(r.seconds, 2), "fit_seconds": round(r.fit_seconds, 2)}
            for r in results
        },
    }


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves a half-written report
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)
