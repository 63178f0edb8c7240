"""Top-K ranking metrics, with binary relevance.

List-based functions take a ranked list of item ids (best first) and the set of relevant
items; they follow the usual definitions (as in LensKit and RecBole):

- ``Recall@K``    = |top-K ∩ rel| / |rel|                (= HR@K with one relevant item)
- ``Precision@K`` = |top-K ∩ rel| / K                    (K, not len(list): short lists are penalised)
- ``NDCG@K``      = Σ_{r ≤ K, item_r ∈ rel} 1/log2(r+1)  /  Σ_{r ≤ min(K,|rel|)} 1/log2(r+1)
- ``RR``          = 1 / rank of the first relevant item (0 when none is ranked); MRR is its mean
- ``Coverage@K``  = |∪_u top-K(u)| / |catalog|

Rules: an empty relevant set is undefined and raises ``ValueError``; an empty ranked list
scores 0; K larger than the list just uses the whole list. With exactly one relevant item
per user, everything follows from its rank: :func:`metrics_from_ranks` computes them
vectorised and is tested to agree with the list-based functions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np

__all__ = [
    "MetricSums",
    "coverage",
    "metrics_from_ranks",
    "ndcg_at_k",
    "paired_ndcg_gain_ci95",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
]


def _check(relevant: Collection[object], k: int | None = None) -> None:
    if not relevant:
        raise ValueError("metric undefined for an empty set of relevant items")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, not {k}")


def recall_at_k(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    _check(relevant, k)
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def precision_at_k(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    _check(relevant, k)
    return len(set(ranked[:k]) & set(relevant)) / k


def ndcg_at_k(ranked: Sequence[object], relevant: Collection[object], k: int) -> float:
    _check(relevant, k)
    rel = set(relevant)
    dcg = sum(1.0 / np.log2(r + 2) for r, item in enumerate(ranked[:k]) if item in rel)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(rel))))
    return float(dcg / idcg)


def reciprocal_rank(ranked: Sequence[object], relevant: Collection[object]) -> float:
    _check(relevant)
    rel = set(relevant)
    for r, item in enumerate(ranked):
        if item in rel:
            return 1.0 / (r + 1)
    return 0.0


def coverage(top_lists: Iterable[Sequence[object]], n_items: int) -> float:
    if n_items < 1:
        raise ValueError("n_items must be >= 1")
    seen: set[object] = set()
    for top in top_lists:
        seen.update(top)
    return len(seen) / n_items


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (10, 20, 50)) -> dict[str, float]:
    """Mean metrics over users from the 1-based rank of each user's single target.

    A rank of ``inf`` (target not ranked, e.g. masked) counts as a miss everywhere.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no ranks to average")
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
        out[f"precision@{k}"] = float(hit.mean() / k)
    out["mrr"] = float(np.where(np.isfinite(ranks), 1.0 / ranks, 0.0).mean())
    return out


def paired_ndcg_gain_ci95(base_ranks: np.ndarray, ranks: np.ndarray, k: int = 10) -> list[float]:
    """95% interval (normal approximation, paired over users) of the mean per-user NDCG@k
    gain of ``ranks`` over ``base_ranks`` (the same users in the same order)."""
    def ndcg(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        return np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)

    gain = ndcg(ranks) - ndcg(base_ranks)
    if gain.size == 0:
        raise ValueError("no ranks to compare")
    half = 1.96 * gain.std(ddof=1) / np.sqrt(gain.size) if gain.size > 1 else 0.0
    return [float(gain.mean() - half), float(gain.mean() + half)]


class MetricSums:
    """:func:`metrics_from_ranks` over ranks that arrive in chunks, in O(1) memory.

    ``add`` each chunk's ranks; ``means()`` gives the same figures as
    ``metrics_from_ranks`` of all the ranks at once (up to float summation order).
    """

    def __init__(self, ks: Sequence[int] = (10, 20, 50)) -> None:
        self.ks = tuple(ks)
        self.n = 0
        self._hits = dict.fromkeys(self.ks, 0.0)
        self._gains = dict.fromkeys(self.ks, 0.0)
        self._rr = 0.0

    def add(self, ranks: np.ndarray) -> None:
        ranks = np.asarray(ranks, dtype=np.float64)
        for k in self.ks:
            hit = ranks <= k
            self._hits[k] += float(hit.sum())
            self._gains[k] += float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).sum())
        self._rr += float(np.where(np.isfinite(ranks), 1.0 / ranks, 0.0).sum())
        self.n += ranks.size

    def means(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no ranks to average")
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"recall@{k}"] = self._hits[k] / self.n
            out[f"ndcg@{k}"] = self._gains[k] / self.n
            out[f"precision@{k}"] = self._hits[k] / self.n / k
        out["mrr"] = self._rr / self.n
        return out
