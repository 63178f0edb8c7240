"""Causal language models run in-process with transformers on the CPU: the machinery the
embedded backends share (loading, greedy decoding with the KV cache, continuation scoring).

Candidate scoring runs the shared prompt once, keeps its KV cache, and scores every candidate
from a copy of it. Logits are computed only at the positions that predict candidate tokens,
in chunks, so the full-vocabulary logits never exist for every position at once.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from recagent.llm.base import LLMUnavailable, ScoredContinuation, cut_at_stop, stream_until_stop

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "CausalLM"]

_LOGIT_CHUNK = 64  # positions per chunk of full-vocabulary logits (64 x vocabulary floats)


DTYPES = ("auto", "float32", "bfloat16", "int8")


class CausalLM:
    """A causal LM from an HF checkpoint folder (``checkpoint``, defined by each backend).

    ``dtype``: ``bfloat16`` where the CPU has native bf16, else ``float32`` (``auto``); or
    ``int8``: the linear layers' weights quantised to int8 on load (torch dynamic quantisation,
    activations in fp32). Decoding reads every weight once per token, so int8 decodes about
    twice as fast as bf16 on the CPU (``docs/llm.md`` has the side-by-side figures)."""

    name: str

    def __init__(self, models_dir: Path, *, dtype: str = "auto", device: str = "cpu") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown LLM dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        if dtype == "int8" and device != "cpu":
            raise ValueError("int8 (dynamic quantisation) runs on the CPU only")
        self.models_dir = Path(models_dir)
        self.device = device
        self._dtype_name = dtype

    @property
    def checkpoint(self) -> Path:
        """The HF checkpoint folder to load (converted on first use by the subclass)."""
        raise NotImplementedError

    @cached_property
    def dtype(self) -> torch.dtype:
        import torch

        from recagent.retrieval.encoder import cpu_has_native_bf16

        if self._dtype_name == "auto":
            native = self.device.startswith("cuda") or cpu_has_native_bf16()
            return torch.bfloat16 if native else torch.float32
        return {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "int8": torch.float32}[self._dtype_name]

    @property
    def quantized(self) -> bool:
        return self._dtype_name == "int8"

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.checkpoint))

    @cached_property
    def model(self):
        from transformers import AutoModelForCausalLM

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(self.checkpoint), dtype=self.dtype)
        except OSError as exc:
            raise LLMUnavailable(f"cannot load {self.name} from {self.checkpoint}: {exc}") from None
        model = model.to(self.device).eval()
        if self.quantized:
            import warnings

            import torch

            # torch marks its eager dynamic quantisation deprecated (in favour of torchao, not
            # installed here); it still works and is tested.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantize_per_tensor", category=UserWarning)
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8)
        return model

    def _encode(self, text: str, *, bos: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos_id = self.tokenizer.bos_token_id
        return [bos_id, *ids] if bos and bos_id is not None else list(ids)

    def _prompt_ids(self, prompt: str) -> list[int]:
        """The token ids ``generate`` continues from (an instruct model wraps the prompt as a
        chat turn)."""
        return self._encode(prompt, bos=True)

    def generate(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> str:
        return "".join(self.stream(prompt, max_tokens=max_tokens, stop=stop)).strip()

    def stream(self, prompt: str, *, max_tokens: int = 96, stop: Sequence[str] = ()) -> Iterator[str]:
        return stream_until_stop(self._greedy(self._prompt_ids(prompt), max_tokens), stop)

    def generate_batch(self, prompts: Sequence[str], *, max_tokens: int = 96,
                       stop: Sequence[str] = ()) -> list[str]:
        """``generate`` for several prompts in one batched greedy decode.

        Decoding on the CPU is bound by reading the weights, which a batch reads once per
        step for all its rows, so five sentences cost little more than one. Prompts are
        padded on the left (the attention mask hides the padding); a row stops at its end
        token or at a stop string, and the batch when every row has.
        """
        if not prompts:
            return []
        import torch

        rows = [self._prompt_ids(p) for p in prompts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):] = torch.tensor(r)
            mask[b, width - len(r):] = 1
        eos = self._eos_ids
        generated: list[list[int]] = [[] for _ in rows]
        done = [False] * len(rows)
        with torch.inference_mode():
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=positions.to(self.device), use_cache=True, logits_to_keep=1)
            last = positions[:, -1]
            for _ in range(max_tokens):
                tokens = out.logits[:, -1].argmax(-1).tolist()
                for b, token in enumerate(tokens):
                    if done[b]:
                        continue
                    if token in eos:
                        done[b] = True
                        continue
                    generated[b].append(token)
                    text = self.tokenizer.decode(generated[b], skip_special_tokens=True)
                    if stop and cut_at_stop(text, stop) != text:
                        done[b] = True
                if all(done):
                    break
                step = torch.tensor([[pad if done[b] else t] for b, t in enumerate(tokens)])
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
                last = last + 1
                out = self.model(input_ids=step.to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=last[:, None].to(self.device), cache=out.cache,
                                 use_cache=True, logits_to_keep=1)
        texts = [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
        return [cut_at_stop(t, stop).strip() for t in texts]

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}

    def _greedy(self, prompt_ids: list[int], max_tokens: int) -> Iterator[str]:
        """Greedy decoding with the KV cache, one token at a time; yields the new text of
        each step (held back while the text ends inside a multi-byte character)."""
        import torch

        eos = self._eos_ids
        generated: list[int] = []
        emitted = ""
        with torch.inference_mode():
            ids = torch.tensor([prompt_ids], device=self.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            for _ in range(max_tokens):
                token = int(out.logits[0, -1].argmax())
                if token in eos:
                    break
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if text.startswith(emitted) and len(text) > len(emitted) and not text.endswith("\ufffd"):
                    yield text[len(emitted):]
                    emitted = text
                step = torch.tensor([[token]], device=self.device)
                out = self.model(input_ids=step, cache=out.cache,
                                 use_cache=True, logits_to_keep=1)

    def score(
        self, prompt: str, continuations: Sequence[str], *, batch_size: int = 32
    ) -> list[ScoredContinuation]:
        """Sum of token log-probabilities of each continuation after ``prompt``.

        The prompt runs once; each batch of continuations runs on a copy of its KV cache.
        """
        import torch

        if not continuations:
            return []
        prompt_ids = self._encode(prompt, bos=True)
        cont_ids = [self._encode(c, bos=False) or [self.tokenizer.eos_token_id] for c in continuations]
        with torch.inference_mode():
            prompt_tensor = torch.tensor([prompt_ids], device=self.device)
            out = self.model(input_ids=prompt_tensor, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores: list[ScoredContinuation] = []
            for start in range(0, len(cont_ids), batch_size):
                batch = cont_ids[start : start + batch_size]
                scores.extend(self._score_batch(out.cache, len(prompt_ids), first, batch))
        return scores

    def _score_batch(self, cache, prompt_len: int, first, batch: list[list[int]]):
        import torch

        width = max(len(c) for c in batch)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(batch), prompt_len + width), dtype=torch.long, device=self.device)
        mask[:, :prompt_len] = 1
        for b, c in enumerate(batch):
            ids[b, : len(c)] = torch.tensor(c)
            mask[b, prompt_len : prompt_len + len(c)] = 1
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(batch))
        positions = torch.arange(prompt_len, prompt_len + width, device=self.device).expand(len(batch), -1)
        hidden = self.model.model(
            input_ids=ids, attention_mask=mask, position_ids=positions,
            cache=past, use_cache=True,
        ).last_hidden_state
        # Token t of a continuation is predicted by position t-1 (t >= 1); token 0 by the prompt.
        rows, cols, targets = [], [], []
        for b, c in enumerate(batch):
            for t in range(1, len(c)):
                rows.append(b)
                cols.append(t - 1)
                targets.append(c[t])
        totals = torch.tensor([float(first[c[0]]) for c in batch], dtype=torch.float64)
        if targets:
            picked = hidden[torch.tensor(rows), torch.tensor(cols)]
            target_t = torch.tensor(targets, device=self.device)
            logprobs = torch.cat([
                self._token_logprobs(picked[i : i + _LOGIT_CHUNK], target_t[i : i + _LOGIT_CHUNK])
                for i in range(0, len(targets), _LOGIT_CHUNK)
            ])
            totals.index_add_(0, torch.tensor(rows), logprobs.double().cpu())
        return [ScoredContinuation(float(t), len(c)) for t, c in zip(totals, batch, strict=True)]

    def _token_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch

        logits = self.model.lm_head(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
