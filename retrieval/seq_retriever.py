"""The trained seqrec retriever in the product: its item vectors in Chroma, its query tower
for each user, and evidence from the user's own history.

- :class:`SeqIndex` stores a checkpoint's item vectors in their own Chroma collection
  (named after the dataset and the checkpoint's hash), next to the MiniLM text index, which
  stays usable. Search ranks by the model's inner product, through the exact reduction of
  inner product to cosine search (one extra dimension).
- :class:`SeqRetriever` encodes a history with the query tower, asks that collection for the
  nearest items, and attaches as evidence the history items closest to each recommendation
  in the model's item space (cosine).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from recagent.catalog.errors import IndexUnavailable, RecAgentError
from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever, unit_rows
from recagent.retrieval.index import (
    BuildStats,
    ItemIndex,
    SearchHit,
    _chunks,
    _collection_name,
    item_metadata,
    text_hashes,
)
from recagent.retrieval.registry import RetrieverContext
from recagent.retrieval.seq_train import SeqScorer

__all__ = ["SeqIndex", "SeqRetriever", "checkpoint_hash", "is_seqrec_checkpoint", "load_seq_scorer"]


def is_seqrec_checkpoint(path: Path) -> bool:
    """True for a ``recagent train-retriever`` output folder (``model.pt`` + ``metadata.json``)."""
    return (path / "model.pt").is_file() and (path / "metadata.json").is_file()


def checkpoint_hash(directory: Path) -> str:
    """The checkpoint's version: the first 16 hex digits of the SHA-256 of its ``model.pt``.

    It names the seqrec Chroma collection and keys the fusion choice (``fusion.json``'s
    ``model_sha``)."""
    return hashlib.sha256((Path(directory) / "model.pt").read_bytes()).hexdigest()[:16]


def load_seq_scorer(directory: Path, dataset: Dataset) -> SeqScorer:
    """The trained seqrec model in ``directory`` (a clear error when there is none)."""
    if not (directory / "model.pt").is_file():
        raise RecAgentError(
            f"no trained seqrec model for {dataset.name!r} in {directory}: "
            "run `recagent train-retriever` with the same --data first"
        )
    return SeqScorer.load(directory, dataset)


class SeqIndex(ItemIndex):
    """A seqrec checkpoint's item vectors in a Chroma collection of their own.

    Every record's ``text_hash`` holds the checkpoint hash, so the inherited
    ``stored_hashes`` / ``is_current`` tell a current collection from a partial one.
    """

    def __init__(self, client: Any, dataset: Dataset, scorer: SeqScorer, directory: Path,
                 *, batch_size: int = 256) -> None:
        self.client = client
        self.dataset = dataset
        self.scorer = scorer
        self.directory = Path(directory)
        self.batch_size = batch_size
        self.version = checkpoint_hash(self.directory)
        self.name = _collection_name(dataset.name, f"seqrec-{self.version}")
        self._collection: Any = None

    def _configuration(self) -> dict[str, Any]:
        # The inner-product reduction packs the stored vectors close together (the extra
        # dimension dominates short ones), where HNSW at Chroma's defaults (ef 100,
        # 16 neighbours) missed 85 of 2,000 true top-10 items (10 builds of the tiny
        # shop, 20 users each); a wider search and a denser graph missed none.
        return {"hnsw": {"space": "cosine", "ef_search": 400, "ef_construction": 400,
                         "max_neighbors": 32}}

    def _metadata(self) -> dict[str, Any]:
        return {"dataset": self.dataset.name, "model": "seqrec",
                "checkpoint": str(self.directory), "checkpoint_hash": self.version}

    @cached_property
    def _catalog_hashes(self) -> dict[str, str]:
        return dict.fromkeys(self.dataset.item_ids, self.version)

    @cached_property
    def vectors(self) -> np.ndarray:
        return self.scorer.item_vectors()

    def build(self, *, show_progress: bool = False, _fail_after_batches: int | None = None) -> BuildStats:
        start = time.perf_counter()
        stored_metadata = self.stored_metadata()
        stored = text_hashes(stored_metadata)
        todo = [i for i in self.dataset.item_ids if stored.get(i) != self.version]
        stale = [i for i in stored if i not in self.dataset.item_index]
        for chunk in _chunks(stale, self.batch_size):
            self.collection.delete(ids=chunk)
        refreshed = self._refresh_metadata(stored_metadata)
        index = self.dataset.item_index
        for chunk in _chunks(todo, self.batch_size):
            self.collection.upsert(
                ids=chunk,
                embeddings=self._stored(self.vectors[[index[i] for i in chunk]]),
                metadatas=[item_metadata(self.dataset.items[i], self.version) for i in chunk],
            )
        return BuildStats(self.name, len(index), len(todo), len(stale), time.perf_counter() - start,
                          refreshed)

    def embeddings(self) -> np.ndarray:
        return self.vectors

    @cached_property
    def _max_norm(self) -> float:
        return float(np.linalg.norm(self.vectors, axis=1).max()) or 1.0

    def _stored(self, rows: np.ndarray) -> np.ndarray:
        """Item vectors as stored: [v, sqrt(M² - |v|²)] / M, all of norm 1 (M = the largest
        norm). For a query [q, 0], cosine = q·v / (|q|·M): the inner-product order, in the
        cosine space where HNSW finds every item (in "ip" space it misses many: measured
        171 of 302 items reachable on the tiny shop)."""
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        extra = np.sqrt(np.maximum(self._max_norm**2 - norms**2, 0.0))
        return np.hstack([rows, extra]) / self._max_norm

    def search(self, vectors: np.ndarray, k: int, *, where=None) -> list[list[SearchHit]]:
        """Top-``k`` items by inner product with each query; scores are the inner products."""
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        queries = np.hstack([vectors / norms[:, None], np.zeros((len(vectors), 1), np.float32)])
        hits = super().search(queries, k, where=where)
        return [[SearchHit(h.item_id, h.score * float(n) * self._max_norm, h.metadata) for h in row]
                for row, n in zip(hits, norms, strict=True)]


class SeqRetriever(Retriever):
    """Candidates from the seqrec query tower and its Chroma collection, with evidence."""

    name = "seqrec"

    def __init__(self, dataset: Dataset, scorer: SeqScorer, index: SeqIndex, *,
                 evidence_per_item: int = 3) -> None:
        self.dataset = dataset
        self.scorer = scorer
        self.index = index
        self.evidence_per_item = evidence_per_item

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> SeqRetriever:
        scorer = load_seq_scorer(ctx.checkpoint, ctx.dataset)
        return cls(ctx.dataset, scorer, SeqIndex(ctx.chroma(), ctx.dataset, scorer, ctx.checkpoint))

    @cached_property
    def evidence_vectors(self) -> np.ndarray:
        return unit_rows(self.index.vectors)

    def fit(self, train: Sequence[History]) -> None:
        """Trained by ``recagent train-retriever``; nothing is refitted."""

    def prepare(self, *, show_progress: bool = False) -> BuildStats:
        """Build or complete the checkpoint's Chroma collection."""
        return self.index.build(show_progress=show_progress)

    def candidates(self, history: History, n: int,
                   exclude: Collection[str] = ()) -> list[SearchHit]:
        """The ``n`` best items by inner product, from the checkpoint's Chroma collection."""
        if self.index.collection.count() < len(self.dataset.items):
            raise IndexUnavailable(f"seqrec index {self.index.name!r} is incomplete: run "
                                   f"`recagent index --encoder {self.index.directory}`")
        return self.index.search(self.scorer.query_vectors([history]), n)[0]

    def score(self, histories: Sequence[History]) -> np.ndarray:
        """Every item's score for each history (exact inner products)."""
        return self.scorer.score(histories)
