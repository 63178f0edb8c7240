"""A scripted LLM for agent-loop tests (the real ones are exercised in test_llm_*.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from recagent.agent.llm import LLMUnavailable, ScoredContinuation


class ScriptedLLM:
    """Scores continuations with ``scorer(prompt, text)``; ``generate`` returns ``reply(prompt)``."""

    can_call_tools = False
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

    def _check(self) -> None:
        if self.down:
            raise LLMUnavailable("scripted outage")

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        self._check()
        self.prompts.append(prompt)
        return self.reply(prompt)

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()):
        """``generate``'s reply in word-sized pieces, as a streaming backend yields them."""
        text = self.generate(prompt, max_tokens=max_tokens, stop=stop)
        yield from re.findall(r"\s*\S+", text)

    def score(self, prompt: str, continuations: Sequence[str]) -> list[ScoredContinuation]:
        self._check()
        self.prompts.append(prompt)
        return [ScoredContinuation(self.scorer(prompt, c), 1) for c in continuations]
