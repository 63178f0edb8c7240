"""The first screen of the default retriever without a checkpoint: accuracy against
near-duplicates, for item-kNN weights x text side x category spread.

    python -m recagent.evals.first_screen [--data DIR] [--stage valid] [--weights 0.3,...]
        [--texts profile,minilm] [--shares none,0.3,0.2] [--out evals/reports/first_screen.json]

For every case of the leave-one-out ``--stage`` (item-kNN fitted on the training histories,
recency decay 0.7 as in ``cooc-text``), each (text side, kNN weight) fusion ranks the whole
catalog; the top 10 as ``recommend`` orders it (the exact ranking, then at most
``ceil(share * 10)`` of one leaf category, :func:`spread_categories`; ``none``: score order)
gives NDCG@10 and R@10 of the target, how many of the 10 share the newest history item's leaf
category, and the share of users with more than 3 such. Text sides: ``profile`` (the
history's text profile from the item embeddings) and ``minilm`` (MiniLM over the rendered
history text: one encoder pass per case, minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.protocol.ranking import history_masks, top_indices
from recagent.protocol.split import leave_one_out
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.diversity import spread_categories
from recagent.retrieval.fusion import standardise
from recagent.retrieval.retriever import HistoryRetriever
from recagent.retrieval.text_profile import TextProfile

__all__ = ["main"]

K = 10


def _first_screens(runtime: Runtime, stage: str, weights: list[float], texts: list[str],
                   shares: list[float | None]) -> list[dict[str, Any]]:
    dataset = runtime.dataset
    split = leave_one_out(dataset)
    _, histories, targets = split.cases(stage)
    index = dataset.item_index
    masks = history_masks(index, histories)
    knn = ItemKNN(dataset, recency_decay=0.7)
    knn.fit(split.train)
    knn_z = standardise(knn.score(histories), masks)
    leaf = [dataset.items[i].category[-1] if dataset.items[i].category else None
            for i in dataset.item_ids]
    target = np.array([index[t] for t in targets])
    newest = [leaf[index[h[-1].item_id]] for h in histories]
    rows = []
    for text in texts:
        started = time.perf_counter()
        model = (TextProfile.from_context(runtime.context()) if text == "profile"
                 else HistoryRetriever.from_context(runtime.context()))
        text_z = standardise(model.score(histories), masks)
        text_s = round(time.perf_counter() - started, 1)
        for w in weights:
            fused = w * knn_z + (1 - w) * text_z
            for r, masked in enumerate(masks):
                fused[r, masked] = -np.inf
            top = [top_indices(row, 200) for row in fused]
            for share in shares:
                ndcg = recall = same = over = 0.0
                for r, ranked in enumerate(top):
                    first = (list(ranked[:K]) if share is None
                             else spread_categories(ranked, leaf.__getitem__, K, share))
                    if target[r] in first:
                        recall += 1
                        ndcg += 1 / np.log2(first.index(target[r]) + 2)
                    n_same = sum(leaf[i] == newest[r] for i in first)
                    same += n_same
                    over += n_same > 3
                n = len(top)
                rows.append({"text": text, "knn_weight": w, "share": share,
                             "ndcg@10": round(ndcg / n, 4), "recall@10": round(recall / n, 4),
                             "same_category_as_newest": round(same / n, 2),
                             "users_over_3": round(over / n, 3), "text_seconds": text_s})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--stage", default="valid", choices=("valid", "test"))
    parser.add_argument("--weights", default="0.3,0.4,0.5,0.6,0.7")
    parser.add_argument("--texts", default="profile")
    parser.add_argument("--shares", default="none,0.3")
    parser.add_argument("--out", type=Path, default=Path("evals/reports/first_screen.json"))
    args = parser.parse_args(argv)
    settings = Settings.from_env().override(data=args.data)
    shares = [None if s == "none" else float(s) for s in args.shares.split(",")]
    runtime = Runtime(settings)
    runtime.ensure_index(show_progress=False)
    rows = _first_screens(runtime, args.stage, [float(w) for w in args.weights.split(",")],
                          args.texts.split(","), shares)
    report = {"benchmark": "first_screen", "dataset": runtime.dataset.name, "stage": args.stage,
              "load_average_1min": round(os.getloadavg()[0], 2), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
