"""Re-ranking evaluation: retrieve the top-N with a base model, re-rank them, measure both.

Same protocol as :mod:`recagent.protocol.ranking` (leave-one-out by time, full ranking, input
history masked). Re-ranking only reorders the top-N: a target inside it moves to its new
position, a target outside keeps its base rank (> N), so Recall@N is the ceiling every
strategy shares. Reported per strategy: the metrics, the re-ranking cost (ms per user), and,
when explanations are requested, the share that passed the faithfulness check.

A target outside the top-N keeps its base rank whatever the re-ranking does, so with
``skip_misses`` those users are not re-ranked at all (the metrics are exactly the same; an
LLM ranker costs seconds per user on a CPU) and ms per user is averaged over the users that
were re-ranked. ``sample_users`` evaluates a seeded random sample of the users instead of
all (``max_users`` takes the first N); every strategy then carries the 95% interval of its
paired per-user NDCG@10 gain over no re-ranking, so a sample's lift comes with its error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from recagent.agent.explanations import ExplanationWriter
from recagent.protocol.metrics import metrics_from_ranks, paired_ndcg_gain_ci95
from recagent.protocol.ranking import rank_targets
from recagent.protocol.scorer import Scorer
from recagent.protocol.split import LeaveOneOutSplit
from recagent.tools.candidates import Candidate
from recagent.tools.explain import Explain
from recagent.tools.rerank import Rerank

__all__ = ["RerankResult", "evaluate_rerank"]


@dataclass(frozen=True)
class RerankResult:
    strategy: str
    metrics: dict[str, float]
    ms_per_user: float  # over the users re-ranked
    reranked_users: int = 0
    faithful_share: float | None = None  # of the LLM-written explanations checked
    explanations: int = 0
    ndcg10_gain_ci95: list[float] | None = None  # paired, per user, over "none"


def evaluate_rerank(
    base: Scorer,
    split: LeaveOneOutSplit,
    rerank: Rerank,
    strategies: Sequence[str],
    *,
    top_n: int = 20,
    stage: str = "test",
    max_users: int | None = None,
    explain: Explain | None = None,
    writer: ExplanationWriter | None = None,
    explain_users: int = 0,
    explain_top: int = 3,
    show_progress: bool = False,
    skip_misses: bool = False,
    sample_users: int | None = None,
    seed: int = 0,
) -> list[RerankResult]:
    """Base retrieval (strategy "none") and each strategy's re-ranking of its top ``top_n``."""
    base.fit(split.train)
    users, histories, targets = split.cases(stage)
    if max_users is not None:
        users, histories, targets = users[:max_users], histories[:max_users], targets[:max_users]
    if sample_users is not None and sample_users < len(users):
        pick = sorted(random.Random(seed).sample(range(len(users)), sample_users))
        users = [users[i] for i in pick]
        histories = [histories[i] for i in pick]
        targets = [targets[i] for i in pick]
    index = split.dataset.item_index
    ids = split.dataset.item_ids
    items = split.dataset.items
    names = ["none", *strategies]
    ranks = {s: np.empty(len(users)) for s in names}
    spent = dict.fromkeys(names, 0.0)
    checked = dict.fromkeys(names, 0)
    called = dict.fromkeys(names, 0)
    passed = dict.fromkeys(names, 0)
    with tqdm(total=len(users), desc=f"Re-ranking {base.name} top-{top_n}", unit="user",
              disable=not show_progress) as bar:
        for u, (history, target) in enumerate(zip(histories, targets, strict=True)):
            scores = np.array(base.score([history]), dtype=np.float32)
            masks = [[index[x.item_id] for x in history]]
            base_rank, top = rank_targets(scores, masks, [index[target]], top_k=top_n)
            ranks["none"][u] = base_rank[0]
            candidates = [Candidate(ids[i], items[ids[i]].title, float(scores[0, i]),
                                    {"retriever": float(scores[0, i])}) for i in top[0]
                          if np.isfinite(scores[0, i])]
            for strategy in strategies:
                if skip_misses and target not in {c.item_id for c in candidates}:
                    ranks[strategy][u] = base_rank[0]
                    continue
                called[strategy] += 1
                started = time.perf_counter()
                order = rerank(candidates, history, strategy)
                spent[strategy] += time.perf_counter() - started
                position = next((p for p, c in enumerate(order, 1) if c.item_id == target), None)
                ranks[strategy][u] = position if position is not None else base_rank[0]
                # Explanations cost seconds each: written for the last strategy's top only.
                if writer is not None and explain is not None and u < explain_users \
                        and strategy == strategies[-1]:
                    for c in order[:explain_top]:
                        out = writer.write(explain(c, history))
                        checked[strategy] += 1
                        passed[strategy] += out.source == "llm"
            bar.update(1)
    return [
        RerankResult(
            s, metrics_from_ranks(ranks[s], ks=sorted({10, 20, 50, top_n})),
            round(1000 * spent[s] / max(1, called[s]), 2), called[s],
            passed[s] / checked[s] if checked[s] else None, checked[s],
            paired_ndcg_gain_ci95(ranks["none"], ranks[s]) if s != "none" and len(users) > 1 else None,
        )
        for s in names
    ]
