"""Wires the components one command needs: dataset → encoder → Chroma index → retriever.

Everything is built lazily, on first use, so a command only pays for what it touches. The
retrievers themselves come from the registry (``recagent.retrieval.registry``), built from
this runtime's :meth:`Runtime.context`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.catalog.load import load_dataset
from recagent.catalog.model import Dataset
from recagent.protocol.split import LeaveOneOutSplit
from recagent.retrieval.base import Retriever
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import BuildStats, ItemIndex, open_chroma
from recagent.retrieval.registry import RETRIEVERS, RetrieverContext

__all__ = ["Runtime"]


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def dataset(self) -> Dataset:
        return load_dataset(self.settings.data)

    @cached_property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.settings.encoder, dtype=self.settings.encoder_dtype)

    @cached_property
    def chroma(self) -> Any:
        return open_chroma(self.settings.store, self.settings.chroma_url)

    @cached_property
    def index(self) -> ItemIndex:
        return ItemIndex(self.chroma, self.dataset, self.encoder)

    def ensure_index(self, *, show_progress: bool = True) -> BuildStats:
        """Build or update the index (a no-op apart from a hash check when it is current)."""
        return self.index.build(show_progress=show_progress)

    def context(self, checkpoint: Path | None = None,
                split: LeaveOneOutSplit | None = None) -> RetrieverContext:
        """What the registry's factories build from: this runtime's dataset, index and store;
        ``checkpoint`` overrides where the trained seqrec lives, ``split`` what tuned models
        tune on."""
        return RetrieverContext(self.dataset, lambda: self.index, lambda: self.chroma,
                                checkpoint or self.model_dir("seqrec"), split)

    def recommender(self, kind: str = "auto") -> Retriever:
        """The retriever ``recommend`` uses, fitted on every history of the dataset: one the
        registry serves (``RETRIEVERS.names(serves=True)``); "auto" picks the best there is."""
        served = RETRIEVERS.names(serves=True)
        if kind not in served:
            raise RecAgentError(f"retriever must be one of {', '.join(served)}, not {kind!r}")
        model = RETRIEVERS.create(kind, self.context())
        model.fit(list(self.dataset.histories.values()))
        return model

    def model_dir(self, name: str = "seqrec") -> Path:
        """Where ``recagent train-retriever`` keeps the trained model of this dataset."""
        slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", self.dataset.name).strip("-") or "dataset"
        return self.settings.home / "models" / f"{slug}-{name}"
