"""The LLM backend the settings name, built on first use (heavy imports inside)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recagent.agent.constraints import READER
from recagent.agent.explanations import EXPLAINER
from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.llm.answer_adapter import ADAPTER_DIR, read_adapter_meta
from recagent.llm.base import BACKENDS, LLM, LLMUnavailable
from recagent.llm.instruct_model import INSTRUCT_CHECKPOINT

__all__ = ["READER_DIR", "explainer_adapters", "make_llm", "reader_adapters"]

# The request-reading adapter's folder under ``<home>/models`` (one for every catalog).
READER_DIR = "request-reader"


def explainer_adapters(settings: Settings, folder: Path) -> dict[str, Path]:
    """The explanation adapter saved in ``folder`` by ``recagent train-explainer``, where
    validation chose it (``"use": true`` in its ``adapter.json``), the settings do not turn it
    off (``RECAGENT_EXPLAINER=0``) and the LLM is the instruct model it was trained on, in bf16
    or fp32; else none."""
    chosen = _chosen(settings, folder, on=settings.explainer, backends=("instruct", "vllm"))
    return {EXPLAINER: folder / ADAPTER_DIR} if chosen else {}


def reader_adapters(settings: Settings) -> dict[str, Path]:
    """The request-reading adapter saved by ``recagent train-reader``, where validation chose
    it, the settings do not turn it off (``RECAGENT_READER=0``) and the LLM is the embedded
    instruct model it was trained on, in bf16 or fp32; else none. (A vLLM server would have to
    serve it under the name ``reader`` and read the prompt's head without it, as training
    did: not done, so vLLM reads with the model alone.)"""
    folder = settings.home / "models" / READER_DIR
    chosen = _chosen(settings, folder, on=settings.reader, backends=("instruct",))
    return {READER: folder / ADAPTER_DIR} if chosen else {}


def _chosen(settings: Settings, folder: Path, *, on: bool, backends: tuple[str, ...]) -> bool:
    """Whether the adapter saved in ``folder`` is to be loaded: validation chose it, its
    setting is ``on``, and the LLM is one of ``backends`` with the instruct model it was
    trained on, in bf16 or fp32."""
    meta = read_adapter_meta(folder)
    return on and settings.llm in backends and settings.llm_dtype != "int8" \
        and bool(meta.get("use")) and meta.get("base") == INSTRUCT_CHECKPOINT


def make_llm(settings: Settings, *, adapters: Mapping[str, Path] | None = None) -> LLM | None:
    """The LLM backend the settings name, or None for ``llm="none"`` (no LLM at all), with
    the LoRA ``adapters`` (name -> folder; a vLLM server must serve them under those names)."""
    if settings.llm == "embedded":
        from recagent.llm.embedded import EmbeddedLLM

        return EmbeddedLLM(settings.home / "models", dtype=settings.llm_dtype)
    if settings.llm == "instruct":
        from recagent.llm.instruct import InstructLLM

        return InstructLLM(settings.home / "models", dtype=settings.llm_dtype, adapters=adapters)
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
            adapters=tuple(adapters or ()),
        )
    if settings.llm == "none":
        return None
    raise RecAgentError(f"unknown LLM backend {settings.llm!r}; choose from {', '.join(BACKENDS)}")
