"""One interface over the LLM backends: the embedded Gemma on the CPU, or a vLLM server.

The agent needs two things from a language model:

- ``generate(prompt)``: a short greedy completion (explanation prose, a JSON constraint parse);
- ``stream(prompt)``: the same completion, yielded piece by piece as it is decoded (the chat
  and the HTTP backend show the words as they come);
- ``score(prompt, continuations)``: the log-likelihood of each continuation given one shared
  prompt (re-ranking candidates by how likely the model finds them after the user's history).

A backend that can also call tools (an instruct model served by vLLM with a tool-call parser)
exposes ``chat_model()``, a LangChain chat model; the embedded base model cannot, and the agent
then runs its fixed plan instead. A backend with ``structured_output`` also has
``generate_json(prompt, schema)`` (vLLM's JSON-schema guided decoding), which the agent uses to
parse constraints next to its rules. Backends are built from the settings by
:func:`recagent.app.llm_backend.make_llm`; heavy imports happen inside them, on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recagent.catalog.errors import RecAgentError


__all__ = ["BACKENDS", "LLM", "LLMUnavailable", "ScoredContinuation", "stream_until_stop"]

BACKENDS = ("embedded", "vllm", "none")


class LLMUnavailable(RecAgentError):
    """The language model cannot be reached or loaded; the agent answers without it."""


@dataclass(frozen=True)
class ScoredContinuation:
    """Log-likelihood of one continuation: the sum over its tokens, and the token count."""

    logprob: float
    tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / max(1, self.tokens)


@runtime_checkable
class LLM(Protocol):
    name: str
    can_call_tools: bool
    structured_output: bool

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        """Greedy completion of ``prompt`` (without the prompt), cut at the first stop string."""
        ...

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> Iterator[str]:
        """The pieces of ``generate``'s text as they are decoded (joined: the same text, before
        its surrounding whitespace is stripped)."""
        ...

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        """Log-likelihood of each continuation after ``prompt``; the prompt is computed once."""
        ...


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first of the ``stop`` strings (all of it when none occurs)."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if s and at != -1:
            cut = min(cut, at)
    return text[:cut]


def stream_until_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """``pieces`` up to the first stop string, as they come.

    Text that could still turn out to be the start of a stop string is held back until it
    cannot, so a stop string split across two pieces is never emitted. Stops reading (which
    ends the generation) as soon as a stop string is complete.
    """
    stop = [s for s in stop if s]
    pending = ""
    for piece in pieces:
        pending += piece
        cut = min((at for s in stop if (at := pending.find(s)) != -1), default=-1)
        if cut != -1:
            if pending[:cut]:
                yield pending[:cut]
            return
        keep = max((n for s in stop for n in range(1, len(s)) if pending.endswith(s[:n])), default=0)
        if len(pending) > keep:
            yield pending[: len(pending) - keep]
            pending = pending[len(pending) - keep :]
    if pending:
        yield pending
