"""Item-to-item co-occurrence (item-kNN): items bought by the same users as your items.

sim(i, j) = |U(i) ∩ U(j)| / sqrt(|U(i)| · |U(j)|)  (cosine over binary user vectors),
each item keeps its ``neighbours`` most similar items, and
score(u, i) = Σ_{j ∈ H(u)} w_j · sim(j, i), with w_j = ``recency_decay`` ** (age of j in
the history; 0 for the newest item). ``recency_decay = 1`` is plain item-kNN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Evidence, Retriever, recency_weighted_rows
from recagent.retrieval.registry import RetrieverContext

__all__ = ["ItemKNN"]


class ItemKNN(Retriever):
    """Item-kNN; the evidence of a pick is the history items it is a neighbour of."""

    name = "itemknn"

    def __init__(self, dataset: Dataset, *, neighbours: int = 20, recency_decay: float = 1.0):
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        if not 0 < recency_decay <= 1:
            raise ValueError("recency_decay must be in (0, 1]")
        self.dataset = dataset
        self.neighbours = neighbours
        self.recency_decay = recency_decay
        n = len(dataset.items)
        self.similarity = sp.csr_matrix((n, n), dtype=np.float32)

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> ItemKNN:
        return cls(ctx.dataset)

    def fit(self, train: Sequence[History]) -> None:
        index = self.dataset.item_index
        n_items = len(index)
        rows, cols = [], []
        for u, history in enumerate(train):
            for item in {index[x.item_id] for x in history}:
                rows.append(u)
                cols.append(item)
        users_items = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(train), n_items)
        )
        co = (users_items.T @ users_items).tocsr().astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(users_items.sum(axis=0)).ravel()).astype(np.float32)
        norms[norms == 0] = 1.0
        inv = sp.diags(1.0 / norms)
        sim = (inv @ co @ inv).tocsr()
        self.similarity = _keep_top_per_row(sim, self.neighbours)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        query = recency_weighted_rows(self.dataset, histories, self.recency_decay)
        return np.asarray((query @ self.similarity).todense(), dtype=np.float32)

    def evidence(self, history: History, item_id: str) -> list[Evidence]:
        """The history items that have ``item_id`` among their neighbours, most similar first
        (ties: newest first): the terms of its score."""
        index = self.dataset.item_index
        ids = list(dict.fromkeys(x.item_id for x in reversed(history)))
        sims = self.similarity[[index[i] for i in ids], index[item_id]].toarray().ravel()
        order = np.argsort(-sims, kind="stable")[: self.evidence_per_item]
        return [Evidence(ids[t], self.dataset.items[ids[t]].title, float(sims[t]))
                for t in order if sims[t] > 0]


def _keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties broken by column index)."""
    matrix = matrix.tocsr()
    data, indices, indptr = [], [], [0]
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        vals = matrix.data[start:end]
        cols = matrix.indices[start:end]
        if len(vals) > k:
            order = np.lexsort((cols, -vals))[:k]
            vals, cols = vals[order], cols[order]
        data.append(vals)
        indices.append(cols)
        indptr.append(indptr[-1] + len(vals))
    return sp.csr_matrix(
        (np.concatenate(data) if data else [], np.concatenate(indices) if indices else [], indptr),
        shape=matrix.shape,
        dtype=np.float32,
    )
