"""The plan-first picker (InteRecAgent's "plan first, then execute"): one constrained LLM call
writes the turn's tool plan, the tools run it, and the fixed plan's filter and re-ranking
choose what is shown.

The plan is JSON decoded under a schema built from the registered tools that produce
candidates (``search_items``, ``recommend_for_user``): each step names one of them, with that
tool's own argument schema. So the plan cannot be malformed or name a tool that does not exist,
whatever the model; what the model contributes is *which* searches fit the request ("a gift
for my dad who loves photography" → searches for camera accessories, photo books). Its steps
run through the same tools and trace as everything else, and nothing a step returns is shown
unless ``filter_items`` keeps it. When the backend has no structured output, the LLM is down,
or the plan finds nothing, the fixed plan answers (with a note).
"""

from __future__ import annotations

from typing import Any

from recagent.agent.plan import PlanPicker
from recagent.agent.runner import Selection, TurnContext
from recagent.catalog.errors import ToolError
from recagent.llm.base import LLMUnavailable
from recagent.prompts import render
from recagent.tools.candidates import Candidate, merge
from recagent.tools.toolbox import Toolbox

__all__ = ["PLANNED_TOOLS", "PlanFirstPicker", "plan_schema"]

# The tools a plan may call: the ones that find candidates. Filtering and ordering are the
# fixed plan's, so the model can never loosen a constraint or reorder past the filter.
PLANNED_TOOLS = ("search_items", "recommend_for_user")


def plan_schema(tools: Toolbox, max_steps: int = 3) -> dict[str, Any]:
    """The JSON schema of a plan: 1 to ``max_steps`` calls of the planned tools, each with its
    own argument schema."""
    steps = [
        {"type": "object",
         "properties": {"tool": {"const": tool.name},
                        "arguments": {**tool.parameters, "additionalProperties": False}},
         "required": ["tool", "arguments"], "additionalProperties": False}
        for tool in tools if tool.name in PLANNED_TOOLS
    ]
    return {"type": "object",
            "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": max_steps,
                                     "items": {"anyOf": steps}}},
            "required": ["steps"], "additionalProperties": False}


class PlanFirstPicker:
    def __init__(self, plan: PlanPicker, *, max_steps: int = 3) -> None:
        self.plan = plan
        self.max_steps = max_steps

    def pick(self, turn: TurnContext, tools: Toolbox) -> Selection:
        if turn.llm is None or not turn.llm.structured_output:
            return self.plan.pick(turn, tools)
        try:
            steps = turn.trace.run("plan", {"message": turn.message},
                                   lambda: self._plan(turn, tools),
                                   lambda plan: "; ".join(f"{s['tool']}({_args(s['arguments'])})"
                                                          for s in plan))
        except LLMUnavailable as exc:
            turn.lose_llm(f"LLM unavailable ({exc}); the fixed plan answered")
            return self.plan.pick(turn, tools)
        if steps is None:
            turn.degraded.append(f"the LLM's plan was unusable ({turn.trace[-1].error}); "
                                 "the fixed plan answered")
            return self.plan.pick(turn, tools)
        # The model picks what to look for; how many candidates each step brings is the plan's.
        turn.tools.listing_size = max(turn.tools.listing_size, self.plan.n_candidates)
        found = [self._run(step, turn, tools, self.plan.n_candidates) for step in steps]
        candidates = merge(*found)
        if not candidates:
            turn.degraded.append("the LLM's plan found nothing; the fixed plan answered")
            return self.plan.pick(turn, tools)
        searched = any(step["tool"] == "search_items" for step in steps)
        return self.plan.choose(turn, tools, candidates, request_led=searched)

    def _plan(self, turn: TurnContext, tools: Toolbox) -> list[dict[str, Any]]:
        """The steps the LLM plans, each a call of a planned tool (schema-checked again here:
        a backend's constraint is trusted for format, never for what reaches a tool)."""
        history = [tools.dataset.items[x.item_id].title for x in reversed(turn.session.history[-10:])]
        prompt = render("tool_plan", tools=[t.spec() for t in tools if t.name in PLANNED_TOOLS],
                        history=history, constraints=turn.wish.describe(),
                        message=turn.query if turn.again else turn.message,
                        max_steps=self.max_steps)
        schema = plan_schema(tools, self.max_steps)
        data = turn.llm.generate_json(prompt, schema, max_tokens=160)
        steps = data.get("steps") if isinstance(data, dict) else None
        if not isinstance(steps, list) or not steps:
            raise ToolError("expected {\"steps\": [...]} with at least one step")
        plan = []
        for step in steps[: self.max_steps]:
            name = step.get("tool") if isinstance(step, dict) else None
            arguments = step.get("arguments") if isinstance(step, dict) else None
            if name not in PLANNED_TOOLS or name not in tools or not isinstance(arguments, dict):
                raise ToolError(f"a step is not a call of {' or '.join(PLANNED_TOOLS)}: {step!r}"[:200])
            missing = [a for a in tools[name].parameters.get("required", []) if a not in arguments]
            if missing:
                raise ToolError(f"{name} needs {', '.join(missing)}")
            plan.append({"tool": name, "arguments": arguments})
        return plan

    @staticmethod
    def _run(step: dict[str, Any], turn: TurnContext, tools: Toolbox, k: int) -> list[Candidate]:
        tool = tools[step["tool"]]
        allowed = set(tool.parameters.get("properties", {}))
        arguments = {key: v for key, v in step["arguments"].items() if key in allowed}
        if "k" in allowed:
            arguments["k"] = k

        def call() -> list[Candidate]:
            try:
                return tool.invoke(turn.tools, **arguments)
            except TypeError as exc:
                raise ToolError(f"{tool.name}: bad arguments ({exc})") from None

        return turn.trace.run(tool.name, arguments, call, tool.summarize) or []


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())[:120]
