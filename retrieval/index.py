"""The Chroma index of item embeddings: one collection per (dataset, encoder version).

Builds are incremental: every record stores the hash of the text it was encoded from, so a
re-run encodes only new or changed items and deletes items that left the catalog. Records
are written in small batches as they are encoded, so a build that crashes half-way leaves
its finished batches behind and the next run picks up from there.

The same class works on the embedded store (``chromadb.PersistentClient``) and on a Chroma
server (``chromadb.HttpClient``); see :func:`open_chroma`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from tqdm.auto import tqdm

from recagent.catalog.errors import IndexUnavailable
from recagent.catalog.model import Dataset, Item
from recagent.prompts import load_template
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.text import item_text

__all__ = ["BuildStats", "ItemIndex", "SearchHit", "item_metadata", "open_chroma"]

_PAGE = 2000  # rows per get() page
_QUERY_BATCH = 100  # query vectors per call (Chroma fails on ~1000: too many SQL variables)


def open_chroma(store: str | Path | None = None, url: str | None = None) -> Any:
    """A Chroma client: a server at ``url`` (``http://host:port``) or the embedded store in ``store``."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise IndexUnavailable(f"not a Chroma server URL: {url!r}")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or 8000,
                ssl=parsed.scheme == "https",
                settings=settings,
            )
            client.heartbeat()
        except Exception as exc:  # chromadb raises assorted connection errors
            raise IndexUnavailable(f"cannot reach the Chroma server at {url}: {exc}") from exc
        return client
    if store is None:
        raise ValueError("open_chroma needs a store directory or a server URL")
    Path(store).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(store), settings=settings)


def item_metadata(item: Item, text_hash: str) -> dict[str, str | float | list[str]]:
    """Filterable metadata of ``item`` (Chroma takes no None values: unknown keys are left out).
    ``categories``: every category the item is in (:attr:`Item.categories`), for a
    ``$contains`` filter that finds a war film filed under Action."""
    meta: dict[str, str | float | list[str]] = {"text_hash": text_hash, "title": item.title[:500]}
    if item.category:
        meta["category"] = item.category[-1]
        meta["top_category"] = item.category[0]
        meta["category_path"] = " > ".join(item.category)
    if item.categories:  # an item of no path may still be in other categories (also_in)
        meta["categories"] = list(item.categories)
    if item.brand:
        meta["brand"] = item.brand
    if item.price is not None:
        meta["price"] = float(item.price)
    return meta


