"""The tool-calling agent's loop and its checks, with a scripted chat model (the real loop
against a vLLM server is in test_vllm.py)."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from agent_support import make_toolbox
from fake_llm import ScriptedLLM, scripted_chat_model

from recagent.agent.agents import llm_agent
from recagent.agent.session import Session
from recagent.tools.base import Tool, ToolContext, ToolParts
from recagent.tools.toolbox import Toolbox


@pytest.fixture
def make_agent(tiny_shop, encoder, built_index):
    def make(*turns, k=3):
        chat = scripted_chat_model(*turns)
        return llm_agent(make_toolbox(tiny_shop, encoder, built_index), ScriptedLLM(), k=k,
                         chat_model=chat), chat
    return make


def _session(shop, user):
    return Session(user_id=user, history=list(shop.histories[user]))


def _ids_from_last_tool_result(messages):
    return [x["item_id"] for x in json.loads(messages[-1].content)]


def test_llm_drives_the_tools_and_its_picks_are_shown(make_agent, tiny_shop):
    user = tiny_shop.users[0]
    agent, chat = make_agent(
        [("recommend_for_user", {"k": 10})],
        lambda m: [("filter_items", {"item_ids": _ids_from_last_tool_result(m), "max_price": 500})],
        lambda m: [("give_answer", {"item_ids": json.loads(m[-1].content)["kept"][::-1][:3]})],
    )
    answer = agent.turn(_session(tiny_shop, user), "")
    tools_called = [c.tool for c in answer.trace]
    assert tools_called[:4] == ["parse_constraints", "recommend_for_user", "filter_items", "give_answer"]
    assert "check_answer" in tools_called and "explain" in tools_called
    picked = next(c for c in answer.trace if c.tool == "give_answer").arguments["item_ids"]
    assert [r.item.item_id for r in answer.recommendations] == picked  # the LLM's order
    assert not answer.degraded
    # The tool results reached the model as observations.
    assert any(getattr(m, "type", "") == "tool" for m in chat.seen[-1])


def test_picks_outside_the_catalog_the_turn_or_the_filter_never_reach_the_user(make_agent, tiny_shop):
    user = tiny_shop.users[0]
    seen = tiny_shop.histories[user][0].item_id
    history = {x.item_id for x in tiny_shop.histories[user]}
    offered, unoffered = [], []

    def answer_with_bad_ids(messages):
        offered.extend(_ids_from_last_tool_result(messages))
        expensive = next(i for i in offered if tiny_shop.items[i].price > 30)
        # a real catalog item, not in the history, that no tool returned in this turn
        unoffered.append(next(i for i in tiny_shop.items if i not in offered and i not in history))
        return [("give_answer", {"item_ids": ["NOPE-1", seen, unoffered[0], expensive, *offered[:10]]})]

    # recommend_for_user ignores the price bound (search_items would apply it), so the model
    # sees items over $30 and picks one.
    agent, _ = make_agent([("recommend_for_user", {"k": 20})], answer_with_bad_ids, k=5)
    answer = agent.turn(_session(tiny_shop, user), "under $30")
    ids = [r.item.item_id for r in answer.recommendations]
    assert "NOPE-1" not in ids and seen not in ids
    assert all(tiny_shop.items[i].price <= 30 for i in ids)
    check = next(c for c in answer.trace if c.tool == "check_answer")
    assert "NOPE-1: not in the catalog" in check.summary
    assert f"{seen}: already seen" in check.summary
    assert "price $" in check.summary and "above $30" in check.summary
    assert unoffered[0] not in ids
    assert f"{unoffered[0]}: no tool returned it" in check.summary


def test_tool_errors_go_back_to_the_model(make_agent, tiny_shop):
    agent, chat = make_agent(
        [("get_item", {"item_id": "NOPE-1"})],
        [("rerank", {"item_ids": ["NOPE-2"], "strategy": "fusion"})],
        [("give_answer", {"item_ids": []})],
    )
    answer = agent.turn(_session(tiny_shop, tiny_shop.users[0]), "")
    errors = [c for c in answer.trace if c.error]
    assert [c.tool for c in errors] == ["get_item", "rerank"]
    observations = [m.content for m in chat.seen[-1] if getattr(m, "type", "") == "tool"]
    assert any(o.startswith("error: no item 'NOPE-1'") for o in observations)
    assert any("unknown item ids ['NOPE-2']" in o for o in observations)
    # Nothing valid was picked: the fixed plan's ranking answers, and says so.
    assert len(answer.recommendations) == 3
    assert answer.degraded == [
        "0 of the LLM's 0 picks passed the checks; the rest of the answer is the retriever's ranking"
    ]
    assert "Note: 0 of the LLM's 0 picks" in answer.text


def test_a_loop_without_an_answer_falls_back_to_the_plan(make_agent, tiny_shop):
    forever = [[("get_item", {"item_id": i})] for i in list(tiny_shop.items)[:40]]
    agent, _ = make_agent(*forever)
    answer = agent.turn(_session(tiny_shop, tiny_shop.users[0]), "")
    assert len(answer.recommendations) == 3
    assert answer.degraded == ["the LLM gave no answer within 8 steps; the fixed plan answered"]
    assert "check_answer" not in [c.tool for c in answer.trace]


class InStock(Tool):
    """A tool written the way a contributor would add one: this class plus one registry line."""

    name = "in_stock"
    description = "Whether an item can be bought now."
    parameters: ClassVar[dict] = {"type": "object", "properties": {"item_id": {"type": "string"}},
                                  "required": ["item_id"]}

    def __init__(self, dataset):
        self.dataset = dataset

    @classmethod
    def build(cls, parts: ToolParts) -> InStock:
        return cls(parts.dataset)

    def invoke(self, context: ToolContext, item_id: str) -> dict:
        item = self.dataset.item(item_id)
        return {"item_id": item.item_id, "in_stock": item.attributes.get("availability") != "out of stock"}

    def summarize(self, result: dict) -> str:
        return "in stock" if result["in_stock"] else "out of stock"


def test_a_new_tool_is_one_class_and_one_registry_line(tiny_shop, encoder, built_index):
    from recagent.retrieval.retriever import HistoryRetriever
    from recagent.tools.registry import TOOLS

    parts = ToolParts(tiny_shop, encoder, built_index, HistoryRetriever(tiny_shop, encoder, built_index),
                      built_index.embeddings)
    toolbox = Toolbox.build(parts, (*TOOLS, InStock))  # the registration line
    item = next(iter(tiny_shop.items))
    chat = scripted_chat_model(
        [("recommend_for_user", {"k": 10})],
        [("in_stock", {"item_id": item})],
        [("in_stock", {"item_id": item, "colour": "red"})],
        lambda m: [("give_answer", {"item_ids": []})],
    )
    agent = llm_agent(toolbox, ScriptedLLM(), k=3, chat_model=chat)
    answer = agent.turn(_session(tiny_shop, tiny_shop.users[0]), "")
    # The model was given the tool with its schema, the system prompt lists it, the call ran
    # with a trace line from its summary, and a bad argument came back as an observation.
    bound = {t.name: t for t in chat.bound}
    assert bound["in_stock"].description == InStock.description
    assert bound["in_stock"].args_schema == InStock.parameters
    system = chat.seen[0][0].content
    assert "- in_stock: Whether an item can be bought now." in system
    calls = [c for c in answer.trace if c.tool == "in_stock"]
    assert calls[0].summary in ("in stock", "out of stock") and calls[0].error is None
    assert calls[1].error == "in_stock takes no argument colour"
    observations = [m.content for m in chat.seen[-1] if getattr(m, "type", "") == "tool"]
    assert any(f'"item_id": "{item}"' in o for o in observations)
    assert "error: in_stock takes no argument colour" in observations
