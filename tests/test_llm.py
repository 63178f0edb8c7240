"""The LLM backends: the real embedded Gemma, and the vLLM client's error handling."""

import tempfile
import time
from pathlib import Path

import pytest

from recagent.app.llm_backend import make_llm
from recagent.app.settings import Settings
from recagent.llm.base import LLMUnavailable, stream_until_stop
from recagent.llm.vllm_client import VLLMClient

PROMPT = "A shopper bought: Trail Running Shoes, Running Socks.\nNext they bought:"
CANDIDATES = [" Running Shorts", " Cast Iron Skillet, 12-inch", " Trail Running Shoes, blue"]


def test_embedded_scores_match_a_full_forward_pass(gemma):
    import torch

    scored = gemma.score(PROMPT, CANDIDATES)
    assert [s.tokens for s in scored] == [len(gemma._encode(c, bos=False)) for c in CANDIDATES]
    prompt_ids = gemma._encode(PROMPT, bos=True)
    for cand, got in zip(CANDIDATES, scored, strict=True):
        ids = torch.tensor([prompt_ids + gemma._encode(cand, bos=False)])
        with torch.inference_mode():
            logprobs = torch.log_softmax(gemma.model(ids).logits[0].float(), dim=-1)
        want = sum(float(logprobs[t - 1, ids[0, t]]) for t in range(len(prompt_ids), ids.shape[1]))
        assert got.logprob == pytest.approx(want, abs=0.35 * got.tokens)  # bf16 rounding
    assert gemma.score(PROMPT, []) == []


def test_embedded_generation_is_greedy_and_stops(gemma):
    first = gemma.generate(PROMPT, max_tokens=12, stop=["\n"])
    assert first == gemma.generate(PROMPT, max_tokens=12, stop=["\n"])
    assert "\n" not in first


def test_embedded_stream_yields_the_generated_text_piece_by_piece(gemma):
    whole = gemma.generate(PROMPT, max_tokens=16)
    pieces = list(gemma.stream(PROMPT, max_tokens=16))
    assert len(pieces) > 3 and "".join(pieces).strip() == whole
    cut = list(gemma.stream(PROMPT, max_tokens=16, stop=["\n"]))
    assert "".join(cut).strip() == gemma.generate(PROMPT, max_tokens=16, stop=["\n"])


def test_a_batch_generates_what_each_prompt_generates_alone(gemma):
    from recagent.llm.embedded import EmbeddedLLM

    prompts = [PROMPT, "The capital of France is", "My favourite films are Heat (1995) and"]
    fp32 = EmbeddedLLM(gemma.models_dir, dtype="float32")  # bf16 rounds padded rows differently
    alone = [fp32.generate(p, max_tokens=10, stop=["\n"]) for p in prompts]
    assert fp32.generate_batch(prompts, max_tokens=10, stop=["\n"]) == alone
    assert fp32.generate_batch([]) == []
    assert all("\n" not in t for t in gemma.generate_batch(prompts, max_tokens=10, stop=["\n"]))


SHARED = ("Write one short sentence about why a shopper would like a product. Be specific, "
          "name what it has in common with what they bought, and do not invent facts.\n")


def test_a_shared_beginning_is_computed_once_and_kept_without_changing_the_text(gemma):
    from recagent.llm.embedded import EmbeddedLLM

    fp32 = EmbeddedLLM(gemma.models_dir, dtype="float32")
    first = [SHARED + "Product: Trail Running Shoes.", SHARED + "Product: a cast iron skillet."]
    second = [SHARED + "Product: Running Socks, wool.", SHARED + "Product: Heat (1995)."]
    alone = [fp32.generate(p, max_tokens=10, stop=["\n"]) for p in first + second]
    assert fp32.generate_batch(first, max_tokens=10, stop=["\n"]) == alone[:2]
    kept_ids, _ = fp32._kept_prefix
    assert len(kept_ids) >= len(fp32._prompt_ids(SHARED)) - 1  # the instructions, once
    assert fp32.generate_batch(second, max_tokens=10, stop=["\n"]) == alone[2:]  # reused
    assert fp32.generate_batch(first[:1], max_tokens=10, stop=["\n"]) == alone[:1]


