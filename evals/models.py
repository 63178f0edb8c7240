"""Every model the harness can evaluate by name: the retriever registry's (the product's
models) and the peers, which are registered here as evaluation-only (``serves=False``).

Importing this module loads no model library: the peers' factories are imported when one
is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recagent.retrieval.registry import RETRIEVERS

if TYPE_CHECKING:
    from recagent.app.runtime import Runtime
    from recagent.protocol.split import LeaveOneOutSplit
    from recagent.retrieval.base import Retriever

__all__ = ["RETRIEVERS", "harness_model"]

_PEER = "a peer, evaluation only"
RETRIEVERS.register("als", "recagent.evals.peers:ImplicitALS.from_context", serves=False,
                    help=f"implicit's ALS ({_PEER})")
RETRIEVERS.register("implicit-itemknn", "recagent.evals.peers:ImplicitItemKNN.from_context",
                    serves=False, help=f"implicit's item-kNN ({_PEER})")
RETRIEVERS.register("sasrec", "recagent.evals.peers:RecToolsSASRec.from_context", serves=False,
                    help=f"RecTools SASRec ({_PEER})")
RETRIEVERS.register("bert4rec", "recagent.evals.peers:RecToolsBERT4Rec.from_context",
                    serves=False, help=f"RecTools BERT4Rec ({_PEER})")
RETRIEVERS.register("recbole-sasrec", "recagent.evals.recbole_peer:recbole_sasrec", serves=False,
                    help=f"RecBole SASRec in its own virtualenv ({_PEER})")
RETRIEVERS.register("recbole-bert4rec", "recagent.evals.recbole_peer:recbole_bert4rec",
                    serves=False, help=f"RecBole BERT4Rec in its own virtualenv ({_PEER})")


def harness_model(rt: Runtime, name: str, *, checkpoint=None,
                  split: LeaveOneOutSplit | None = None, show_progress: bool = True) -> Retriever:
    """The model called ``name``, built from ``rt`` (``checkpoint`` and ``split`` as in
    :meth:`Runtime.context`) with what it reads prepared; the harness fits it."""
    model = RETRIEVERS.create(name, rt.context(checkpoint, split), evaluates=True)
    model.prepare(show_progress=show_progress)
    return model
