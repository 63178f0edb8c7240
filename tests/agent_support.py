"""The one way tests build the agent's tools: the product's registry over the tiny shop."""

from __future__ import annotations

from recagent.retrieval.retriever import HistoryRetriever
from recagent.tools.base import ToolParts
from recagent.tools.toolbox import Toolbox


def make_toolbox(dataset, encoder, index, llm=None, recommender=None) -> Toolbox:
    """Every registered tool for ``dataset``; candidates from the text retriever unless
    ``recommender`` is given."""
    recommender = recommender or HistoryRetriever(dataset, encoder, index)
    return Toolbox.build(ToolParts(dataset, encoder, index, recommender, index.embeddings, llm))
