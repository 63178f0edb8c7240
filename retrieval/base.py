"""The retriever contract: every model that ranks the catalog for a history.

A :class:`Retriever` has a ``name`` and a ``dataset``, learns in ``fit`` (training histories
only), scores every catalog item in ``score`` (what the evaluation harness ranks), builds what
it reads from disk in ``prepare``, and serves one user in ``recommend`` (many at once, one
``score`` call for all, in ``recommend_many``). The base class does the serving once for all
of them (RecTools / LensKit style):

    score -> mask (history, exclusions) -> pick (one item per title)
    -> spread (at most 3 of 10 from one category) -> evidence,
    and the catalog's popular items when the history is empty.

A subclass implements ``score``; it overrides ``candidates`` when an approximate index finds
the top items faster than exact scoring, and ``evidence_vectors`` (or ``evidence``) when it
can say which history items a pick is close to. See docs/extending-retrievers.md.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.protocol.ranking import top_indices
from recagent.protocol.scorer import History
from recagent.retrieval.diversity import CATEGORY_SHARE, max_per_category, spread_categories
from recagent.retrieval.index import BuildStats, SearchHit

__all__ = [
    "SEARCH_MARGIN",
    "Evidence",
    "PopularItems",
    "RecommendRequest",
    "Recommendation",
    "Retriever",
    "closest_in_history",
    "interaction_counts",
    "recency_weighted_rows",
    "unit_rows",
]

SEARCH_MARGIN = 50
"""Extra candidates asked for beyond ``k`` + the user's seen and excluded items, for picks
skipped as another id of a title already shown. (An approximate index returns its hits in
exact score order, so the margin only adds recall; it did not stop HNSW from missing true top
items in the seqrec collection: a wider HNSW search there did, see ``SeqIndex.collection``.)"""


@dataclass(frozen=True)
class Evidence:
    """A history item that a recommendation is close to, with the similarity."""

    item_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class RecommendRequest:
    """One user's request: their history, how many items, and ids not to show."""

    history: History
    k: int = 10
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    score: float
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)


