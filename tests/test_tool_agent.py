"""The tool-calling agent's loop and its checks, with a scripted chat model (the real loop
against a vLLM server is in test_vllm.py)."""

import json

import pytest
from agent_support import make_toolbox
from fake_llm import ScriptedLLM, scripted_chat_model

from recagent.agent.agents import llm_agent
from recagent.agent.session import Session


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
