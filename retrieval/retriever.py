"""History-text retrieval: encode a user's history text, find the closest items.

Two entry points share one query encoder:
- :meth:`HistoryRetriever.recommend` asks the Chroma index (approximate nearest neighbours)
  for one user's candidates and attaches evidence: the history items each candidate is
  closest to.
- :meth:`HistoryRetriever.score` scores every item exactly (dot products against all item
  embeddings), which full-ranking evaluation needs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.protocol.scorer import History
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import ItemIndex, SearchHit
from recagent.retrieval.popularity import Popularity
from recagent.retrieval.text import history_text

__all__ = [
    "SEARCH_MARGIN",
    "Evidence",
    "HistoryRetriever",
    "PopularItems",
    "Recommendation",
    "closest_in_history",
    "with_evidence",
]

SEARCH_MARGIN = 50
"""Extra neighbours asked of the approximate (HNSW) index beyond ``k`` + the user's seen
items; the hits come back in exact score order, so the margin only adds recall. (It did not
stop HNSW from missing true top items in the seqrec collection: a wider HNSW search there
did, see ``SeqIndex.collection``.)"""


@dataclass(frozen=True)
class Evidence:
    """A history item that a recommendation is close to, with the cosine similarity."""

    item_id: str
    title: str
    similarity: float


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    score: float
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)


class HistoryRetriever:
    """Retrieves items whose text is closest to the text of a user's history."""

    name = "text"

    def __init__(
        self,
        dataset: Dataset,
        encoder: TextEncoder,
        index: ItemIndex,
        *,
        token_budget: int | None = None,
        evidence_per_item: int = 3,
    ) -> None:
        self.dataset = dataset
        self.encoder = encoder
        self.index = index
        self._token_budget = token_budget
        self.evidence_per_item = evidence_per_item

    @property
    def token_budget(self) -> int:
        return self._token_budget or self.encoder.max_tokens

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        return self.index.embeddings()

    def history_texts(self, histories: Sequence[History]) -> list[str]:
        return [
            history_text(
                self.dataset, h, count_tokens=self.encoder.count_tokens, budget=self.token_budget
            )
            for h in histories
        ]

    def query_vectors(self, histories: Sequence[History], *, show_progress: bool = False) -> np.ndarray:
        return self.encoder.encode(self.history_texts(histories), show_progress=show_progress)

    # -- Scorer interface (full ranking) -------------------------------------------------
    def fit(self, train: Sequence[History]) -> None:
        """Nothing to learn: item and query vectors both come from the text encoder."""

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.query_vectors(histories) @ self.item_embeddings.T

    # -- Candidate retrieval for one user ------------------------------------------------
    def recommend(self, history: History, k: int = 10) -> list[Recommendation]:
        """Top ``k`` items for ``history`` that the user does not already have.

        An empty history gets the most popular items of the catalog instead (with that
        said in the explanation), never an error.
        """
        seen = {x.item_id for x in history}
        if not history:
            return self._popular(k, seen)
        query = self.query_vectors([history])
        hits = self.index.search(query, k + len(seen) + SEARCH_MARGIN)[0]
        return with_evidence(self.dataset, history, hits, self.item_embeddings, k=k,
                             per_item=self.evidence_per_item)

    @cached_property
    def _popular_items(self) -> PopularItems:
        return PopularItems(self.dataset)

    def _popular(self, k: int, seen: set[str]) -> list[Recommendation]:
        return self._popular_items.recommend(k, seen)


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


def with_evidence(
    dataset: Dataset,
    history: History,
    hits: Sequence[SearchHit],
    unit_vectors: np.ndarray,
    *,
    k: int,
    per_item: int,
) -> list[Recommendation]:
    """The first ``k`` hits the user does not have, each with its closest history items. A hit
    with the title of a history item or of a better hit is skipped (the same product under
    another id)."""
    seen = {x.item_id for x in history}
    titles = {dataset.items[i].title_key for i in seen if i in dataset.items}
    picked = []
    for hit in hits:
        item = dataset.items.get(hit.item_id)
        if item is None or hit.item_id in seen or item.title_key in titles:
            continue
        titles.add(item.title_key)
        picked.append(hit)
        if len(picked) == k:
            break
    out = []
    for hit in picked:
        evidence = closest_in_history(dataset, history, unit_vectors, hit.item_id, per_item)
        out.append(
            Recommendation(
                item_id=hit.item_id,
                title=dataset.items[hit.item_id].title,
                score=hit.score,
                explanation=render("explanation", evidence=evidence),
                evidence=evidence,
            )
        )
    return out


class PopularItems:
    """The empty-history fallback: the catalog's most interacted-with items."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @cached_property
    def _ranking(self) -> tuple[list[str], np.ndarray]:
        """Item ids, most interacted-with first (ties in catalog order), and each item's share."""
        popularity = Popularity(self.dataset)
        popularity.fit(list(self.dataset.histories.values()))
        order = np.argsort(-popularity.counts, kind="stable")
        share = popularity.counts / max(1, len(self.dataset.interactions))
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