class Retriever(ABC):
    """A model that scores the whole catalog for a history and recommends with evidence."""

    name: str
    dataset: Dataset
    evidence_per_item: int = 3
    category_share: float | None = CATEGORY_SHARE
    """The most of a ``recommend`` answer one leaf category may fill (3 of 10), by
    re-ordering (:func:`~recagent.retrieval.diversity.spread_categories`); None: score order."""

    def fit(self, train: Sequence[History]) -> None:
        """Learn from training histories (oldest interaction first). Default: nothing to learn."""

    @abstractmethod
    def score(self, histories: Sequence[History]) -> np.ndarray:
        """Every item's score for each history: float32, shape (len(histories), n_items),
        columns in ``dataset.item_ids`` order, higher is better. Masking is the caller's job."""

    def prepare(self, *, show_progress: bool = False) -> BuildStats | None:
        """Build or update the store this model reads (a Chroma collection), a hash check when
        it is current; what was built, or None for a model that reads none (the default)."""
        return None

    def recommend(self, history: History, k: int = 10, *,
                  exclude: Collection[str] = ()) -> list[Recommendation]:
        """The top ``k`` items for ``history`` that the user does not have and ``exclude`` does
        not hold, each with the history items it is close to. An empty history gets the
        catalog's most popular items (the explanation says so), never an error."""
        return self.recommend_many([RecommendRequest(history, k, frozenset(exclude))])[0]

    def recommend_many(self, requests: Sequence[RecommendRequest]) -> list[list[Recommendation]]:
        """:meth:`recommend` for each request, the catalog scored once for them all (one
        ``score`` call over every history) when this model ranks by exact scores; what a
        request gets is what it would get alone (the rows of ``score`` are independent)."""
        out: list[list[Recommendation]] = [[] for _ in requests]
        todo = [n for n, r in enumerate(requests) if r.history]
        for n, r in enumerate(requests):
            if not r.history:
                out[n] = self._popular.recommend(r.k, r.exclude)
        sizes = [requests[n].k + len({x.item_id for x in requests[n].history})
                 + len(requests[n].exclude) + SEARCH_MARGIN for n in todo]
        exact = type(self).candidates is Retriever.candidates
        if exact:  # one score call for all
            scores = self.score([requests[n].history for n in todo]) if todo else None

        def found(r: int, n: int, size: int) -> list[SearchHit]:
            request = requests[n]
            if exact:
                return self._top(request.history, scores[r], size, request.exclude)
            return self.candidates(request.history, size, request.exclude)

        for r, (n, size) in enumerate(zip(todo, sizes, strict=True)):
            hits = found(r, n, size)
            picks = self._slate(requests[n], hits)
            # A category over its share means the candidates ran out of others: look deeper.
            while (self._crowded(picks, requests[n].k) and len(hits) >= size
                   and size < len(self.dataset.items)):
                size *= 4
                hits = found(r, n, size)
                picks = self._slate(requests[n], hits)
            out[n] = self._with_evidence(requests[n], picks)
        return out

    def _slate(self, request: RecommendRequest, hits: Iterable[SearchHit]) -> list[SearchHit]:
        """The request's ``k`` picks among ``hits``, categories spread (see
        :attr:`category_share`)."""
        picks = self._pick(request.history, hits, request.exclude)
        if self.category_share is None:
            return list(itertools.islice(picks, request.k))
        leaf = self._leaf_categories
        return spread_categories(picks, lambda h: leaf[h.item_id], request.k, self.category_share)

    def _crowded(self, picks: Sequence[SearchHit], k: int) -> bool:
        """Whether one category holds more of ``picks`` than :attr:`category_share` allows."""
        if self.category_share is None or not picks:
            return False
        counts = Counter(self._leaf_categories[h.item_id] for h in picks)
        counts.pop(None, None)
        return bool(counts) and max(counts.values()) > max_per_category(k, self.category_share)

    def _with_evidence(self, request: RecommendRequest,
                       picks: Iterable[SearchHit]) -> list[Recommendation]:
        """``picks`` as recommendations, each with its evidence."""
        out = []
        for hit in picks:
            evidence = self.evidence(request.history, hit.item_id)
            out.append(Recommendation(hit.item_id, self.dataset.items[hit.item_id].title,
                                      hit.score, render("explanation", evidence=evidence),
                                      evidence))
        return out

    def candidates(self, history: History, n: int,
                   exclude: Collection[str] = ()) -> list[SearchHit]:
        """Up to ``n`` items in score order, the history and ``exclude`` masked. Exact: one
        ``score`` row; a model with an approximate index overrides this."""
        return self._top(history, self.score([history])[0], n, exclude)

    def _top(self, history: History, row: np.ndarray, n: int,
             exclude: Collection[str]) -> list[SearchHit]:
        """The ``n`` best items of one ``score`` row, the history and ``exclude`` masked: the
        first ``n`` of a stable sort by score (ties in catalog order), found by partitioning."""
        scores = np.array(row, dtype=np.float32)
        index = self.dataset.item_index
        scores[[index[i] for i in {x.item_id for x in history} | set(exclude) if i in index]] = -np.inf
        return [SearchHit(self.dataset.item_ids[i], float(scores[i]), {})
                for i in top_indices(scores, n) if np.isfinite(scores[i])]

    @property
    def evidence_vectors(self) -> np.ndarray | None:
        """Unit item vectors (catalog order) in which evidence is measured; None: no evidence."""
        return None

    def evidence(self, history: History, item_id: str) -> list[Evidence]:
        """The history items closest to ``item_id``, closest first (none without vectors)."""
        vectors = self.evidence_vectors
        if vectors is None:
            return []
        return closest_in_history(self.dataset, history, vectors, item_id, self.evidence_per_item)

    def _pick(self, history: History, hits: Iterable[SearchHit],
              exclude: Collection[str]) -> Iterator[SearchHit]:
        """The hits, in order, that the user does not have and ``exclude`` does not hold. A
        hit with the title of a history item or of a better hit is skipped (the same product
        under another id)."""
        keys = self._title_keys
        skip = {x.item_id for x in history} | set(exclude)
        titles = {keys[i] for i in {x.item_id for x in history} if i in keys}
        for hit in hits:
            key = keys.get(hit.item_id)
            if key is None or hit.item_id in skip or key in titles:
                continue
            titles.add(key)
            yield hit

    @cached_property
    def _title_keys(self) -> dict[str, str]:
        """Every catalog item's ``title_key`` (computed once, not per request)."""
        return {i: item.title_key for i, item in self.dataset.items.items()}

    @cached_property
    def _leaf_categories(self) -> dict[str, str | None]:
        """Every catalog item's leaf category (None: it has none)."""
        return {i: item.category[-1] if item.category else None
                for i, item in self.dataset.items.items()}

    @cached_property
    def _popular(self) -> PopularItems:
        return PopularItems(self.dataset)


