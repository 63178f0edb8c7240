"""Every model the harness can evaluate by name: the product's scorers and the peers."""

from __future__ import annotations

from recagent.app.runtime import SCORERS, Runtime
from recagent.catalog.errors import RecAgentError
from recagent.evals.peers import PEERS, TUNED, peer_scorer
from recagent.protocol.scorer import Scorer

__all__ = ["harness_scorer"]


def harness_scorer(rt: Runtime, name: str) -> Scorer:
    """The model called ``name``: one of the runtime's, or a peer with its tuned settings."""
    if name in SCORERS:
        return rt.scorer(name)
    peer = peer_scorer(name, rt.dataset, **TUNED.get(rt.dataset.name, {}).get(name, {}))
    if peer is None:
        raise RecAgentError(f"unknown model {name!r}; choose from {', '.join(SCORERS + PEERS)}")
    return peer
