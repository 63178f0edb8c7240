"""Constrained decoding with xgrammar: a JSON-schema grammar masks every token the model may
not write next, so the reply is valid JSON for the schema by construction.

:class:`JsonDecoder` compiles each schema once (cached) against the model's tokenizer and
decodes greedily under it, reusing the KV cache of the prompt's unchanged beginning from one
call to the next. Where the grammar allows exactly one continuation (the keys of an
object, ``", "``, the closing braces), xgrammar's jump-forward string is accepted and fed to
the model in one step instead of token by token, which saves most of the decode steps of a
schema with many fixed keys.

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
    _compiler: object = field(default=None, init=False, repr=False)
    _compiled: dict[str, object] = field(default_factory=dict, init=False, repr=False)
    _prefix: tuple[list[int], object] | None = field(default=None, init=False, repr=False)

    def compile(self, schema: dict):
        """The compiled grammar of ``schema`` (compiled once per distinct schema)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._compiled:
            try:
                import xgrammar as xgr
            except ImportError:
                raise LLMUnavailable("constrained decoding needs the xgrammar package "
                                     "(reinstall recagent: pip install -e .)") from None
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.model.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info, max_threads=1)
            # No free whitespace (a small model cannot pad the reply with newlines until it
            # runs out of tokens), but the spacing of json.dumps, which prompts show; the
            # properties in the schema's order.
            self._compiled[key] = self._compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, separators=(", ", ": "), strict_mode=True)
        return self._compiled[key]

    def decode(self, prompt_ids: list[int], schema: dict, *, max_tokens: int = 256) -> object:
        """The JSON value the model writes after ``prompt_ids`` under ``schema``.

        Raises :class:`ToolError` when the value is not finished within ``max_tokens`` (the
        grammar guarantees validity only of a finished value).
        """
        import torch
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(self.compile(schema))
        vocab = self.model.config.vocab_size
        bitmask = xgr.allocate_token_bitmask(1, vocab)
        written: list[int] = []
        with torch.inference_mode():
            out = self._prefill(prompt_ids)
            while len(written) < max_tokens:
                logits = out.logits[0, -1:].float()
                matcher.fill_next_token_bitmask(bitmask)
                xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device))
                token = int(logits[0].argmax())
                if not matcher.accept_token(token):
                    raise ToolError("constrained decoding: the grammar refused its own token")
                if matcher.is_terminated():
                    break
                step = [token]
                written.append(token)
                if forced := matcher.find_jump_forward_string():
                    for forced_token in self.tokenizer.encode(forced, add_special_tokens=False):
                        if not matcher.accept_token(forced_token):
                            break
                        step.append(forced_token)
                        written.append(forced_token)
                out = self._forward(step, out.cache)
        _keep(out.cache, len(prompt_ids))
        self._prefix = (list(prompt_ids), out.cache)
        if not matcher.is_terminated():
            raise ToolError(f"the model's JSON was not finished within {max_tokens} tokens")
        text = self.tokenizer.decode(written, skip_special_tokens=True)
        return json.loads(text)

    def _prefill(self, prompt_ids: list[int]):
        """The model's output after ``prompt_ids``, reusing the KV cache of the previous
        prompt as far as the two agree (the instructions and examples before the message are
        computed once per process, not once per request)."""
        shared = 0
        if self._prefix is not None:
            previous, cache = self._prefix
            limit = min(len(previous), len(prompt_ids) - 1)  # at least one token to run
            while shared < limit and previous[shared] == prompt_ids[shared]:
                shared += 1
        if shared == 0:
            self._prefix = None
            return self._forward(prompt_ids, None)
        _keep(cache, shared)
        self._prefix = None  # the cache is being extended; kept again once decoding ends
        return self._forward(prompt_ids[shared:], cache)

    def _forward(self, ids: list[int], cache):
        import torch

        device = self.model.device
        return self.model(input_ids=torch.tensor([ids], device=device), cache=cache,
                          use_cache=True, logits_to_keep=1)


def _keep(cache, length: int) -> None:
    """Cut ``cache`` back to its first ``length`` positions (transformers' ``crop`` takes the
    number of positions to remove, as a negative count)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)
