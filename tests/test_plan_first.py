"""The plan-first picker: one constrained LLM call plans the searches, the fixed plan filters
and ranks. The LLM here is scripted JSON that honours the schema it is given (what constrained
decoding guarantees); the real models run it in their own tests."""

from __future__ import annotations

import pytest
from agent_support import make_toolbox
from fake_llm import ScriptedLLM

from recagent.agent.agents import plan_first_agent
from recagent.agent.plan_first import PLANNED_TOOLS, plan_schema
from recagent.agent.session import Session
from recagent.catalog.errors import ToolError


class PlanningLLM(ScriptedLLM):
    """Structured output that returns ``plan`` (or raises it), recording the schema."""

    structured_output = True
    can_call_tools = True

    def __init__(self, plan):
        super().__init__()
        self.plan = plan
        self.schemas: list[dict] = []

    def generate_json(self, prompt, schema, *, max_tokens=256, adapter=None):
        self._check()
        self.prompts.append(prompt)
        self.schemas.append(schema)
        if isinstance(self.plan, Exception):
            raise self.plan
        return self.plan


def _agent(tiny_shop, encoder, built_index, llm, **kw):
    return plan_first_agent(make_toolbox(tiny_shop, encoder, built_index), llm, k=3, **kw)


def test_the_schema_allows_only_the_candidate_tools_with_their_own_arguments(tiny_shop, encoder, built_index):
    tools = make_toolbox(tiny_shop, encoder, built_index)
    schema = plan_schema(tools, max_steps=2)
    steps = schema["properties"]["steps"]
    assert steps["maxItems"] == 2 and steps["minItems"] == 1
    options = steps["items"]["anyOf"]
    assert [o["properties"]["tool"]["const"] for o in options] == list(PLANNED_TOOLS)
    arguments = options[0]["properties"]["arguments"]
    assert arguments == {**tools.search_items.parameters, "additionalProperties": False}


def test_the_llm_plans_the_searches_and_the_filter_decides(tiny_shop, encoder, built_index):
    pens = [i for i in tiny_shop.items.values() if "pen" in i.title.lower() and i.price]
    bound = sorted(p.price for p in pens)[len(pens) // 2]
    llm = PlanningLLM({"steps": [{"tool": "search_items", "arguments": {"query": "gel pen", "k": 5}},
                                 {"tool": "recommend_for_user", "arguments": {}}]})
    answer = _agent(tiny_shop, encoder, built_index, llm).turn(
        Session(user_id=None), f"a present for someone who writes a lot, under ${bound:g}")
    plan = next(c for c in answer.trace if c.tool == "plan")
    assert plan.summary.startswith("search_items(query='gel pen'")
    searches = [c for c in answer.trace if c.tool == "search_items"]
    # The model chose the query; the plan chose how many candidates (not the model's k=5).
    assert searches[0].arguments == {"query": "gel pen", "k": 50}
    assert answer.recommendations and not answer.degraded
    for r in answer.recommendations:
        assert r.item.price <= bound  # the message's bound, applied by the filter
    assert "pen" in " ".join(r.item.title.lower() for r in answer.recommendations)
    assert "gel pen" not in llm.prompts[0]  # the plan prompt quotes the message, not the plan


@pytest.mark.parametrize(("plan", "note"), [
    (ToolError("the LLM's JSON does not parse"), "the LLM's plan was unusable"),
    ({"steps": [{"tool": "filter_items", "arguments": {"item_ids": []}}]}, "the LLM's plan was unusable"),
    ({"steps": []}, "the LLM's plan was unusable"),
    ({"steps": [{"tool": "search_items", "arguments": {}}]}, "the LLM's plan was unusable"),
])
def test_an_unusable_plan_falls_back_to_the_fixed_plan(tiny_shop, encoder, built_index, plan, note):
    llm = PlanningLLM(plan)
    user = tiny_shop.users[0]
    answer = _agent(tiny_shop, encoder, built_index, llm).turn(
        Session(user_id=user, history=list(tiny_shop.histories[user])), "something nice")
    assert len(answer.recommendations) == 3
    assert any(d.startswith(note) for d in answer.degraded), answer.degraded
    assert "recommend_for_user" in [c.tool for c in answer.trace]


def test_an_llm_outage_or_no_structured_output_runs_the_fixed_plan(tiny_shop, encoder, built_index):
    down = PlanningLLM({"steps": []})
    down.down = True
    answer = _agent(tiny_shop, encoder, built_index, down).turn(Session(user_id=None), "a gel pen")
    assert answer.recommendations and answer.llm is None
    assert any("LLM unavailable" in d for d in answer.degraded)
    plain = ScriptedLLM()  # no structured output: the plan is never asked for
    answer = _agent(tiny_shop, encoder, built_index, plain).turn(Session(user_id=None), "a gel pen")
    assert answer.recommendations and "plan" not in [c.tool for c in answer.trace]
