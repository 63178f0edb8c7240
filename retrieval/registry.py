"""Retrievers by name: one registry for ``recagent recommend --retriever``, ``recagent eval
--models``, the evaluation harness and the product's runtime.

A factory takes a :class:`RetrieverContext` (what the application has: the dataset, the
item-text index, a Chroma client, the checkpoint folder) and returns an unfitted
:class:`~recagent.retrieval.base.Retriever`. A factory may be given as ``"module:attribute"``,
imported on first use, so that listing the names (``--help``) loads no model library.

Adding a retriever is one new module and one ``RETRIEVERS.register(...)`` line at the end of
this file; see docs/extending-retrievers.md. Evaluation-only models (the peers) are
registered by ``recagent.evals.models`` with ``serves=False``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recagent.catalog.errors import RecAgentError

if TYPE_CHECKING:
    from recagent.catalog.model import Dataset
    from recagent.protocol.split import LeaveOneOutSplit
    from recagent.retrieval.base import Retriever
    from recagent.retrieval.index import ItemIndex

__all__ = ["RETRIEVERS", "Factory", "Registry", "RetrieverContext"]


@dataclass(frozen=True)
class RetrieverContext:
    """What a factory may use; the callables build their part on first call (and the
    application caches it), so a factory pays only for what it touches."""

    dataset: Dataset
    text_index: Callable[[], ItemIndex]
    """The item-text Chroma index (its encoder: ``.encoder``)."""
    chroma: Callable[[], Any]
    """A client of the Chroma store, for models with a collection of their own."""
    checkpoint: Path
    """The trained seqrec's folder (``recagent train-retriever --out``)."""
    split: LeaveOneOutSplit | None = None
    """The split a model tunes its choices on; None: leave-one-out of ``dataset``."""


Factory = Callable[[RetrieverContext], "Retriever"]


@dataclass(frozen=True)
class _Entry:
    factory: Factory | str
    help: str
    serves: bool
    evaluates: bool

    def resolve(self) -> Factory:
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


class Registry:
    """Name -> factory of a :class:`~recagent.retrieval.base.Retriever`."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, factory: Factory | str, *, help: str, serves: bool = True,
                 evaluates: bool = True) -> None:
        """Add ``name``. ``serves``: ``recommend --retriever`` and the assistant may use it;
        ``evaluates``: ``eval --models`` may. A name is registered once."""
        if name in self._entries:
            raise ValueError(f"a retriever called {name!r} is already registered")
        if isinstance(factory, str) and ":" not in factory:
            raise ValueError(f"a factory path is 'module:attribute', not {factory!r}")
        self._entries[name] = _Entry(factory, help, serves, evaluates)

    def unregister(self, name: str) -> None:
        del self._entries[name]

    def names(self, *, serves: bool | None = None, evaluates: bool | None = None) -> tuple[str, ...]:
        """Registered names in registration order, those with the given flags."""
        return tuple(n for n, e in self._entries.items()
                     if serves in (None, e.serves) and evaluates in (None, e.evaluates))

    def help(self, name: str) -> str:
        return self._entries[name].help

    def create(self, name: str, ctx: RetrieverContext, *, serves: bool | None = None,
               evaluates: bool | None = None) -> Retriever:
        """A new, unfitted model called ``name``, one with the given flags."""
        names = self.names(serves=serves, evaluates=evaluates)
        if name not in names:
            raise RecAgentError(f"unknown model {name!r}; choose from {', '.join(names)}")
        return self._entries[name].resolve()(ctx)


def _auto(ctx: RetrieverContext) -> Retriever:
    """The best this dataset has: fusion (seqrec + recency-weighted item-kNN, the model that
    beats the peers) when a trained seqrec checkpoint that fits the catalog comes with its
    fusion choice (``train-retriever`` tunes it), seqrec alone when the choice is missing,
    and item-kNN fused with text (fitted in seconds) when there is no checkpoint (or one of an
    older catalog)."""
    if (ctx.checkpoint / "model.pt").is_file():
        from recagent.retrieval.fusion_choice import fusion_is_tuned

        try:
            return RETRIEVERS.create("fusion" if fusion_is_tuned(ctx.checkpoint) else "seqrec", ctx)
        except RecAgentError:
            pass
    return RETRIEVERS.create("cooc-text", ctx)


RETRIEVERS = Registry()
RETRIEVERS.register("popularity", "recagent.retrieval.popularity:Popularity.from_context",
                    help="the most interacted-with items")
RETRIEVERS.register("itemknn", "recagent.retrieval.cooccurrence:ItemKNN.from_context",
                    help="item-to-item co-occurrence (item-kNN)")
RETRIEVERS.register("text", "recagent.retrieval.retriever:HistoryRetriever.from_context",
                    help="history text against item text (MiniLM, the Chroma index)")
RETRIEVERS.register("seqrec", "recagent.retrieval.seq_retriever:SeqRetriever.from_context",
                    help="the trained sequence retriever (needs `recagent train-retriever`)")
RETRIEVERS.register("fusion", "recagent.retrieval.fusion_choice:fusion_retriever",
                    help="seqrec + item-kNN, text for new items (needs `recagent train-retriever`)")
RETRIEVERS.register("cooc-text", "recagent.retrieval.cooc_text:CoocTextRetriever.from_context",
                    help="item-kNN fused with text, no training (the default before any)")
RETRIEVERS.register("auto", _auto, evaluates=False,
                    help="fusion when the dataset has a trained checkpoint, else cooc-text")
