"""The LLM-driven picker, for backends that can call tools (an instruct model behind vLLM).

LangChain's ``create_agent`` runs the loop: the model calls the tools as it sees fit and ends
by calling ``give_answer`` (the structured response, through ``ToolStrategy``) with the item
ids it recommends. With a structured response every model call must call a tool, so the loop
ends in ``give_answer`` or at the step limit; tool errors go back to the model as observations
it can act on. The LangChain tools are generated from the toolbox's tool descriptions.

What the user sees is decided after the loop, not by the model: a picked id counts only if
the catalog has it, a tool returned it in this turn, it is not seen, disliked or (for "more")
already shown, and it meets the turn's constraints (which the model cannot loosen).
Rejections are recorded in the trace; the answer is topped up from the fixed plan's ranking
when fewer than ``k`` picks survive, and the fixed plan answers alone when the LLM is down or
never answers.
"""

from __future__ import annotations

import json
import time
from typing import Any

from recagent.agent.plan import PlanPicker
from recagent.agent.runner import Selection, TurnContext
from recagent.agent.turn import ToolCall
from recagent.catalog.errors import ToolError
from recagent.llm.base import LLMUnavailable
from recagent.prompts import render
from recagent.tools.base import Tool
from recagent.tools.candidates import Candidate
from recagent.tools.filter_items import FilterItems
from recagent.tools.toolbox import Toolbox

__all__ = ["FINAL_ANSWER", "LLMPicker"]


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


class LLMPicker:
    """The turn's LLM drives the tools; ``plan`` ranks the rest of the answer (and all of it
    when the LLM cannot). ``chat_model`` overrides the LLM's own (tests script one)."""

    def __init__(self, plan: PlanPicker, *, chat_model: Any = None, max_steps: int = 8) -> None:
        self.plan = plan
        self._chat_model = chat_model
        self.max_steps = max_steps

    def pick(self, turn: TurnContext, tools: Toolbox) -> Selection:
        picks: list[str] | None = None
        if turn.llm is None:
            return self.plan.pick(turn, tools)
        try:
            picks = self._loop(turn, tools)
        except LLMUnavailable as exc:
            turn.degraded.append(f"{exc}; the fixed plan answered")
        except RecursionError:  # langgraph's GraphRecursionError: the step limit
            turn.degraded.append(f"the LLM gave no answer within {self.max_steps} steps; "
                                 "the fixed plan answered")
        valid, rejected = self._check(picks or [], turn, tools)
        if picks is not None:
            turn.trace.record(ToolCall(
                "check_answer", {"picked": picks},
                f"kept {len(valid)} of {len(picks)}"
                + "".join(f"; {i}: {why}" for i, why in rejected.items()), 0.0,
            ))
        if len(valid) >= turn.k:
            return Selection(list(turn.tools.offered.values()), valid, len(rejected))
        selection = self.plan.pick(turn, tools)
        if picks is not None and selection.ranked:
            turn.degraded.append(f"{len(valid)} of the LLM's {len(picks)} picks passed the checks; "
                                 "the rest of the answer is the retriever's ranking")
        chosen = {c.item_id for c in valid}
        ranked = valid + [c for c in selection.ranked if c.item_id not in chosen]
        return Selection(selection.candidates, ranked, selection.excluded)

    # -- the loop ---------------------------------------------------------------------------

    def _chat(self, turn: TurnContext):
        if self._chat_model is not None:
            return self._chat_model
        return turn.llm.chat_model(max_tokens=256)

    def _loop(self, turn: TurnContext, tools: Toolbox) -> list[str]:
        import openai
        from langchain.agents import create_agent
        from langchain.agents.structured_output import ToolStrategy

        agent = create_agent(
            self._chat(turn),
            [self._langchain_tool(tool, turn) for tool in tools],
            system_prompt=render("tool_agent_system", k=turn.k, tools=tools.specs()),
            response_format=ToolStrategy(FINAL_ANSWER),
        )
        session = turn.session
        history = [tools.dataset.items[x.item_id].title for x in reversed(session.history[-10:])]
        message = turn.query if turn.again else turn.message
        prompt = render("tool_agent_user", history=history, constraints=turn.wish.describe(),
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
        turn.trace.record(ToolCall("give_answer", {"item_ids": picks}, f"{len(picks)} items",
                                   round((time.perf_counter() - started) * 1000, 1)))
        return picks

    @staticmethod
    def _langchain_tool(tool: Tool, turn: TurnContext):
        """``tool`` as a LangChain tool bound to this turn: it returns JSON text, or
        ``error: ...`` (an observation the model can act on), and lands in the trace."""
        from langchain_core.tools import StructuredTool

        allowed = set(tool.parameters.get("properties", {}))

        def call(**arguments: Any) -> str:
            def run():
                unknown = sorted(set(arguments) - allowed)
                if unknown:
                    raise ToolError(f"{tool.name} takes no argument {', '.join(unknown)}")
                try:
                    return tool.invoke(turn.tools, **arguments)
                except TypeError as exc:
                    raise ToolError(f"{tool.name}: bad arguments ({exc})") from None

            result = turn.trace.run(tool.name, arguments, run, tool.summarize)
            if result is None:
                return f"error: {turn.trace[-1].error}"
            return json.dumps(tool.observe(result), ensure_ascii=False)

        return StructuredTool.from_function(func=call, name=tool.name,
                                            description=tool.description,
                                            args_schema=tool.parameters)

    @staticmethod
    def _check(picks: list[str], turn: TurnContext,
               tools: Toolbox) -> tuple[list[Candidate], dict[str, str]]:
        """The picks a user may see, in the model's order, and why the others may not."""
        valid: list[Candidate] = []
        rejected: dict[str, str] = {}
        offered = turn.tools.offered
        for item_id in dict.fromkeys(picks):
            item = tools.dataset.items.get(item_id)
            if item is None:
                rejected[item_id] = "not in the catalog"
            elif item_id in turn.excluded:
                rejected[item_id] = "already seen, shown or disliked"
            elif item_id not in offered:
                rejected[item_id] = "no tool returned it in this turn"
            elif reason := FilterItems.violation(item, turn.wish):
                rejected[item_id] = reason
            else:
                valid.append(offered[item_id])
        return valid, rejected


def _first_sentence(text: str) -> str:
    return text.split(". ")[0][:200]