def text_hashes(stored: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """item id -> the ``text_hash`` in its stored metadata ("" where there is none)."""
    return {item_id: str(meta.get("text_hash", "")) for item_id, meta in stored.items()}


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _collection_name(dataset_name: str, encoder_version: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", dataset_name).strip("-._") or "dataset"
    return f"{slug[:40]}-{encoder_version}"


@dataclass(frozen=True)
class BuildStats:
    collection: str
    total: int
    encoded: int
    deleted: int
    seconds: float
    refreshed: int = 0  # items whose metadata alone was brought up to date

    @property
    def unchanged(self) -> int:
        return self.total - self.encoded


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    score: float  # cosine similarity
    metadata: Mapping[str, Any]


class ItemIndex:
    """Item embeddings of one dataset under one encoder, in a Chroma collection."""

    def __init__(self, client: Any, dataset: Dataset, encoder: TextEncoder, *, batch_size: int = 256):
        self.client = client
        self.dataset = dataset
        self.encoder = encoder
        self.batch_size = batch_size
        self.name = _collection_name(dataset.name, encoder.version)
        self._collection: Any = None

    @property
    def collection(self) -> Any:
        if self._collection is None:
            self._collection = self.client.get_or_create_collection(
                self.name, configuration=self._configuration(), metadata=self._metadata(),
                embedding_function=None)
        return self._collection

    def _configuration(self) -> dict[str, Any]:
        """The collection's index settings (HNSW over cosine distance)."""
        return {"hnsw": {"space": "cosine"}}

    def _metadata(self) -> dict[str, Any]:
        """What the collection records about how its vectors were made."""
        return {
            "dataset": self.dataset.name,
            "encoder": self.encoder.name,
            "encoder_version": self.encoder.version,
            "item_text_version": load_template("item_text").version,
        }

    def _pages(self, include: list[str]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=_PAGE, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])

    def stored_metadata(self) -> dict[str, dict[str, Any]]:
        """item id -> the metadata stored with its embedding."""
        out: dict[str, dict[str, Any]] = {}
        for page in self._pages(["metadatas"]):
            for item_id, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[item_id] = dict(meta or {})
        return out

    def stored_hashes(self) -> dict[str, str]:
        """item id -> hash of the text its stored embedding was computed from."""
        return text_hashes(self.stored_metadata())

    def _stale_metadata(self, stored: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """item id -> the metadata update that makes an item's stored metadata what
        :func:`item_metadata` says now, for the items whose text (and so embedding) is current
        but whose metadata is not (an index built before ``categories`` was stored). Chroma
        merges an update into what is stored; a key set to None is removed."""
        hashes, items = self._catalog_hashes, self.dataset.items
        out: dict[str, dict[str, Any]] = {}
        for item_id, meta in stored.items():
            if item_id in hashes and meta.get("text_hash") == hashes[item_id]:
                want = item_metadata(items[item_id], hashes[item_id])
                if meta != want:
                    out[item_id] = {**dict.fromkeys(meta), **want}
        return out

    def build(self, *, show_progress: bool = False, _fail_after_batches: int | None = None) -> BuildStats:
        """Bring the collection up to date with the catalog; returns what it did.

        ``_fail_after_batches`` simulates a crash (for tests of resumable builds).
        """
        start = time.perf_counter()
        stored_metadata = self.stored_metadata()
        stored = text_hashes(stored_metadata)
        texts, hashes = self._catalog_texts, self._catalog_hashes
        todo = [item_id for item_id, h in hashes.items() if stored.get(item_id) != h]
        stale = [item_id for item_id in stored if item_id not in hashes]
        for chunk in _chunks(stale, self.batch_size):
            self.collection.delete(ids=chunk)
        refreshed = self._refresh_metadata(stored_metadata)
        with tqdm(
            total=len(todo), desc=f"Encoding items ({self.name})", unit="item",
            disable=not show_progress or not todo,
        ) as bar:
            for n, chunk in enumerate(_chunks(todo, self.batch_size)):
                if _fail_after_batches is not None and n >= _fail_after_batches:
                    raise RuntimeError("simulated crash during index build")
                vectors = self.encoder.encode([texts[i] for i in chunk])
                self.collection.upsert(
                    ids=chunk,
                    embeddings=vectors,
                    documents=[texts[i] for i in chunk],
                    metadatas=[item_metadata(self.dataset.items[i], hashes[i]) for i in chunk],
                )
                bar.update(len(chunk))
        return BuildStats(
            collection=self.name,
            total=len(hashes),
            encoded=len(todo),
            deleted=len(stale),
            seconds=time.perf_counter() - start,
            refreshed=refreshed,
        )

    def _refresh_metadata(self, stored: Mapping[str, Mapping[str, Any]]) -> int:
        """Bring the stored metadata of the items whose embedding is current up to date
        (:meth:`_stale_metadata`); returns how many were updated."""
        refresh = self._stale_metadata(stored)
        for chunk in _chunks(list(refresh), self.batch_size):
            self.collection.update(ids=chunk, metadatas=[refresh[i] for i in chunk])
        return len(refresh)

    def is_current(self) -> bool:
        """True when exactly the catalog's items are stored, each encoded from its current text
        and with its current metadata."""
        stored = self.stored_metadata()
        return text_hashes(stored) == self._catalog_hashes and not self._stale_metadata(stored)

    @cached_property
    def _catalog_texts(self) -> dict[str, str]:
        return {item_id: item_text(item) for item_id, item in self.dataset.items.items()}

    @cached_property
    def _catalog_hashes(self) -> dict[str, str]:
        return {item_id: _text_hash(text) for item_id, text in self._catalog_texts.items()}

    def embeddings(self) -> np.ndarray:
        """All item embeddings as a matrix aligned with ``dataset.item_ids``."""
        index = self.dataset.item_index
        matrix = np.full((len(index), self.encoder.dimension), np.nan, dtype=np.float32)
        for page in self._pages(["embeddings"]):
            rows = [index[i] for i in page["ids"] if i in index]
            kept = [k for k, i in enumerate(page["ids"]) if i in index]
            matrix[rows] = np.asarray(page["embeddings"], dtype=np.float32)[kept]
        missing = int(np.isnan(matrix[:, 0]).sum())
        if missing:
            raise IndexUnavailable(
                f"index {self.name!r} lacks {missing} of {len(index)} items: run `recagent index`"
            )
        return matrix

    def search(
        self, vectors: np.ndarray, k: int, *, where: Mapping[str, Any] | None = None
    ) -> list[list[SearchHit]]:
        """Approximate top-``k`` items for each query vector (cosine), optionally filtered."""
        k = max(0, min(k, self.collection.count()))
        if k == 0:
            return [[] for _ in range(len(vectors))]
        results: list[list[SearchHit]] = []
        for start in range(0, len(vectors), _QUERY_BATCH):
            res = self.collection.query(
                query_embeddings=np.asarray(vectors[start : start + _QUERY_BATCH], dtype=np.float32),
                n_results=k,
                where=dict(where) if where else None,
                include=["distances", "metadatas"],
            )
            for ids, dists, metas in zip(res["ids"], res["distances"], res["metadatas"], strict=True):
                results.append(
                    [
                        SearchHit(item_id=i, score=1.0 - float(d), metadata=m or {})
                        for i, d, m in zip(ids, dists, metas, strict=True)
                    ]
                )
        return results


def _chunks(seq: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])
