"""Cold-start report: how well each model retrieves items it has never seen interactions of.

A seeded ``fraction`` of the catalog is held out: every interaction with those items is
removed from the training histories that models are fit (and seqrec is trained) on. The
split is otherwise the standard leave-one-out, and the metrics are computed on the test
cases whose target is a held-out item, with the usual full ranking and masking. Input
histories are left as they are (a user may have bought a new item before), but no model
ever fits on an interaction with a held-out item.

ID-based models (popularity, item-kNN, ALS) have nothing to place such an item with; the
report measures where they put them rather than assuming it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recagent.evals.models import harness_model
from recagent.protocol.ranking import PROTOCOL, evaluate_scorer
from recagent.protocol.split import ColdStartSplit, cold_start_split

if TYPE_CHECKING:
    from recagent.app.runtime import Runtime

__all__ = ["COLD_MODELS", "run_cold_start"]

COLD_MODELS = ("popularity", "itemknn", "als", "text", "seqrec", "fusion")
# The cold-split seqrec trains a third of the items on text alone at each step: with ID
# embeddings for every seen item, nothing else teaches the text path to stand on its own.
ID_DROPOUT = 0.3


@dataclass
class _Row:
    name: str
    metrics: dict[str, float] | None
    seconds: float
    note: str = ""


def _cold_seqrec_dir(rt: Runtime, fraction: float, seed: int) -> Path:
    return rt.model_dir(f"seqrec-cold{round(fraction * 100)}-s{seed}")


def _train_cold_seqrec(rt: Runtime, split: ColdStartSplit, directory: Path, max_minutes: float,
                       device: str, id_dropout: float) -> dict[str, Any]:
    """Train seqrec on the cold split (reusing a finished checkpoint); its metadata."""
    from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever

    if not ((directory / "model.pt").is_file() and (directory / "metadata.json").is_file()):
        rt.ensure_index(show_progress=True)
        train_seq_retriever(
            split, rt.index.embeddings(), directory,
            config=TrainConfig(max_minutes=max_minutes, device=device, id_dropout=id_dropout),
            show_progress=True,
            extra_metadata={"cold_items": sorted(split.cold_items),
                            "split": "leave-one-out by time; training parts only, with every "
                                     "interaction of the held-out (cold) items removed"},
        )
    return json.loads((directory / "metadata.json").read_text())


def run_cold_start(
    rt: Runtime,
    models: Sequence[str] = COLD_MODELS,
    *,
    fraction: float = 0.1,
    seed: int = 0,
    max_minutes: float = 8.0,
    device: str = "cpu",
    id_dropout: float = ID_DROPOUT,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Fit/train every model on the cold split and evaluate it on the cold test cases."""
    from recagent.catalog.errors import RecAgentError

    split = cold_start_split(rt.dataset, fraction, seed)
    cold_targets = split.cold_targets("test")
    n_test = len(split.users)
    rows: list[_Row] = []
    seqrec_meta: dict[str, Any] = {}
    for name in models:
        start = time.perf_counter()
        note = ""
        directory = _cold_seqrec_dir(rt, fraction, seed)
        if name in ("seqrec", "fusion"):  # the models of the checkpoint: one on the cold split
            seqrec_meta = _train_cold_seqrec(rt, split, directory, max_minutes, device, id_dropout)
            note = f"trained on the cold split: {seqrec_meta['seconds']} s, best epoch " \
                   f"{seqrec_meta['best_epoch']} of {seqrec_meta['epochs_run']}"
        try:
            scorer = harness_model(rt, name, checkpoint=directory, split=split,
                                   show_progress=show_progress)
        except RecAgentError as exc:  # e.g. a peer that is not installed
            rows.append(_Row(name, None, 0.0, f"skipped: {exc}"))
            continue
        if name == "fusion":
            offset = json.loads((directory / "fusion.json").read_text())["cold_offset"]
            note += ("; cold items at the fused floor" if offset is None else
                     "; cold items: text's z-score in item-kNN's place, offset "
                     f"{offset:+g} (tuned on validation)")
        if not cold_targets:
            rows.append(_Row(name, None, 0.0, "no test case has a cold target"))
            continue
        result = evaluate_scorer(scorer, split, stage="test", targets_in=split.cold_items,
                                 show_progress=show_progress)
        rows.append(_Row(name, result.metrics, time.perf_counter() - start, note))
    return {
        "dataset": rt.dataset.name,
        "protocol": PROTOCOL,
        "cold_start": (
            f"{len(split.cold_items)} of {len(split.dataset.items)} items ({fraction:.0%}, "
            f"seed {seed}) held out: all their interactions removed from what models are fit "
            "on; metrics over the test cases whose target is a held-out item"
        ),
        "fraction": fraction,
        "seed": seed,
        "n_cold_items": len(split.cold_items),
        "n_test_cases": n_test,
        "n_cold_test_cases": len(cold_targets),
        "models": {
            r.name: ({**{k: round(v, 6) for k, v in r.metrics.items()}} if r.metrics else {})
            | {"seconds": round(r.seconds, 2), **({"note": r.note} if r.note else {})}
            for r in rows
        },
        **({"seqrec_training": {k: seqrec_meta[k] for k in
                                ("seconds", "best_epoch", "epochs_run", "valid_metrics")}}
           if seqrec_meta else {}),
    }