def closest_in_history(
    dataset: Dataset, history: History, unit_vectors: np.ndarray, item_id: str, top: int
) -> list[Evidence]:
    """The ``top`` distinct history items closest to ``item_id`` (cosine of unit item vectors
    in catalog order), closest first; ties keep the newest first."""
    history_ids = list(dict.fromkeys(x.item_id for x in reversed(history)))
    index = dataset.item_index
    sims = unit_vectors[[index[i] for i in history_ids]] @ unit_vectors[index[item_id]]
    order = np.argsort(-sims, kind="stable")[:top]
    return [Evidence(history_ids[t], dataset.items[history_ids[t]].title, float(sims[t])) for t in order]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` with every row scaled to length 1 (a zero row stays zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def recency_weighted_rows(dataset: Dataset, histories: Sequence[History], decay: float):
    """A sparse histories x catalog matrix: row r weighs history r's items by ``decay`` **
    (age in the history; 0 for the newest), so a history's score is its row times an item x
    item (or item x feature) matrix."""
    import scipy.sparse as sp

    index = dataset.item_index
    rows, cols, weights = [], [], []
    for r, history in enumerate(histories):
        for age, inter in enumerate(reversed(history)):
            rows.append(r)
            cols.append(index[inter.item_id])
            weights.append(decay**age)
    return sp.csr_matrix((np.asarray(weights, dtype=np.float32), (rows, cols)),
                         shape=(len(histories), len(index)))


def interaction_counts(dataset: Dataset, histories: Iterable[History]) -> np.ndarray:
    """How many interactions each catalog item has in ``histories`` (float32, catalog order)."""
    index = dataset.item_index
    counts = np.zeros(len(index), dtype=np.float32)
    for history in histories:
        for inter in history:
            counts[index[inter.item_id]] += 1
    return counts


class PopularItems:
    """The empty-history fallback: the catalog's most interacted-with items."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @cached_property
    def _ranking(self) -> tuple[list[str], np.ndarray]:
        """Item ids, most interacted-with first (ties in catalog order), and each item's share."""
        counts = interaction_counts(self.dataset, self.dataset.histories.values())
        order = np.argsort(-counts, kind="stable")
        share = counts / max(1, len(self.dataset.interactions))
        return [self.dataset.item_ids[i] for i in order], share

    def recommend(self, k: int, seen: Collection[str] = ()) -> list[Recommendation]:
        order, share = self._ranking
        top = [i for i in order if i not in seen][:k]
        return [
            Recommendation(
                item_id=i,
                title=self.dataset.items[i].title,
                score=float(share[self.dataset.item_index[i]]),
                explanation=render("explanation", evidence=[]),
            )
            for i in top
        ]
