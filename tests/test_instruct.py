"""The embedded instruct backend: model verification, constrained JSON and tool calls.

The fast tests check the verification and the tool-call schema on small files; the ``slow``
ones load the real Qwen2.5-Coder-0.5B-Instruct (converted once into RECAGENT_HOME, ~3 min
the first time) and decode under real grammars.
"""

from __future__ import annotations

import json

import pytest

TOOLS = [
    {"type": "function", "function": {
        "name": "search_items", "description": "Search the catalog by free text.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                        "k": {"type": "integer", "minimum": 1, "maximum": 20}},
                       "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "recommend_for_user", "description": "Candidates that fit the user's history.",
        "parameters": {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}}},
    {"type": "function", "function": {
        "name": "filter_items", "description": "Keep the candidates that meet price bounds and brands.",
        "parameters": {"type": "object", "properties": {
            "item_ids": {"type": "array", "items": {"type": "string"}},
            "max_price": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "exclude_brands": {"type": "array", "items": {"type": "string"}}},
            "required": ["item_ids", "max_price"]}}},
    {"type": "function", "function": {
        "name": "rerank", "description": "Order candidates by a strategy.",
        "parameters": {"type": "object", "properties": {
            "item_ids": {"type": "array", "items": {"type": "string"}},
            "strategy": {"enum": ["retriever", "cooccurrence", "llm", "fusion"]}},
            "required": ["item_ids", "strategy"]}}},
    {"type": "function", "function": {
        "name": "get_item", "description": "All facts of one catalog item.",
        "parameters": {"type": "object", "properties": {"item_id": {"type": "string"}},
                       "required": ["item_id"]}}},
    {"type": "function", "function": {
        "name": "explain", "description": "Evidence that relates an item to the user's history.",
        "parameters": {"type": "object", "properties": {"item_id": {"type": "string"}},
                       "required": ["item_id"]}}},
    {"type": "function", "function": {
        "name": "give_answer", "description": "Give the items to recommend to the user, best first.",
        "parameters": {"type": "object", "properties": {
            "item_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
            "required": ["item_ids"]}}},
]

# A request per tool that a shop assistant would answer with that tool.
ASKS = {
    "search_items": "Find me a waterproof tent.",
    "recommend_for_user": "Recommend 5 items that fit my purchase history.",
    "filter_items": "Of items P1, P2 and P3, keep only those under $50.",
    "rerank": "Order items P1, P2, P3 with the fusion strategy.",
    "get_item": "Tell me everything about item P00042.",
    "explain": "Why would item P00042 suit me, given what I bought before?",
    "give_answer": "I have seen enough: recommend items P1 and P2 to me now, that is my final answer.",
}


def _valid(call: dict) -> bool:
    import jsonschema

    from recagent.llm.constrained import tool_call_schema

    try:
        jsonschema.validate(call, tool_call_schema(TOOLS))
    except jsonschema.ValidationError:
        return False
    return True


def test_tool_call_schema_accepts_only_real_tools_with_their_arguments():
    import jsonschema

    from recagent.llm.constrained import tool_call_schema

    schema = tool_call_schema(TOOLS)
    assert len(schema["anyOf"]) == len(TOOLS)
    jsonschema.validate({"name": "get_item", "arguments": {"item_id": "P1"}}, schema)
    for bad in ({"name": "buy_now", "arguments": {}},  # an invented tool
                {"name": "get_item", "arguments": {}},  # a required argument missing
                {"name": "rerank", "arguments": {"item_ids": [], "strategy": "random"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    with pytest.raises(ValueError):
        tool_call_schema([])


def _tiny_gguf(path, name: str) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_tensor("x", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_the_gguf_name_is_read_from_its_metadata(tmp_path):
    from recagent.llm.instruct_model import gguf_general_name

    _tiny_gguf(tmp_path / "m.gguf", "Tiny Test Model")
    assert gguf_general_name(tmp_path / "m.gguf") == "Tiny Test Model"


def test_parts_that_do_not_assemble_to_the_pinned_file_are_refused(tmp_path, monkeypatch):
    from recagent.llm import instruct_model
    from recagent.llm.base import LLMUnavailable

    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(bytes([i]) * 1000)
        parts.append(part)
    monkeypatch.setattr(instruct_model, "_part_paths", lambda: parts)
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(LLMUnavailable, match="not the expected file"):
        instruct_model.assemble_gguf(target)
    assert not target.exists() and not list((tmp_path / "out").iterdir())  # nothing half-written


# -- the real model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instruct(tmp_path_factory):
    import os
    from pathlib import Path

    from recagent.llm.instruct import InstructLLM

    home = Path(os.environ.get("RECAGENT_HOME") or Path.home() / ".cache" / "recagent")
    return InstructLLM(home / "models")


@pytest.mark.slow
def test_the_instruct_model_is_the_verified_one(instruct):
    from recagent.llm.instruct_model import GGUF_SHA256, MODEL_TITLE

    meta = json.loads((instruct.checkpoint / "recagent.json").read_text())
    assert meta["sha256"] == GGUF_SHA256 and meta["general.name"] == MODEL_TITLE
    assert "tools" in instruct.tokenizer.chat_template


@pytest.mark.slow
def test_every_tool_gets_a_valid_call(instruct):
    calls = {name: instruct.tool_call([{"role": "user", "content": ask}], TOOLS, max_tokens=96)
             for name, ask in ASKS.items()}
    invalid = [name for name, call in calls.items() if not _valid(call)]
    assert invalid == []  # the grammar makes an invalid call impossible
    right = sum(call["name"] == name for name, call in calls.items())
    print(f"right tool for {right} of {len(calls)} requests: "
          + ", ".join(f"{n}->{c['name']}" for n, c in calls.items()))
    assert right >= len(calls) // 2


@pytest.mark.slow
def test_constraint_parse_is_always_valid_json_for_its_schema(instruct, tiny_shop):
    import jsonschema

    from recagent.agent.constraints import ConstraintParser, constraint_schema, parse_with_llm
    from recagent.prompts import render

    parser = ConstraintParser(tiny_shop)
    brand = min(parser.brands.values())
    messages = [f"a headlamp under $40, nothing from {brand}", "something cheap for my dog",
                "around 100 dollars, a gift for a runner", "hi"]
    for message in messages:
        schema = constraint_schema(parser, message)
        prompt = render("parse_constraints", message=message, categories=parser.llm_categories,
                        has_prices=parser.has_prices)
        jsonschema.validate(instruct.generate_json(prompt, schema, max_tokens=128), schema)
    first = parse_with_llm(instruct, parser, messages[0])
    assert first.max_price in (None, 40.0) and set(first.brands) <= set()


@pytest.mark.slow
def test_the_chat_model_answers_with_a_bound_tool(instruct):
    from langchain_core.messages import HumanMessage

    chat = instruct.chat_model(max_tokens=96).bind_tools([t["function"] for t in TOOLS])
    reply = chat.invoke([HumanMessage("Find me a waterproof tent.")])
    assert reply.tool_calls and reply.tool_calls[0]["name"] in {t["function"]["name"] for t in TOOLS}
    assert _valid({"name": reply.tool_calls[0]["name"], "arguments": reply.tool_calls[0]["args"]})


@pytest.mark.slow
def test_a_batch_reuses_the_kept_beginning_after_cutting_it_back(instruct):
    from recagent.llm.instruct import InstructLLM

    fp32 = InstructLLM(instruct.models_dir, dtype="float32")  # bf16 rounds batch rows differently
    head = "Say in five words why someone who bought a tent would like this product: "
    first = [head + "a sleeping bag rated to -5 C.", head + "a sleeping pad, inflatable."]
    second = [head + "a headlamp, 300 lumens.", "Say in five words what a compass is for."]
    alone = [fp32.generate(p, max_tokens=12) for p in first + second]
    assert fp32.generate_batch(first, max_tokens=12) == alone[:2]
    long_prefix = len(fp32._kept_prefix[0])
    assert fp32.generate_batch(second, max_tokens=12) == alone[2:]  # cut back to "Say in five words"
    assert 16 <= len(fp32._kept_prefix[0]) < long_prefix
