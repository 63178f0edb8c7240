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
  (distillation keeps the sentences that pass their check);
- ``draw_batch(prompts, redraws, until=...)``: a greedy completion of each prompt, then sampled
  ones while the last fails ``until`` (a turn's explanations: a sentence that failed its
  check is drawn again);
- ``score(prompt, continuations)``: the log-likelihood of each continuation given one shared
  prompt (re-ranking candidates by how likely the model finds them after the user's history);
- ``generate_json(prompt, schema, adapter=...)``: a JSON value that matches ``schema``, decoded
  under the schema's constraint, optionally with a LoRA adapter (the request-reading adapter
  of ``recagent train-reader``); only where ``structured_output`` is true;
- ``chat_model()``: a LangChain chat model that can be bound to tools; only where
  ``serves_chat`` is true. ``can_call_tools`` says whether the model also calls tools unforced
  (an instruct model; the agent then lets it drive the turn by default).

A backend without a capability says so in its flag and raises :class:`LLMUnsupported` when the
method is called anyway. Backends are built from the settings by
:func:`recagent.app.llm_backend.make_llm`; heavy imports happen inside them, on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recagent.catalog.errors import RecAgentError

__all__ = ["BACKENDS", "CHAT_SYSTEM", "JSON_SYSTEM", "LLM", "LLMUnavailable", "LLMUnsupported", "ScoredContinuation",
           "answer_starts", "cut_at_stop", "draw_in_two_batches", "join_start", "stream_until_stop"]

BACKENDS = ("embedded", "instruct", "vllm", "none")
# The system turn before a prompt given to an instruct model as a chat (embedded or served).
CHAT_SYSTEM = "You are a helpful shopping assistant. Answer briefly."
# The system turn of a JSON answer (generate_json), on every backend and in adapter training.
JSON_SYSTEM = "Answer with one JSON object only."


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
        ``deadline`` (``time.monotonic()``): such a backend stops decoding then, and the
        answers not yet ended end where they are (cut off); a server runs the request whole."""
        ...

    def draw_batch(self, prompts: Sequence[str], redraws: int, *,
                   until: Callable[[int, str], bool], max_tokens: int = 48,
                   stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                   adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                   seed: int = 0, deadline: float | None = None) -> list[list[str]]:
        """The answers drawn for each prompt, in the order drawn: its greedy answer (as
        ``generate_batch``'s), then, while the last fails ``until(i, answer)``, up to
        ``redraws`` sampled ones (as ``sample_batch``'s); the greedy answer comes first even
        when a redraw ended before it. ``until`` is called on each answer as it ends (a caller
        may show it then). A backend that decodes in-process draws again within the same
        batch, and by ``deadline`` (``time.monotonic()``) ends every answer where it is (cut
        off); a server answers in two requests (:func:`draw_in_two_batches`)."""
        ...

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        """Log-likelihood of each continuation after ``prompt``; the prompt is computed once."""
        ...

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256,
                      adapter: str | None = None) -> object:
        """A JSON value matching ``schema`` (constrained decoding), with the LoRA ``adapter`` of
        that name (one of ``adapters``) or the model alone; needs ``structured_output``."""
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


SERVER_REDRAW_COST = 2.0  # a server's redraw request over its first batch, as estimated
STOPPABLE_REDRAW_SHARE = 0.5  # the least time left, as a share of the first batch, to start one


def draw_in_two_batches(llm: LLM, prompts: Sequence[str], redraws: int, *,
                        until: Callable[[int, str], bool], max_tokens: int = 48,
                        stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                        adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                        seed: int = 0, deadline: float | None = None) -> list[list[str]]:
    """``draw_batch`` for a backend that cannot draw again within a batch: ``generate_batch``,
    then one ``sample_batch`` of ``redraws`` answers to each prompt whose answer failed
    ``until``. By a ``deadline``, the second batch is started only when it can end in time: a
    backend that stops decoding at the deadline (``stops_at_deadline``) needs
    ``STOPPABLE_REDRAW_SHARE`` of the first batch's time left (less would end before any
    draw does); a server runs a request whole, so there the batch must be expected to end by
    the deadline, at ``SERVER_REDRAW_COST`` times the first batch (sampled sentences run
    longer than greedy ones: with the estimate at once the first batch, the demo shop's turn
    p95 went from 7.5 to 15.3 s under a 12 s budget). When the second batch fails
    (:class:`LLMUnavailable`), the first batch's answers stand."""
    started = time.monotonic()
    firsts = llm.generate_batch(prompts, max_tokens=max_tokens, stop=stop, starts=starts,
                                adapter=adapter)
    first_s = time.monotonic() - started
    drawn = [[answer] for answer in firsts]
    failed = [i for i, answer in enumerate(firsts) if not until(i, answer)]
    needed = (STOPPABLE_REDRAW_SHARE if llm.stops_at_deadline else SERVER_REDRAW_COST) * first_s
    if not failed or redraws < 1 or (deadline is not None and time.monotonic() + needed > deadline):
        return drawn
    starts = answer_starts(prompts, starts)
    try:
        more = llm.sample_batch([prompts[i] for i in failed], redraws, max_tokens=max_tokens,
                                stop=stop, starts=[starts[i] for i in failed], adapter=adapter,
                                temperature=temperature, top_p=top_p, seed=seed,
                                until=lambda j, answer: until(failed[j], answer),
                                deadline=deadline)
    except LLMUnavailable:
        return drawn
    for i, answers in zip(failed, more, strict=True):
        drawn[i].extend(answers)
    return drawn
