"""The vLLM backend: any OpenAI-compatible vLLM server.

- ``generate``, ``stream`` and ``score`` use the completions endpoint. Scoring sends the prompt followed by
  each candidate as one batch with ``echo`` and ``logprobs``, so the server returns the
  log-probability of every prompt token; the candidate's tokens are those whose text offset is
  past the shared prompt. vLLM's prefix cache computes the shared prompt once.
- ``chat_model()`` is a LangChain ``ChatOpenAI`` on the same server, for the tool-calling agent.
- An instruct model (any served model but the base Gemma this project converts) is prompted
  as the embedded instruct backend prompts it: each prompt is a user turn of its chat
  template, and a given start of the answer (``starts=``) is the assistant turn it
  continues (``continue_final_message``); a batch is sent as concurrent requests, which the
  server batches.

Every call has a timeout and a bounded number of retries; a server that is down or answers
with an error becomes :class:`LLMUnavailable` with the URL in the message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property

from recagent.llm.base import (
    CHAT_SYSTEM,
    JSON_SYSTEM,
    LLMUnavailable,
    ScoredContinuation,
    answer_starts,
    cut_at_stop,
    draw_in_two_batches,
    join_start,
    stream_until_stop,
)

__all__ = ["VLLMClient"]

BASE_MODEL = "gemma-3-270m"  # the served name of the converted embedded checkpoint


class VLLMClient:
    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 1,
        can_call_tools: bool | None = None,
        adapters: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self._model = model
        self.api_key = api_key or "EMPTY"
        self.timeout = timeout
        self.max_retries = max_retries
        self._can_call_tools = can_call_tools
        self._wanted_adapters = tuple(adapters)
        self.structured_output = True  # JSON-schema guided decoding (generate_json)
        self.serves_chat = True  # chat_model(): an OpenAI-compatible chat endpoint
        self.stops_at_deadline = False  # a request runs whole

    @property
    def name(self) -> str:
        """For logs and answers; never asks the server (it may be down)."""
        return f"vllm:{self._model or 'served model'}@{self.base_url}"

    @property
    def can_call_tools(self) -> bool:
        """Whether the served model drives tools by itself. Unless told, every model but the
        base Gemma this project converts (which never calls a tool unless forced) is assumed
        to, and a server that cannot be reached is assumed not to."""
        return self._can_call_tools if self._can_call_tools is not None else self.chat_prompts

    @cached_property
    def client(self):
        from openai import OpenAI

        return OpenAI(
            base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
            max_retries=self.max_retries,
        )

    @cached_property
    def model(self) -> str:
        """The configured model name, or the first (usually only) model the server serves."""
        if self._model:
            return self._model
        if not self.served_models:
            raise LLMUnavailable(f"the vLLM server at {self.base_url} serves no model")
        return self.served_models[0]

    @cached_property
    def served_models(self) -> list[str]:
        """The names the server serves: the model first, then its LoRA modules (asked once)."""
        return [m.id for m in self._call(lambda: self.client.models.list().data)]

    def _call(self, request):
        import openai

        try:
            return request()
        except openai.APIConnectionError as exc:
            raise LLMUnavailable(
                f"cannot reach the vLLM server at {self.base_url} ({exc.__class__.__name__}); "
                "is it running? `recagent llm serve` starts one"
            ) from None
        except openai.APIStatusError as exc:
            raise LLMUnavailable(
                f"the vLLM server at {self.base_url} answered {exc.status_code}: {exc.message}"
            ) from None
        except openai.APITimeoutError:
            raise LLMUnavailable(
                f"the vLLM server at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None

    @property
    def chat_prompts(self) -> bool:
        """Whether prompts go through the served model's chat template (an instruct model)."""
        try:
            return BASE_MODEL not in self.model
        except LLMUnavailable:
            return False

    def _messages(self, prompt: str) -> list[dict]:
        """``prompt`` as a user turn, after the system turn the embedded instruct backend gives."""
        system = [{"role": "system", "content": CHAT_SYSTEM}] if self.chat_prompts else []
        return [*system, {"role": "user", "content": prompt}]

    def _chat_answers(self, prompt: str, start: str, max_tokens: int, stop: Sequence[str],
                      model: str | None = None, *, n: int = 1, temperature: float = 0.0,
                      top_p: float = 1.0, seed: int | None = None) -> list[str]:
        """``n`` answers to ``prompt`` as a chat turn, each continuing ``start``."""
        messages = self._messages(prompt)
        if start:
            messages.append({"role": "assistant", "content": start})
        response = self._call(
            lambda: self.client.chat.completions.create(
                model=model or self.model, messages=messages, max_tokens=max_tokens,
                temperature=temperature, top_p=top_p, n=n, seed=seed, stop=list(stop) or None,
                extra_body={"add_generation_prompt": not start, "continue_final_message": bool(start)},
            )
        )
        choices = sorted(response.choices, key=lambda c: c.index)
        return [(start + cut_at_stop(c.message.content or "", stop)).strip() for c in choices]

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        if self.chat_prompts:
            return self._chat_answers(prompt, "", max_tokens, stop)[0]
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0.0,
                stop=list(stop) or None,
            )
        )
        return cut_at_stop(response.choices[0].text, stop).strip()

    @cached_property
    def adapters(self) -> frozenset[str]:
        """The LoRA adapters asked for (``adapters=``) that the server lists as models
        (``recagent llm serve --lora NAME=DIR`` serves one under NAME); asked once."""
        if not self._wanted_adapters:
            return frozenset()
        try:
            return frozenset(self._wanted_adapters) & set(self.served_models)
        except LLMUnavailable:
            return frozenset()

    def generate_batch(self, prompts: Sequence[str], *, max_tokens: int = 96,
                       stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                       adapter: str | None = None) -> list[str]:
        """One completions request with every prompt: the server batches them. A LoRA
        ``adapter`` is asked for by its served name."""
        starts = answer_starts(prompts, starts)
        rows = self._answers(prompts, 1, max_tokens=max_tokens, stop=stop, starts=starts,
                             adapter=adapter, temperature=0.0, top_p=1.0, seed=None)
        return [row[0] if row else start.strip() for row, start in zip(rows, starts, strict=True)]

    def sample_batch(self, prompts: Sequence[str], n: int, *, max_tokens: int = 48,
                     stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                     adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                     seed: int = 0, until: Callable[[int, str], bool] | None = None,
                     deadline: float | None = None) -> list[list[str]]:
        """``n`` sampled answers to each prompt (the request's ``n``, ``seed`` for vLLM's
        per-request generator): one completions request, or one chat request per prompt. The
        server draws all ``n`` (``until`` and ``deadline`` are not used: the request runs
        whole)."""
        if temperature <= 0:
            raise ValueError("sampling needs a temperature above 0")
        if n < 1:
            return [[] for _ in prompts]
        return self._answers(prompts, n, max_tokens=max_tokens, stop=stop,
                             starts=answer_starts(prompts, starts), adapter=adapter,
                             temperature=temperature, top_p=top_p, seed=seed)

    def draw_batch(self, prompts: Sequence[str], redraws: int, *,
                   until: Callable[[int, str], bool], max_tokens: int = 48,
                   stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                   adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                   seed: int = 0, deadline: float | None = None) -> list[list[str]]:
        """A greedy request, then a sampled one for the answers that failed ``until``, when it
        is expected to end by the ``deadline`` (:func:`draw_in_two_batches`)."""
        return draw_in_two_batches(self, prompts, redraws, until=until, max_tokens=max_tokens,
                                   stop=stop, starts=starts, adapter=adapter,
                                   temperature=temperature, top_p=top_p, seed=seed,
                                   deadline=deadline)

    def _answers(self, prompts: Sequence[str], n: int, *, max_tokens: int, stop: Sequence[str],
                 starts: list[str], adapter: str | None, temperature: float, top_p: float,
                 seed: int | None) -> list[list[str]]:
        """``n`` answers to each prompt, each opening with its start (``generate_batch`` and
        ``sample_batch``): one completions request, or one chat request per prompt."""
        if not prompts:
            return []
        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"the server at {self.base_url} serves no LoRA adapter {adapter!r}")
        model = adapter or self.model
        if self.chat_prompts:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(prompts))) as pool:
                return list(pool.map(
                    lambda ps: self._chat_answers(ps[0], ps[1], max_tokens, stop, model, n=n,
                                                  temperature=temperature, top_p=top_p, seed=seed),
                    zip(prompts, starts, strict=True)))
        texts_in = [join_start(p, s) for p, s in zip(prompts, starts, strict=True)]
        response = self._call(
            lambda: self.client.completions.create(
                model=model, prompt=texts_in, max_tokens=max_tokens, n=n, temperature=temperature,
                top_p=top_p, seed=seed, stop=list(stop) or None,
            )
        )
        out: list[list[str]] = [[] for _ in prompts]
        for choice in sorted(response.choices, key=lambda c: c.index):
            row = choice.index // n
            if 0 <= row < len(out):
                out[row].append((starts[row] + cut_at_stop(choice.text, stop)).strip())
        return out

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> Iterator[str]:
        """Server-sent completion chunks as they arrive; a broken stream is LLMUnavailable."""
        import openai

        chunks = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0.0,
                stop=list(stop) or None, stream=True,
            )
        )

        def pieces() -> Iterator[str]:
            try:
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].text:
                        yield chunk.choices[0].text
            except (openai.APIError, OSError) as exc:
                raise LLMUnavailable(
                    f"the vLLM server at {self.base_url} broke off a stream ({exc.__class__.__name__})"
                ) from None

        return stream_until_stop(pieces(), stop)

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        if not continuations:
            return []
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model,
                prompt=[prompt + c for c in continuations],
                max_tokens=1,
                temperature=0.0,
                echo=True,
                logprobs=0,
            )
        )
        choices = sorted(response.choices, key=lambda c: c.index)
        out = []
        for choice in choices:
            lp = choice.logprobs
            total, count = 0.0, 0
            # The last token is the generated one (max_tokens=1): not part of the continuation.
            for offset, value in zip(lp.text_offset[:-1], lp.token_logprobs[:-1], strict=True):
                if offset >= len(prompt) and value is not None:
                    total += value
                    count += 1
            out.append(ScoredContinuation(total, count))
        return out

    def next_token_logprobs(self, prompt: str | Sequence[int],
                            token_ids: Sequence[int]) -> list[float]:
        """The full-vocabulary log-probability of each of ``token_ids`` as the next token after
        ``prompt`` (text, or token ids sent as they are), in one request: one prompt, one
        decode step, vLLM's ``logprob_token_ids`` (vLLM 0.32+; an older server ignores the
        field, which this reports as unsupported rather than guessing)."""
        wanted = [int(t) for t in token_ids]
        if not wanted:
            return []
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=list(prompt) if not isinstance(prompt, str) else prompt,
                max_tokens=1, temperature=0.0, logprobs=1,
                extra_body={"logprob_token_ids": wanted, "return_tokens_as_token_ids": True},
            )
        )
        top = (response.choices[0].logprobs.top_logprobs or [None])[0] or {}
        found = {}
        for key, value in top.items():
            if key.startswith("token_id:"):
                found[int(key.removeprefix("token_id:"))] = float(value)
        missing = [t for t in wanted if t not in found]
        if missing:
            raise LLMUnavailable(
                f"the vLLM server at {self.base_url} returned no log-probability for "
                f"{len(missing)} of the {len(wanted)} requested tokens; it needs "
                "`logprob_token_ids` support (vLLM 0.32 or later)")
        return [found[t] for t in wanted]

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256,
                      adapter: str | None = None) -> object:
        """A JSON value that follows ``schema`` (vLLM's guided decoding), from a chat turn
        with ``prompt`` (after the system turn ``JSON_SYSTEM`` where the model takes chat
        prompts), with the LoRA ``adapter`` asked for by its served name; a reply that still
        does not parse is a ToolError."""
        import json

        from recagent.catalog.errors import ToolError

        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"the server at {self.base_url} serves no LoRA adapter {adapter!r}")
        system = [{"role": "system", "content": JSON_SYSTEM}] if self.chat_prompts else []
        messages = [*system, {"role": "user", "content": prompt}]
        response = self._call(
            lambda: self.client.chat.completions.create(
                model=adapter or self.model, messages=messages,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "answer", "schema": schema}},
                max_tokens=max_tokens, temperature=0.0,
            )
        )
        text = response.choices[0].message.content or ""
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolError(f"the LLM's JSON does not parse ({exc.msg}): {text[:80]!r}") from None

    def chat_model(self, *, temperature: float = 0.0, max_tokens: int = 512):
        """A LangChain chat model on this server (tool calls go through ``bind_tools``)."""
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            base_url=self.base_url, api_key=self.api_key, model=self.model,
            timeout=self.timeout, max_retries=self.max_retries, temperature=temperature,
            max_tokens=max_tokens,
        )
