"""``rerank``: order candidates by one strategy or a fusion of several.

- ``retriever``: the order retrieval gave: the history retriever's score, or, when the
  candidates come from a search, the reciprocal-rank fusion of the search order and the
  history order (so the request leads and the history breaks its near-ties);
- ``cooccurrence``: item-kNN over all users' histories (items bought together with yours);
- ``llm``: the LLM's mean token log-likelihood of the candidate's title after a prompt made
  of the user's history (``prompts/rerank.yaml``), the prompt computed once for all;
- ``ranker``: the tuned LLM ranker (``recagent train-ranker``): one prompt with the history and
  the candidates labelled A, B, ..., scored by the logits of the letters in one forward pass,
  blended with the incoming order as validation chose (:mod:`recagent.llm.ranker`);
- ``fusion``: weighted reciprocal-rank fusion of the others, sum_s w_s / (60 + rank_s).

Re-ranking only reorders: it never adds an item, so it cannot bring back a filtered one.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.llm.base import LLM
from recagent.llm.ranker import CandidateRanker
from recagent.prompts import render
from recagent.protocol.scorer import History
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.tools.base import ITEM_IDS, Tool, ToolContext, ToolParts, object_schema
from recagent.tools.candidates import Candidate

__all__ = ["RANKER", "STRATEGIES", "Rerank"]

STRATEGIES = ("retriever", "cooccurrence", "llm", "fusion")  # what the agent may choose
# The tuned LLM ranker: only where one is passed in (it is off by default: docs/llm-ranker.md).
RANKER = "ranker"
_RRF_K = 60.0


class Rerank(Tool):
    name = "rerank"
    description = "Order candidates by a strategy: retriever, cooccurrence, llm or fusion."
    parameters: ClassVar[dict[str, Any]] = object_schema(
        ["item_ids"], item_ids=ITEM_IDS,
        strategy={"type": "string", "enum": list(STRATEGIES), "default": "fusion"})

    def __init__(
        self,
        dataset: Dataset,
        llm: LLM | None = None,
        *,
        fusion_weights: Mapping[str, float] | None = None,
        history_titles: int = 20,
        noun: str = "items",
        cooccurrence_histories: Sequence[History] | None = None,
        ranker: CandidateRanker | None = None,
    ) -> None:
        self.dataset = dataset
        self.llm = llm
        self.ranker = ranker
        # Evaluation passes the training split here, so co-occurrence never sees test items.
        self._cooccurrence_histories = cooccurrence_histories
        self.fusion_weights = dict(fusion_weights or {"retriever": 1.0, "cooccurrence": 1.0, "llm": 1.0})
        self.history_titles = history_titles
        self.noun = noun

    @classmethod
    def build(cls, parts: ToolParts) -> Rerank:
        return cls(parts.dataset, parts.llm)

    def invoke(self, context: ToolContext, item_ids: list[str],
               strategy: str = "fusion") -> list[Candidate]:
        return self(context.known(item_ids), context.history, strategy, memo=context.memo)

    def observe(self, result: list[Candidate]) -> list[dict[str, Any]]:
        return [{"item_id": c.item_id, "score": round(c.score, 4)} for c in result]

    def summarize(self, result: list[Candidate]) -> str:
        return f"top: {result[0].item_id}" if result else "nothing"

    @cached_property
    def cooccurrence(self) -> ItemKNN:
        knn = ItemKNN(self.dataset)
        histories = self._cooccurrence_histories
        knn.fit(list(self.dataset.histories.values()) if histories is None else list(histories))
        return knn

    def prompt(self, history: History) -> str:
        recent = history[-self.history_titles :]
        titles = [self.dataset.items[x.item_id].title for x in recent]
        return render("rerank", titles=titles, noun=self.noun)

    def __call__(
        self, candidates: Sequence[Candidate], history: History, strategy: str = "fusion",
        *, memo: MutableMapping[Any, Any] | None = None,
    ) -> list[Candidate]:
        """``candidates`` reordered. ``memo`` (one turn's cache) keeps the LLM's scores of a
        candidate list, so "llm" then "fusion" in one turn scores once."""
        if strategy not in (*STRATEGIES, RANKER):
            raise ToolError(f"rerank: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if not candidates:
            return []
        memo = {} if memo is None else memo
        if strategy == "fusion":
            return self._fusion(candidates, history, memo)
        scored = self._score(candidates, history, strategy, memo)
        return sorted(scored, key=lambda c: -c.score)  # stable: ties keep the incoming order

    def _score(self, candidates: Sequence[Candidate], history: History, strategy: str,
               memo: MutableMapping[Any, Any]) -> list[Candidate]:
        if strategy == "retriever":
            if any("search" in c.scores for c in candidates):
                return self._search_and_history(candidates)
            return [c.rescored("retriever", c.scores.get("retriever", c.score)) for c in candidates]
        if strategy == "cooccurrence":
            if not history:
                return [c.rescored("cooccurrence", 0.0) for c in candidates]
            row = self.cooccurrence.score([history])[0]
            index = self.dataset.item_index
            return [c.rescored("cooccurrence", float(row[index[c.item_id]])) for c in candidates]
        if strategy == RANKER:
            return self._ranker_scores(candidates, history, memo)
        if self.llm is None:
            raise ToolError("rerank: strategy 'llm' needs an LLM, and none is configured")
        key = ("llm", self.prompt(history), tuple(" " + c.title for c in candidates))
        if key not in memo:
            memo[key] = self.llm.score(key[1], list(key[2]))
        scores = memo[key]
        return [c.rescored("llm", s.mean) for c, s in zip(candidates, scores, strict=True)]

    def _ranker_scores(self, candidates: Sequence[Candidate], history: History,
                       memo: MutableMapping[Any, Any]) -> list[Candidate]:
        if self.ranker is None:
            raise ToolError("rerank: strategy 'ranker' needs a trained ranker "
                            "(`recagent train-ranker`), and none is configured")
        key = ("ranker", tuple(x.item_id for x in history), tuple(c.item_id for c in candidates))
        if key not in memo:
            memo[key] = self.ranker.rerank_scores(self.dataset, history, [c.title for c in candidates])
        return [c.rescored("ranker", float(s)) for c, s in zip(candidates, memo[key], strict=True)]

    @staticmethod
    def _search_and_history(candidates: Sequence[Candidate]) -> list[Candidate]:
        """sum over "search" and "retriever" of 1 / (60 + rank) among the candidates that have
        that score (the two scales are not comparable: a cosine and a model score)."""
        fused = [0.0] * len(candidates)
        for source in ("search", "retriever"):
            _add_rrf(fused, sorted((i for i, c in enumerate(candidates) if source in c.scores),
                                   key=lambda i: -candidates[i].scores[source]))
        return [c.rescored("relevance", fused[i]) for i, c in enumerate(candidates)]

    def _fusion(self, candidates: Sequence[Candidate], history: History,
                memo: MutableMapping[Any, Any]) -> list[Candidate]:
        fused = [0.0] * len(candidates)
        parts: dict[str, list[Candidate]] = {}
        for strategy, weight in self.fusion_weights.items():
            if weight == 0 or (strategy == "llm" and self.llm is None) \
                    or (strategy == RANKER and self.ranker is None):
                continue
            scored = self._score(candidates, history, strategy, memo)
            parts[strategy] = scored
            _add_rrf(fused, sorted(range(len(scored)), key=lambda i: -scored[i].score), weight)
        out = []
        for i, c in enumerate(candidates):
            scores = dict(c.scores)
            for scored in parts.values():
                scores.update(scored[i].scores)
            out.append(Candidate(c.item_id, c.title, fused[i], {**scores, "fusion": fused[i]}, c.evidence))
        return sorted(out, key=lambda c: -c.score)


def _add_rrf(fused: list[float], order: Sequence[int], weight: float = 1.0) -> None:
    """Reciprocal-rank fusion: add ``weight / (K + rank)`` to ``fused[i]`` for each candidate
    index ``i`` of ``order`` (best first, ranks from 1)."""
    for rank, i in enumerate(order, 1):
        fused[i] += weight / (_RRF_K + rank)
