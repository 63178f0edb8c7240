"""The LLM-driven agent, for backends that can call tools (an instruct model behind vLLM).

LangChain's ``create_agent`` runs the loop: the model calls the six tools as it sees fit and
ends by calling ``give_answer`` (the structured response, through ``ToolStrategy``) with the
item ids it recommends. With a structured response every model call must call a tool, so the
loop ends in ``give_answer`` or at the step limit; tool errors go back to the model as
observations it can act on.

What the user sees is decided after the loop, not by the model: a picked id counts only if
the catalog has it, a tool returned it in this turn, it is not seen, disliked or (for "more")
already shown, and it meets the session's constraints (the rules' parse, which the model
cannot loosen). Rejections are recorded in the trace; the answer is topped up from the fixed
plan's ranking when fewer than ``k`` picks survive, and the fixed plan answers alone when the
LLM is down or never answers. Explanations are written and checked as in the fixed plan.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from recagent.agent.events import EventSink
from recagent.agent.pipeline import PlanAgent, Selection
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer, ToolCall, Trace
from recagent.catalog.errors import ToolError
from recagent.llm.base import LLM, LLMUnavailable
from recagent.prompts import render
from recagent.tools import Candidate, Constraints
from recagent.tools.filter_items import FilterItems

__all__ = ["FINAL_ANSWER", "ToolAgent"]


# The structured response that ends the loop (a tool named give_answer).
FINAL_ANSWER: dict = {
    "title": "give_answer",
    "description": "Give the items to recommend to the user, best first.",
    "type": "object",
    "properties": {"item_ids": {
        "type": "array", "items": {"type": "string"}, "maxItems": 20,
        "description": "Item ids exactly as the tools returned them, best first.",
    }},
    "required": ["item_ids"],
}


class ToolAgent:
    """One turn driven by a tool-calling LLM; ``plan`` supplies the parse, the safe ranking
    and the explanations (and answers alone when the LLM cannot)."""

    def __init__(self, plan: PlanAgent, llm: LLM, *, chat_model: Any = None, max_steps: int = 8,
                 listing_size: int = 10) -> None:
        self.plan = plan
        self.llm = llm
        self._chat_model = chat_model
        self.max_steps = max_steps
        self.listing_size = listing_size

    @property
    def tools(self):
        return self.plan.tools

    @property
    def k(self) -> int:
        return self.plan.k

    def chat_model(self):
        return self._chat_model if self._chat_model is not None else self.llm.chat_model(max_tokens=256)

    def turn(self, session: Session, message: str = "", *, exclude_shown: bool = False,
             again: bool = False, on_event: EventSink | None = None) -> AgentAnswer:
        """One turn, with the same options as :meth:`PlanAgent.turn`."""
        trace = Trace(on_event)
        degraded: list[str] = []
        wish, query = self.plan.request(session, message, again, trace, degraded)
        message = query if again else message
        excluded = self.plan.excluded(session, exclude_shown)
        offered: dict[str, Candidate] = {}
        picks: list[str] | None = None
        try:
            picks = self._loop(session, message, wish, excluded, offered, trace)
        except LLMUnavailable as exc:
            degraded.append(f"{exc}; the fixed plan answered")
        except RecursionError:  # langgraph's GraphRecursionError: the step limit
            degraded.append(f"the LLM gave no answer within {self.max_steps} steps; "
                            "the fixed plan answered")
        valid, rejected = self._check(picks or [], offered, wish, excluded)
        if picks is not None:
            trace.record(ToolCall(
                "check_answer", {"picked": picks},
                f"kept {len(valid)} of {len(picks)}"
                + "".join(f"; {i}: {why}" for i, why in rejected.items()), 0.0,
            ))
        if len(valid) >= self.k:
            selection = Selection(list(offered.values()), valid, len(rejected), self.llm)
            return self.plan.answer(session, selection, wish, query, trace, degraded, valid[: self.k])
        selection = self.plan.select(session, wish, query, excluded, trace, degraded)
        if picks is not None and selection.ranked:
            degraded.append(f"{len(valid)} of the LLM's {len(picks)} picks passed the checks; "
                            "the rest of the answer is the retriever's ranking")
        chosen = {c.item_id for c in valid}
        final = (valid + [c for c in selection.ranked if c.item_id not in chosen])[: self.k]
        return self.plan.answer(session, selection, wish, query, trace, degraded, final)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self, session: Session, message: str, wish: Constraints, excluded: set[str],
              offered: dict[str, Candidate], trace: Trace) -> list[str]:
        import openai
        from langchain.agents import create_agent
        from langchain.agents.structured_output import ToolStrategy

        agent = create_agent(
            self.chat_model(),
            self._langchain_tools(session, wish, excluded, offered, trace),
            system_prompt=render("tool_agent_system", k=self.k),
            response_format=ToolStrategy(FINAL_ANSWER),
        )
        history = [self.tools.dataset.items[x.item_id].title for x in reversed(session.history[-10:])]
        prompt = render("tool_agent_user", history=history, constraints=wish.describe(),
                        message=message)
        started = time.perf_counter()
        try:
            state = agent.invoke({"messages": [{"role": "user", "content": prompt}]},
                                 {"recursion_limit": 2 * self.max_steps + 1})
        except (openai.APIConnectionError, OSError) as exc:
            raise LLMUnavailable(f"LLM unavailable ({exc.__class__.__name__})") from None
        except openai.APIStatusError as exc:
            raise LLMUnavailable(f"the LLM server refused a step ({exc.status_code}: "
                                 f"{_first_sentence(exc.message)})") from None
        answer = state.get("structured_response")
        ids = answer.get("item_ids") if isinstance(answer, dict) else None
        picks = [str(i) for i in ids] if isinstance(ids, list) else []
        trace.record(ToolCall("give_answer", {"item_ids": picks}, f"{len(picks)} items",
                              round((time.perf_counter() - started) * 1000, 1)))
        return picks

    def _langchain_tools(self, session: Session, wish: Constraints, excluded: set[str],
                         offered: dict[str, Candidate], trace: Trace) -> list:
        """The six tools as LangChain tools bound to this turn; each returns JSON text or
        ``error: ...`` (an observation the model can act on), and lands in the trace."""
        from langchain_core.tools import StructuredTool

        tools, dataset = self.tools, self.tools.dataset

        def observe(name: str, arguments: dict, fn: Callable[[], Any],
                    summarize: Callable[[Any], str]) -> str:
            result = trace.run(name, arguments, fn, summarize)
            if result is None:
                return f"error: {trace[-1].error}"
            return json.dumps(result, ensure_ascii=False)

        def listing(candidates: list[Candidate]) -> list[dict]:
            for c in candidates:
                offered.setdefault(c.item_id, c)
            return [_brief(dataset.items[c.item_id], c.score) for c in candidates]

        def known(item_ids: list[str]) -> list[Candidate]:
            unknown = [i for i in item_ids if i not in offered]
            if unknown:
                raise ToolError(f"unknown item ids {unknown[:5]}: use ids a tool returned")
            return [offered[i] for i in item_ids]

        def search_items(query: str, k: int = 10) -> str:
            """Search the catalog by free text; returns items with id, title, price, category."""
            k = max(1, min(k, self.listing_size))
            return observe("search_items", {"query": query, "k": k},
                           lambda: listing(tools.search_items(query, k, wish)),
                           lambda r: f"{len(r)} items")

        def recommend_for_user(k: int = 10) -> str:
            """Candidates that fit the user's history, best first."""
            k = max(1, min(k, self.listing_size))
            return observe("recommend_for_user", {"user": session.user_id, "k": k},
                           lambda: listing(tools.recommend_for_user(session.history, k + len(excluded))[: k]),
                           lambda r: f"{len(r)} items")

        def filter_items(item_ids: list[str], max_price: float | None = None,
                         min_price: float | None = None,
                         exclude_brands: list[str] | None = None) -> str:
            """Keep the candidates that meet the user's constraints (plus any bounds given)."""
            extra = Constraints(max_price=max_price, min_price=min_price,
                                exclude_brands=tuple(exclude_brands or ()))
            tighter = extra.merged(wish)  # the session's constraints win: they cannot loosen
            return observe(
                "filter_items", {"item_ids": len(item_ids), "constraints": tighter.describe()},
                lambda: _filtered(tools.filter_items(known(item_ids), tighter, exclude=excluded,
                                                     owned=session.seen)),
                lambda r: f"kept {len(r['kept'])} of {len(item_ids)}")

        def rerank(item_ids: list[str], strategy: str = "fusion") -> str:
            """Order candidates by a strategy: retriever, cooccurrence, llm or fusion."""
            return observe("rerank", {"strategy": strategy, "candidates": len(item_ids)},
                           lambda: [{"item_id": c.item_id, "score": round(c.score, 4)}
                                    for c in tools.rerank(known(item_ids), session.history, strategy)],
                           lambda r: f"top: {r[0]['item_id']}" if r else "nothing")

        def get_item(item_id: str) -> str:
            """All facts of one catalog item."""
            return observe("get_item", {"item_id": item_id},
                           lambda: vars(tools.get_item(item_id)), lambda r: r["title"][:40])

        def explain(item_id: str) -> str:
            """Evidence that relates an item to the user's history."""
            return observe("explain", {"item_id": item_id},
                           lambda: tools.explain(item_id, session.history, wish).as_dict(),
                           lambda r: f"{len(r['related'])} related")

        functions = (search_items, recommend_for_user, filter_items, rerank, get_item, explain)
        return [StructuredTool.from_function(f) for f in functions]

    def _check(self, picks: list[str], offered: dict[str, Candidate], wish: Constraints,
               excluded: set[str]) -> tuple[list[Candidate], dict[str, str]]:
        """The picks a user may see, in the model's order, and why the others may not."""
        valid: list[Candidate] = []
        rejected: dict[str, str] = {}
        for item_id in dict.fromkeys(picks):
            item = self.tools.dataset.items.get(item_id)
            if item is None:
                rejected[item_id] = "not in the catalog"
            elif item_id in excluded:
                rejected[item_id] = "already seen, shown or disliked"
            elif item_id not in offered:
                rejected[item_id] = "no tool returned it in this turn"
            elif reason := FilterItems.violation(item, wish):
                rejected[item_id] = reason
            else:
                valid.append(offered[item_id])
        return valid, rejected


def _brief(item, score: float) -> dict:
    return {"item_id": item.item_id, "title": item.title, "price": item.price,
            "category": item.category[-1] if item.category else "", "score": round(score, 3)}


def _first_sentence(text: str) -> str:
    return text.split(". ")[0][:200]


def _filtered(result) -> dict:
    return {"kept": [c.item_id for c in result.kept], "excluded": result.excluded}

