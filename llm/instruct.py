"""The embedded instruct backend: Qwen2.5-Coder-0.5B-Instruct in-process, with constrained
decoding.

- ``generate``/``stream`` answer the prompt as one user turn of the model's chat template;
- ``score`` rates raw continuations of the raw prompt (no chat wrapping: it compares texts);
- ``generate_json`` decodes under the schema's grammar (xgrammar), so the value always parses
  and matches the schema;
- ``tool_call`` picks one tool and its arguments under the grammar of all the tools' calls;
- ``chat_model`` is a LangChain chat model whose tool calls come from ``tool_call``.

The model and its verification are in :mod:`recagent.llm.instruct_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from recagent.llm.base import CHAT_SYSTEM, JSON_SYSTEM, stream_until_stop
from recagent.llm.causal_lm import CausalLM
from recagent.llm.constrained import JsonDecoder, tool_call_schema
from recagent.llm.instruct_model import INSTRUCT_CHECKPOINT, convert_instruct

__all__ = ["InstructLLM"]


class InstructLLM(CausalLM):
    """An instruct model with a tool-calling chat template, on the CPU."""

    serves_chat = True
    # Every tool call is decoded under the tools' grammar, so it always names a real tool
    # with valid arguments; but a turn the model drives (several steps of ~30 tokens each)
    # takes tens of seconds on a 2-core CPU, so the agent uses it only when asked
    # (--agent tools); by default it reads the request (generate_json) in the fixed plan.
    can_call_tools = False
    structured_output = True
    name = f"instruct:{INSTRUCT_CHECKPOINT}"

    @cached_property
    def checkpoint(self) -> Path:
        return convert_instruct(self.models_dir)

    @cached_property
    def decoder(self) -> JsonDecoder:
        return JsonDecoder(self.model, self.tokenizer)

    @cached_property
    def _adapter_decoders(self) -> dict[str, JsonDecoder]:
        return {}

    def decoder_for(self, adapter: str | None) -> JsonDecoder:
        """The constrained decoder of the model alone, or of its copy with ``adapter`` merged
        (each keeps its own cached prompt prefix)."""
        if adapter is None:
            return self.decoder
        if adapter not in self._adapter_decoders:
            self._adapter_decoders[adapter] = JsonDecoder(self._model_for(adapter), self.tokenizer,
                                                          head_model=self.model)
        return self._adapter_decoders[adapter]

    def chat_ids(self, messages: Sequence[dict], *, tools: Sequence[dict] | None = None) -> list[int]:
        """The token ids of ``messages`` in the chat template, ending where the assistant's
        reply begins."""
        ids = self.tokenizer.apply_chat_template(
            list(messages), tools=list(tools) if tools else None,
            add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(ids)

    def _prompt_ids(self, prompt: str) -> list[int]:
        return self.chat_ids([{"role": "system", "content": CHAT_SYSTEM},
                              {"role": "user", "content": prompt}])

    def _answer_ids(self, prompt: str, start: str) -> list[int]:
        """The chat turn of ``prompt``, and the assistant's reply already begun with ``start``."""
        ids = self._prompt_ids(prompt)
        return ids + self.tokenizer.encode(start, add_special_tokens=False) if start else ids

    def reply(self, messages: Sequence[dict], *, max_tokens: int = 256,
              stop: Sequence[str] = ()) -> str:
        """The assistant's next text turn after ``messages`` (greedy, unconstrained)."""
        pieces = self._greedy(self.chat_ids(messages), max_tokens)
        return "".join(stream_until_stop(pieces, stop)).strip()

    def json_ids(self, prompt: str) -> list[int]:
        """The token ids of ``prompt`` as a chat turn that asks for JSON (``JSON_SYSTEM``),
        ending where the assistant's JSON begins."""
        return self.chat_ids([{"role": "system", "content": JSON_SYSTEM},
                              {"role": "user", "content": prompt}])

    def json_head(self, prompt: str, ids: list[int] | None = None) -> int:
        """How many of the first tokens of :meth:`json_ids` are the prompt's head: all of it
        but its last line (the instructions and examples before the message). With an
        adapter, the model alone reads the head, as in training (``answer_adapter``), and
        the adapter reads the last line and writes the answer: the head's cache is then
        shared by every request and the adapter learns only what a request asks. (``ids``:
        ``json_ids(prompt)``, where the caller has them.)"""
        cut = prompt.rfind("\n")
        if cut < 0:
            return 0
        full, head = ids or self.json_ids(prompt), self.json_ids(prompt[: cut + 1])
        n = 0
        while n < min(len(full), len(head)) - 1 and full[n] == head[n]:
            n += 1
        return n

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256,
                      adapter: str | None = None) -> object:
        """A JSON value under ``schema``'s grammar; with ``adapter``, the prompt's head
        (:meth:`json_head`) is read by the model alone."""
        ids = self.json_ids(prompt)
        head = self.json_head(prompt, ids) if adapter is not None else 0
        return self.decoder_for(adapter).decode(ids, schema, max_tokens=max_tokens, head=head)

    def tool_call(self, messages: Sequence[dict], tools: Sequence[dict], *,
                  max_tokens: int = 256) -> dict:
        """One call ``{"name": ..., "arguments": {...}}`` of one of ``tools`` (OpenAI-style
        function specs) as the next assistant step after ``messages``."""
        ids = self.chat_ids(messages, tools=tools)
        # The template asks for <tool_call> tags; the grammar starts right inside them.
        ids += self.tokenizer.encode("<tool_call>\n", add_special_tokens=False)
        call = self.decoder.decode(ids, tool_call_schema(tools), max_tokens=max_tokens)
        assert isinstance(call, dict)
        return call

    def chat_model(self, *, temperature: float = 0.0, max_tokens: int = 512) -> object:
        from recagent.llm.instruct_chat import InstructChatModel

        return InstructChatModel(llm=self, max_tokens=max_tokens)