def test_int8_quantises_the_linear_layers_and_still_generates(gemma):
    import torch

    from recagent.llm.embedded import EmbeddedLLM

    int8 = EmbeddedLLM(gemma.models_dir, dtype="int8")
    layers = [m for m in int8.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert int8.quantized and len(layers) > 50
    text = int8.generate(PROMPT, max_tokens=8, stop=["\n"])
    assert text and int8.generate_batch([PROMPT], max_tokens=8, stop=["\n"]) == [text]
    with pytest.raises(ValueError, match="unknown LLM dtype"):
        EmbeddedLLM(gemma.models_dir, dtype="int4")


@pytest.mark.parametrize(("pieces", "stop", "want"), [
    (["Hello", " wor", "ld"], [], ["Hello", " wor", "ld"]),
    (["a\n", "b"], ["\n"], ["a"]),
    (["one ST", "OP two"], ["STOP"], ["one "]),  # a stop string split across pieces
    (["ab", "S", "Tx"], ["STOP"], ["ab", "STx"]),  # a false start is released once it fails
    (["x"], ["", "\n"], ["x"]),
])
def test_stream_until_stop(pieces, stop, want):
    assert list(stream_until_stop(iter(pieces), stop)) == want


def test_stream_until_stop_stops_reading_at_the_stop():
    read = []

    def source():
        for p in ["a", "b\nc", "never"]:
            read.append(p)
            yield p

    assert "".join(stream_until_stop(source(), ["\n"])) == "ab"
    assert read == ["a", "b\nc"]


def test_embedded_checkpoint_is_converted_once(gemma):
    from recagent.llm.embedded import convert_gguf

    path = gemma.checkpoint
    stamp = (path / "config.json").stat().st_mtime
    assert convert_gguf(gemma.models_dir) == path
    assert (path / "config.json").stat().st_mtime == stamp
    assert not (gemma.models_dir / ".gemma-3-270m.partial").exists()


def test_vllm_server_down_is_a_clear_error_fast():
    client = VLLMClient("http://127.0.0.1:9", timeout=2, max_retries=0)
    started = time.perf_counter()
    with pytest.raises(LLMUnavailable, match="cannot reach the vLLM server at http://127.0.0.1:9/v1"):
        client.score("x", ["y"])
    assert time.perf_counter() - started < 5
    assert "127.0.0.1:9" in client.name  # naming it never calls the server


def test_make_llm_from_settings(tmp_path):
    assert make_llm(Settings(home=tmp_path, llm="none")) is None
    with pytest.raises(LLMUnavailable, match="needs a server"):
        make_llm(Settings(home=tmp_path, llm="vllm"))
    client = make_llm(Settings(home=tmp_path, llm="vllm", llm_url="http://h:1", llm_model="m"))
    assert client.base_url == "http://h:1/v1" and client.model == "m"


def test_vllm_server_refuses_a_port_in_use(tmp_path):
    import socket

    from recagent.llm.vllm_server import VLLMServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = VLLMServer(tmp_path, python=tmp_path / "python", port=port)
        with pytest.raises(LLMUnavailable, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(timeout=1)
        assert server.process is None  # nothing was started


def test_vllm_server_serves_lora_adapters_under_their_names(tmp_path):
    from recagent.llm.vllm_server import VLLMServer

    plain = VLLMServer(tmp_path, python=tmp_path / "python").command(tmp_path / "t.jinja")
    assert "--enable-lora" not in plain
    adapter = tmp_path / "ranker" / "adapter"
    cmd = VLLMServer(tmp_path, python=tmp_path / "python", lora_modules={"ml100k-ranker": adapter},
                     max_lora_rank=8).command(tmp_path / "t.jinja")
    assert cmd[cmd.index("--lora-modules") + 1] == f"ml100k-ranker={adapter}"
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "8"


def test_a_lora_adapter_for_another_base_is_refused_before_vllm_starts(tmp_path):
    import json

    from recagent.llm.base import LLMUnavailable
    from recagent.llm.vllm_server import VLLMServer, free_port

    adapter = tmp_path / "ranker" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "/home/x/models/gemma-3-270m"}))
    qwen = VLLMServer(tmp_path / "qwen2.5-coder-0.5b-instruct", python=tmp_path / "python",
                      port=free_port(), lora_modules={"ranker": adapter})
    with pytest.raises(LLMUnavailable, match="trained on gemma-3-270m.*--model embedded"):
        qwen.start(timeout=1)
    assert qwen.process is None
    VLLMServer(tmp_path / "gemma-3-270m", lora_modules={"ranker": adapter}).check_adapters()


