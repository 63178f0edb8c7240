"""The LLM backend the settings name, built on first use (heavy imports inside)."""

from __future__ import annotations

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.llm.base import BACKENDS, LLM, LLMUnavailable

__all__ = ["make_llm"]


def make_llm(settings: Settings) -> LLM | None:
    """The LLM backend the settings name, or None for ``llm="none"`` (no LLM at all)."""
    if settings.llm == "embedded":
        from recagent.llm.embedded import EmbeddedLLM

        return EmbeddedLLM(settings.home / "models", dtype=settings.llm_dtype)
    if settings.llm == "instruct":
        from recagent.llm.instruct import InstructLLM

        return InstructLLM(settings.home / "models", dtype=settings.llm_dtype)
    if settings.llm == "vllm":
        from recagent.llm.vllm_client import VLLMClient

        if not settings.llm_url:
            raise LLMUnavailable(
                "--llm vllm needs a server: pass --llm-url http://host:port/v1 "
                "(or set RECAGENT_LLM_URL); `recagent llm serve` starts one"
            )
        return VLLMClient(
            settings.llm_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            timeout=settings.llm_timeout,
        )
    if settings.llm == "none":
        return None
    raise RecAgentError(f"unknown LLM backend {settings.llm!r}; choose from {', '.join(BACKENDS)}")
