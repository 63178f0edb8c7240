"""One interface over the LLM backends: the embedded model on the CPU, or a vLLM server.

Every capability a caller may use is declared on :class:`LLM`, so no caller probes a backend
with ``hasattr``:

- ``generate(prompt)``: a short greedy completion (explanation prose);
- ``stream(prompt)``: the same completion, yielded piece by piece as it is decoded (the turn
  no longer streams its explanations: they are one batch, see ``generate_batch``);
- ``generate_batch(prompts, starts=..., adapter=...)``: several completions in one batched
  decode (a turn's explanations), each optionally opening with given text the model
  continues, optionally with a LoRA adapter switched on (``adapters`` names those there are:
  the explanation adapter of ``recagent train-explainer``);
- ``sample_batch(prompts, n, ...)``: ``n`` sampled completions of each prompt, in one batch
  (a sentence that failed its check is drawn again);
- ``score(prompt, continuations)``: the log-likelihood of each continuation given one shared
  prompt (re-ranking candidates by how likely the model finds them after the user's history);
- ``generate_json(prompt, schema)``: a JSON value that matches ``schema``, decoded under the
  schema's constraint; only where ``structured_output`` is true;
- ``chat_model()``: a LangChain chat model that can be bound to tools; only where
  ``serves_chat`` is true. ``can_call_tools`` says whether the model also calls tools unforced
  (an instruct model; the agent then lets it drive the turn by default).

A backend without a capability says so in its flag and raises :class:`LLMUnsupported` when the
method is called anyway. Backends are built from the settings by
:func:`recagent.app.llm_backend.make_llm`; heavy imports happen inside them, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recagent.catalog.errors import RecAgentError

__all__ = ["BACKENDS", "CHAT_SYSTEM", "LLM", "LLMUnavailable", "LLMUnsupported", "ScoredContinuation",
           "answer_starts", "cut_at_stop", "join_start", "stream_until_stop"]

BACKENDS = ("embedded", "instruct", "vllm", "none")
# The system turn before a prompt given to an instruct model as a chat (embedded or served).
CHAT_SYSTEM = "You are a helpful shopping assistant. Answer briefly."


class LLMUnavailable(RecAgentError):
    """The language model cannot be reached or loaded; the agent answers without it."""


class LLMUnsupported(RecAgentError):
    """The backend lacks the capability asked for (its flag says so); a programming error."""


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
    serves_chat: bool  # chat_model() works
    can_call_tools: bool  # the model calls tools by itself (implies serves_chat)
    structured_output: bool  # generate_json() works
    adapters: frozenset[str]  # LoRA adapters a generate_batch call may name (may be empty)
    stops_at_deadline: bool  # sample_batch stops decoding at its deadline (decodes in-process)

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        """Greedy completion of ``prompt`` (without the prompt), cut at the first stop string."""
        ...

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> Iterator[str]:
        """The pieces of ``generate``'s text as they are decoded (joined: the same text, before
        its surrounding whitespace is stripped)."""
        ...

    def generate_batch(self, prompts: Sequence[str], *, max_tokens: int = 96,
                       stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                       adapter: str | None = None) -> list[str]:
        """``generate`` for each prompt, in one batched decode where the backend can (a turn's
        explanations are written together: on the CPU a batch costs little more than one);
        with the LoRA ``adapter`` of that name (one of ``adapters``), or the model alone.

        ``starts[i]``, when given, is how answer ``i`` begins: it is written for the model,
        which continues it, and it is part of the returned text (a sentence that must open
        with the product's name need not spend decode steps on it, nor can it name another).
        A raw-text backend appends it to the prompt with :func:`join_start`."""
        ...

    def sample_batch(self, prompts: Sequence[str], n: int, *, max_tokens: int = 48,
                     stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                     adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                     seed: int = 0, until: Callable[[int, str], bool] | None = None,
                     deadline: float | None = None) -> list[list[str]]:
        """``n`` answers to each prompt drawn by sampling (``temperature``, nucleus ``top_p``),
        opening with its start as ``generate_batch``'s do, in one batch where the backend can;
        the same ``seed`` draws the same answers on the same backend.

        ``until(i, answer)``: a backend that decodes the rows itself stops drawing answers to
        prompt ``i`` once one satisfies it, and returns the answers it has then, in the order
        they ended (fewer than ``n``; the last is the one that did). One that cannot stop a
        request midway (a server) returns all ``n``: a caller takes the first that passes.
        ``deadline`` (``time.monotonic()``): such a backend stops decoding then, and drops the
        answers not yet ended; a server runs the request whole."""
        ...

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        """Log-likelihood of each continuation after ``prompt``; the prompt is computed once."""
        ...

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256) -> object:
        """A JSON value matching ``schema`` (constrained decoding); needs ``structured_output``."""
        ...

    def chat_model(self, *, temperature: float = 0.0, max_tokens: int = 512) -> object:
        """A LangChain chat model that can be bound to tools; needs ``serves_chat``."""
        ...


def answer_starts(prompts: Sequence[str], starts: Sequence[str] | None) -> list[str]:
    """``generate_batch``'s ``starts`` as a list, one per prompt ("" where none is given)."""
    if starts is None:
        return [""] * len(prompts)
    if len(starts) != len(prompts):
        raise ValueError(f"{len(starts)} starts for {len(prompts)} prompts")
    return list(starts)


def join_start(prompt: str, start: str) -> str:
    """``prompt`` followed by the beginning of its answer, one space between them unless the
    prompt ends in whitespace ("Sentence:" + "Heat (1995)" -> "Sentence: Heat (1995)")."""
    if not start:
        return prompt
    return prompt + ("" if not prompt or prompt[-1].isspace() else " ") + start


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
