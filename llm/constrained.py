"""Constrained decoding with llguidance: a JSON-schema grammar masks every token the model may
not write next, so the reply is valid JSON for the schema by construction.

:class:`JsonDecoder` compiles each schema once (cached) for the model's tokenizer and decodes
greedily under it, reusing the KV cache of the prompt's unchanged beginning from one call to
the next. Where the grammar allows exactly one continuation (the keys of an object, ``", "``,
the closing braces), llguidance's fast-forward tokens are accepted and fed to the model in
one step instead of token by token, which saves most of the decode steps of a schema with
many fixed keys.

llguidance (Rust, no dependencies) rather than xgrammar: xgrammar 0.2.8 pulls in triton
(~1 GB) on Linux, which a CPU install does not use.

:func:`tool_call_schema` is the schema of one tool call, ``{"name": ..., "arguments": ...}``
with one branch per tool (``anyOf``), so a constrained model can only call a tool that exists,
with arguments that match that tool's schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from recagent.catalog.errors import ToolError
from recagent.llm.base import LLMUnavailable
from recagent.llm.causal_lm import keep_prefix

__all__ = ["JsonDecoder", "tool_call_schema"]


def tool_call_schema(tools: Sequence[dict]) -> dict:
    """The JSON schema of one call of one of ``tools`` (OpenAI-style function specs:
    ``{"name", "description", "parameters"}``, or wrapped as ``{"type": "function",
    "function": {...}}``)."""
    branches = []
    for tool in tools:
        spec = tool.get("function", tool)
        parameters = spec.get("parameters") or {"type": "object", "properties": {}}
        branches.append({
            "type": "object",
            "properties": {"name": {"const": spec["name"]}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
    if not branches:
        raise ValueError("a tool call needs at least one tool")
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


@dataclass
class JsonDecoder:
    """Greedy decoding of ``model`` under JSON-schema grammars for ``tokenizer``."""

    model: object
    tokenizer: object
    # Where set, the model that reads the first ``head`` tokens of a prompt (the base model
    # of an adapter's merged copy, see InstructLLM.json_head); ``model`` reads the rest.
    head_model: object = None
    _lltokenizer: object = field(default=None, init=False, repr=False)
    _grammars: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _prefix: tuple[list[int], object] | None = field(default=None, init=False, repr=False)
    _prefix_head: int = field(default=0, init=False, repr=False)

    def matcher(self, schema: dict):
        """A fresh llguidance matcher for ``schema`` (its grammar compiled once per schema)."""
        try:
            import llguidance
            import llguidance.hf
        except ImportError:
            raise LLMUnavailable("constrained decoding needs the llguidance package "
                                 "(reinstall recagent: pip install -e .)") from None
        if self._lltokenizer is None:
            self._lltokenizer = llguidance.hf.from_tokenizer(
                self.tokenizer, n_vocab=self.model.config.vocab_size)
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            # No free whitespace (a small model cannot pad the reply with newlines until it
            # runs out of tokens), but the spacing of json.dumps, which prompts show; the
            # properties in the schema's order.
            self._grammars[key] = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), overrides={"whitespace_flexible": False,
                                               "item_separator": ", ", "key_separator": ": "})
        matcher = llguidance.LLMatcher(self._lltokenizer, self._grammars[key], log_level=0)
        if matcher.is_error():
            raise ValueError(f"cannot constrain to this schema: {matcher.get_error()}")
        return matcher

    def decode(self, prompt_ids: list[int], schema: dict, *, max_tokens: int = 256,
               head: int = 0) -> object:
        """The JSON value the model writes after ``prompt_ids`` under ``schema`` (the first
        ``head`` of them read by ``head_model``, where there is one).

        Raises :class:`ToolError` when the value is not finished within ``max_tokens`` (the
        grammar guarantees validity only of a finished value).
        """
        import numpy as np
        import torch

        head = head if self.head_model is not None else 0
        matcher = self.matcher(schema)
        vocab = self.model.config.vocab_size
        written: list[int] = []
        with torch.inference_mode():
            out = self._prefill(prompt_ids, head)
            while len(written) < max_tokens:
                logits = out.logits[0, -1].float()
                allowed = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8),
                                        bitorder="little")[:vocab].astype(bool)
                logits[torch.from_numpy(~allowed)] = float("-inf")
                token = int(logits.argmax())
                if not matcher.consume_token(token):
                    raise ToolError(f"constrained decoding failed: {matcher.get_error()}")
                if token not in self._stop_ids:
                    written.append(token)
                if matcher.is_stopped():  # after the end token, or a token that ends the value
                    break
                step = [token]
                if forced := matcher.compute_ff_tokens():
                    if not matcher.consume_tokens(forced):
                        raise ToolError(f"constrained decoding failed: {matcher.get_error()}")
                    step += forced
                    written += forced
                out = self._forward(step, out.cache)
        keep_prefix(out.cache, len(prompt_ids))
        self._prefix = (list(prompt_ids), out.cache)
        self._prefix_head = head
        if not matcher.is_stopped():
            raise ToolError(f"the model's JSON was not finished within {max_tokens} tokens")
        return json.loads(self.tokenizer.decode(written, skip_special_tokens=True))

    @property
    def _stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}

    def _prefill(self, prompt_ids: list[int], head: int = 0):
        """The model's output after ``prompt_ids`` (the first ``head`` read by
        ``head_model``), reusing the KV cache of the previous prompt as far as the two agree
        (the instructions and examples before the message are computed once per process, not
        once per request)."""
        shared, cache = 0, None
        if self._prefix is not None:
            previous, cache = self._prefix
            limit = min(len(previous), len(prompt_ids) - 1)  # at least one token to run
            if self._prefix_head != head:  # a position read by the other model is not reused
                limit = min(limit, self._prefix_head, head)
            while shared < limit and previous[shared] == prompt_ids[shared]:
                shared += 1
        self._prefix = None  # the cache is being extended; kept again once decoding ends
        if shared == 0:
            cache = None
        else:
            keep_prefix(cache, shared)
        if shared < head:
            cache = self._forward(prompt_ids[shared:head], cache, self.head_model).cache
            shared = head
        return self._forward(prompt_ids[shared:], cache)

    def _forward(self, ids: list[int], cache, model=None):
        import torch

        model = model or self.model
        return model(input_ids=torch.tensor([ids], device=model.device), cache=cache,
                     use_cache=True, logits_to_keep=1)
