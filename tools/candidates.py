"""The unit every tool passes along: a candidate item with its scores and evidence."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from recagent.retrieval.base import Evidence

__all__ = ["Candidate", "Evidence"]


@dataclass(frozen=True)
class Candidate:
    """An item on its way to the user.

    ``scores`` keeps one score per source that produced or re-scored it ("retriever",
    "search", "cooccurrence", "llm", "ranker", "fusion"; a search also keeps its bare
    similarity as "cosine"); ``score`` is the one the current order uses.
    ``evidence`` holds the history items it relates to (closest first).
    """

    item_id: str
    title: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    evidence: tuple[Evidence, ...] = ()

    def rescored(self, source: str, value: float) -> Candidate:
        return replace(self, score=value, scores={**self.scores, source: value})


def merge(*lists: list[Candidate]) -> list[Candidate]:
    """Candidates of several sources, each item once (its first occurrence, scores united)."""
    seen: dict[str, Candidate] = {}
    for candidates in lists:
        for c in candidates:
            if c.item_id in seen:
                first = seen[c.item_id]
                seen[c.item_id] = replace(
                    first,
                    scores={**c.scores, **first.scores},
                    evidence=first.evidence or c.evidence,
                )
            else:
                seen[c.item_id] = c
    return list(seen.values())