def test_the_instruct_model_is_served_with_its_own_chat_template(tmp_path):
    from recagent.llm.vllm_server import VLLMServer

    gemma = VLLMServer(tmp_path, python=tmp_path / "python").command(tmp_path / "t.jinja")
    assert gemma[gemma.index("--chat-template") + 1] == str(tmp_path / "t.jinja")
    own = VLLMServer(tmp_path, python=tmp_path / "python", served_name="qwen2.5-coder-0.5b-instruct",
                     own_chat_template=True).command(tmp_path / "t.jinja")
    assert "--chat-template" not in own and own[own.index("--tool-call-parser") + 1] == "hermes"


def test_gemma_draws_again_in_a_second_batch(gemma, monkeypatch):
    """Gemma 3 attends within a sliding window (its cache drops the positions a redraw inside
    the batch would need), so its redraws take the two-batch path; the greedy answer comes first."""
    from recagent.llm import causal_lm

    calls = []
    two_batches = causal_lm.draw_in_two_batches

    def recording(llm, prompts, redraws, **kwargs):
        calls.append((list(prompts), redraws))
        return two_batches(llm, prompts, redraws, **kwargs)

    monkeypatch.setattr(causal_lm, "draw_in_two_batches", recording)
    assert gemma._sliding
    drawn = gemma.draw_batch([PROMPT], 2, until=lambda i, answer: True, max_tokens=8, stop=["\n"])
    assert calls == [([PROMPT], 2)]
    assert drawn == [[gemma.generate_batch([PROMPT], max_tokens=8, stop=["\n"])[0]]]


@pytest.mark.parametrize("then", ["exit 1", "sleep 30"])
def test_vllm_servers_temporary_files_live_in_a_folder_of_its_own_that_goes_with_it(tmp_path, then):
    from recagent.llm.vllm_server import VLLMServer, free_port

    # A stand-in for the server's python: it makes a socket file where vLLM would, and a file
    # store where torch.distributed would (the temporary folder), then exits (a failed start)
    # or never answers (a start that times out).
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$VLLM_RPC_BASE_PATH" > {tmp_path}/where\n'
                      f'echo "$TMPDIR" > {tmp_path}/tmp\n'
                      f'echo "$TORCHINDUCTOR_CACHE_DIR" > {tmp_path}/compile-cache\n'
                      f'touch "$VLLM_RPC_BASE_PATH/some-uuid" "$TMPDIR/vllm_dist_some-uuid"\n{then}\n')
    python.chmod(0o755)
    server = VLLMServer(tmp_path, python=python, port=free_port(), log_path=tmp_path / "log")
    with pytest.raises(LLMUnavailable):
        server.start(timeout=3)
    where = Path((tmp_path / "where").read_text().strip())
    assert where.name.startswith("recagent-vllm-") and where != Path(tempfile.gettempdir())
    assert Path((tmp_path / "tmp").read_text().strip()) == where
    assert not where.exists() and server.scratch_dir is None
    # torch's compile cache stays where it is by default, so the next server finds it
    cache = Path((tmp_path / "compile-cache").read_text().strip())
    assert cache.parent == Path(tempfile.gettempdir()) and cache.name.startswith("torchinductor_")
