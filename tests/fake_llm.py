"""A scripted LLM for agent-loop tests (the real ones are exercised in test_llm_*.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from recagent.llm.base import (
    LLMUnavailable,
    LLMUnsupported,
    ScoredContinuation,
    draw_in_two_batches,
)


class ScriptedLLM:
    """Scores continuations with ``scorer(prompt, text)``; ``generate`` returns ``reply(prompt)``."""

    serves_chat = False
    can_call_tools = False
    structured_output = False
    stops_at_deadline = False
    adapters: frozenset[str] = frozenset()
    name = "scripted"

    def __init__(
        self,
        scorer: Callable[[str, str], float] = lambda p, t: 0.0,
        reply: Callable[[str], str] = lambda p: "",
        *,
        down: bool = False,
    ) -> None:
        self.scorer = scorer
        self.reply = reply
        self.down = down
        self.prompts: list[str] = []
        self.batches: list[int] = []  # the size of each generate_batch call

    def _check(self) -> None:
        if self.down:
            raise LLMUnavailable("scripted outage")

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        self._check()
        self.prompts.append(prompt)
        return self.reply(prompt)

    def generate_batch(self, prompts: Sequence[str], *, max_tokens: int = 96,
                       stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                       adapter: str | None = None) -> list[str]:
        """``reply`` for each prompt; a reply that does not open with its start is continued
        from it, as a real backend's would be."""
        self._check()
        self.batches.append(len(prompts))
        return self._replies(prompts, starts, max_tokens, stop)

    def _replies(self, prompts, starts, max_tokens, stop) -> list[str]:
        starts = list(starts) if starts is not None else [""] * len(prompts)
        texts = [self.generate(p, max_tokens=max_tokens, stop=stop) for p in prompts]
        return [t if t.startswith(s) else f"{s} {t}".strip() for s, t in zip(starts, texts, strict=True)]

    def sample_batch(self, prompts: Sequence[str], n: int, *, max_tokens: int = 48,
                     stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                     adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                     seed: int = 0, until=None, deadline=None) -> list[list[str]]:
        """A script has one answer per prompt: its ``n`` draws are that answer ``n`` times."""
        self._check()
        return [[reply] * n for reply in self._replies(prompts, starts, max_tokens, stop)]

    def draw_batch(self, prompts: Sequence[str], redraws: int, **kwargs) -> list[list[str]]:
        """As a server draws: a greedy batch, then a sampled one for the answers that failed."""
        return draw_in_two_batches(self, prompts, redraws, **kwargs)

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()):
        """``generate``'s reply in word-sized pieces, as a streaming backend yields them."""
        text = self.generate(prompt, max_tokens=max_tokens, stop=stop)
        yield from re.findall(r"\s*\S+", text)

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        self._check()
        self.prompts.append(prompt)
        return [ScoredContinuation(self.scorer(prompt, c), 1) for c in continuations]

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256,
                      adapter: str | None = None) -> object:
        raise LLMUnsupported("the scripted LLM has no constrained JSON decoding")

    def chat_model(self, *, temperature: float = 0.0, max_tokens: int = 512) -> object:
        raise LLMUnsupported("the scripted LLM cannot call tools")


def scripted_chat_model(*turns):
    """A LangChain chat model that answers each call with the next scripted turn.

    A turn is a list of (tool name, arguments) calls, or a callable that gets the messages so
    far and returns such a list (to use ids from earlier tool results). It stands in for the
    tool-calling LLM in the agent loop's logic tests; the real loop runs against vLLM.
    """
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from pydantic import Field

    class ScriptedChat(GenericFakeChatModel):
        seen: list = Field(default_factory=list)  # the messages of each call
        bound: list = Field(default_factory=list)  # the tools bound, as LangChain passed them

        def bind_tools(self, tools, **kwargs):
            self.bound = list(tools)
            return self

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            from langchain_core.outputs import ChatGeneration, ChatResult

            self.seen.append(list(messages))
            turn = next(script)
            calls = turn(messages) if callable(turn) else turn
            message = AIMessage(content="", tool_calls=[
                {"name": name, "args": args, "id": f"call-{len(self.seen)}-{n}", "type": "tool_call"}
                for n, (name, args) in enumerate(calls)
            ])
            return ChatResult(generations=[ChatGeneration(message=message)])

    script = iter(turns)
    return ScriptedChat(messages=iter([]))


def names_a_purchase(prompt: str) -> str:
    """A reply that passes the explanation check: it names the last history item the prompt
    quotes (the product's own "They bought" line comes after the template's examples)."""
    bought = re.findall(r'They bought: "([^"]+)"', prompt)
    return f"goes well with your {bought[-1]}." if bought else "is a fine pick."
