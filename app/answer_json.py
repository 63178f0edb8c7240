"""The JSON shapes of an agent answer and of a recommendation list, shared by the CLI
(``recagent ask --json``, ``recagent recommend --json``) and the HTTP backend."""

from __future__ import annotations

from typing import Any

__all__ = ["answer_json", "item_json", "recommendations_json", "tool_call_json"]


def answer_json(answer, session) -> dict[str, Any]:
    """One agent turn: the reply, each recommendation with its evidence, and the tool trace."""
    return {
        "user": session.user_id,
        "text": answer.text,
        "llm": answer.llm,
        "degraded": answer.degraded,
        "constraints": answer.constraints.describe(),
        "recommendations": [
            {
                "rank": r.rank,
                "item_id": r.item.item_id,
                "title": r.item.title,
                "price": r.item.price,
                "category": r.item.category,
                "score": round(r.score, 6),
                "scores": {k: round(v, 6) for k, v in r.scores.items()},
                "explanation": r.explanation.text,
                "explanation_source": r.explanation.source,
                "explanation_problems": list(r.explanation.problems),
                # the LLM's sentence cut back to the part that passed the check
                "explanation_trimmed": r.explanation.trimmed,
                "evidence": r.evidence.as_dict(),
            }
            for r in answer.recommendations
        ],
        "trace": [tool_call_json(c) for c in answer.trace],
    }


def tool_call_json(call) -> dict[str, Any]:
    return {"tool": call.tool, "arguments": call.arguments, "summary": call.summary,
            "ms": call.ms, "error": call.error}


def item_json(item) -> dict[str, Any]:
    """An :class:`~recagent.tools.get_item.ItemFacts` (what a front end shows on a card)."""
    return {
        "item_id": item.item_id,
        "title": item.title,
        "category": item.category,
        "brand": item.brand,
        "price": item.price,
        "description": item.description,
        "attributes": dict(item.attributes),
    }


def recommendations_json(user_id: str, dataset: str, retriever: str, recs) -> dict[str, Any]:
    """What ``recagent recommend --json`` prints: a retriever's list with its evidence."""
    return {
        "user": user_id,
        "dataset": dataset,
        "retriever": retriever,
        "recommendations": [
            {
                "item_id": r.item_id,
                "title": r.title,
                "score": round(r.score, 6),
                "explanation": r.explanation,
                "evidence": [
                    {"item_id": e.item_id, "title": e.title, "similarity": round(e.similarity, 4)}
                    for e in r.evidence
                ],
            }
            for r in recs
        ],
    }
