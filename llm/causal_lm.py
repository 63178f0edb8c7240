"""Causal language models run in-process with transformers on the CPU: the machinery the
embedded backends share (loading, greedy decoding with the KV cache, continuation scoring).

Candidate scoring runs the shared prompt once, keeps its KV cache, and scores every candidate
from a copy of it. Logits are computed only at the positions that predict candidate tokens,
in chunks, so the full-vocabulary logits never exist for every position at once.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from recagent.llm.base import (
    LLMUnavailable,
    ScoredContinuation,
    answer_starts,
    cut_at_stop,
    draw_in_two_batches,
    join_start,
    stream_until_stop,
)

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "CausalLM", "keep_prefix"]

_LOGIT_CHUNK = 64  # positions per chunk of full-vocabulary logits (64 x vocabulary floats)
_MIN_SHARED_PREFIX = 16  # tokens a batch's prompts must share to compute them once


DTYPES = ("auto", "float32", "bfloat16", "int8")


class CausalLM:
    """A causal LM from an HF checkpoint folder (``checkpoint``, defined by each backend).

    ``dtype``: ``bfloat16`` where the CPU has native bf16, else ``float32`` (``auto``); or
    ``int8``: the linear layers' weights quantised to int8 on load (torch dynamic quantisation,
    activations in fp32). Decoding reads every weight once per token, so int8 decodes about
    twice as fast as bf16 on the CPU (``docs/llm.md`` has the side-by-side figures)."""

    name: str
    stops_at_deadline = True  # it decodes step by step, and checks the time at each

    def __init__(self, models_dir: Path, *, dtype: str = "auto", device: str = "cpu",
                 adapters: Mapping[str, Path] | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"unknown LLM dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        if dtype == "int8" and device != "cpu":
            raise ValueError("int8 (dynamic quantisation) runs on the CPU only")
        if dtype == "int8" and adapters:
            raise ValueError("LoRA adapters need the bf16 or fp32 model, not int8")
        self.models_dir = Path(models_dir)
        self.device = device
        self._dtype_name = dtype
        self._adapter_dirs = {name: Path(path) for name, path in (adapters or {}).items()}
        self._adapted: dict[str, object] = {}  # name -> the model's copy with it merged (loaded with it)

    @property
    def adapters(self) -> frozenset[str]:
        """The names of the LoRA adapters loaded beside the model (off unless a call names one)."""
        return frozenset(self._adapter_dirs)

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
            with _outside_inference_mode():
                model = AutoModelForCausalLM.from_pretrained(str(self.checkpoint), dtype=self.dtype)
        except OSError as exc:
            raise LLMUnavailable(f"cannot load {self.name} from {self.checkpoint}: {exc}") from None
        model = _contiguous_head_input(model.to(self.device).eval())
        if self._adapter_dirs:
            self._adapted = {name: self._merged_copy(path) for name, path in self._adapter_dirs.items()}
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
                       stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                       adapter: str | None = None) -> list[str]:
        """``generate`` for several prompts in one batched greedy decode, with the LoRA
        ``adapter`` of that name switched on (one of :attr:`adapters`) or the model alone.

        Decoding on the CPU is bound by reading the weights, which a batch reads once per
        step for all its rows, so five sentences cost little more than one. The prompts'
        common beginning (a template's instructions and examples) is computed once, and kept
        for the next call (:meth:`_shared_prefix`); the rest of each prompt is padded on the
        left of its own part (the attention mask hides the padding). A row stops at its end
        token or at a stop string, and the batch when every row has.
        """
        if not prompts:
            return []
        answers = self._generate_batch(prompts, max_tokens=max_tokens, stop=stop,
                                       starts=answer_starts(prompts, starts), adapter=adapter)
        return [a[0] for a in answers]

    def _model_for(self, adapter: str | None):
        """The model to decode with: the model alone, or its copy with the LoRA ``adapter``
        merged into the weights (a decode step then costs what the model's does)."""
        if adapter is None:
            return self.model
        if adapter not in self._adapter_dirs:
            raise ValueError(f"no LoRA adapter {adapter!r} is loaded (loaded: {sorted(self._adapter_dirs) or 'none'})")
        self.model  # noqa: B018 (loads the model and its adapters)
        return self._adapted[adapter]

    def _merged_copy(self, path: Path):
        """A second copy of the checkpoint with the adapter in ``path`` merged into it. An
        adapter switched on per call (peft's unmerged layers) made a turn's explanations
        1.9x slower on 2 cores; merging into the one model and back is not exact in bf16."""
        from transformers import AutoModelForCausalLM

        try:
            from peft import PeftModel
        except ImportError:
            raise LLMUnavailable("LoRA adapters need peft (pip install peft)") from None
        if not (Path(path) / "adapter_config.json").is_file():
            raise LLMUnavailable(f"LoRA adapter: no adapter_config.json in {path}")
        with _outside_inference_mode():
            base = AutoModelForCausalLM.from_pretrained(str(self.checkpoint), dtype=self.dtype)
            merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
        return _contiguous_head_input(merged.to(self.device).eval())

    def _generate_batch(self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str],
                        starts: list[str], adapter: str | None, greedy: bool = True,
                        temperature: float = 0.8, top_p: float = 0.95, seed: int = 0,
                        copies: int = 1, until: Callable[[int, str], bool] | None = None,
                        deadline: float | None = None, redraws: int = 0) -> list[list[str]]:
        """The batched decode: ``copies`` answers to each prompt, ``greedy`` or sampled
        (``temperature``, nucleus ``top_p``), in the order they ended (a list per prompt).

        Each prompt is computed once, and its KV cache copied for its ``copies`` rows: a
        redraw of three sentences for one item had run the item's part of the prompt (its
        title and the history titles, most of an Amazon prompt) three times. With ``until``,
        a prompt's rows stop as soon as one of its answers satisfies ``until(i, answer)``
        (its rows still decoding are dropped, so fewer than ``copies`` answers come back).

        ``redraws``: a row whose answer fails ``until`` starts again at once, in its place in
        the batch, sampled, up to that many times per prompt: its prompt's cache is kept, the
        old answer's positions are masked out, and its first token is drawn from the prompt's
        own next-token logits, so a redraw needs neither a prefill nor a batch of its own,
        and runs while the other rows still decode. A row whose prompt is done draws for
        another with no answer that passed yet, its cache given that prompt's positions.

        By ``deadline`` (``time.monotonic()``) decoding stops: a step that would end after it
        (as long as the last one) is not taken, and the answers not yet ended end where they
        are, as at ``max_tokens`` (cut off: a caller may keep a leading part)."""
        import time

        import torch

        generator = torch.Generator().manual_seed(seed) if not greedy or redraws else None
        model = self._model_for(adapter)

        rows = [self._answer_ids(p, s) for p, s in zip(prompts, starts, strict=True)]
        k = len(rows)
        # One greedy prompt runs whole, as ``generate`` runs it (int8's activation scales depend
        # on how the prompt is cut, so a split prompt would not decode exactly the same); one
        # sampled prompt reuses the kept prefix (a redraw's template, from the turn's batch).
        shared = (_common_prefix_length(rows) if k > 1
                  else len(rows[0]) - 1 if copies > 1 else 0)
        cache = self._shared_prefix(rows[0][:shared], adapter) if shared else None
        if cache is not None:
            cache.batch_repeat_interleave(k)
        else:
            shared = 0
        tails = [r[shared:] for r in rows]
        width = max(len(t) for t in tails)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        ids = torch.full((k, width), pad, dtype=torch.long)
        mask = torch.zeros((k, shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for b, t in enumerate(tails):
            ids[b, width - len(t):] = torch.tensor(t)
            mask[b, shared + width - len(t):] = 1
        eos = self._eos_ids
        n = k * copies
        prompt_of = [b // copies for b in range(n)]  # the prompt each row draws an answer to
        holds = list(prompt_of)  # the prompt whose positions each row's cache holds
        generated: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        sampled = [not greedy] * n  # the rows drawing a sampled answer
        left = [redraws] * k  # how many more answers each prompt may draw
        satisfied = [False] * k
        # Each prompt's answers as they ended, flagged when greedy (those come first).
        answers: list[list[tuple[bool, str]]] = [[] for _ in rows]
        past_deadline = False

        with torch.inference_mode():
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
            out = model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                        position_ids=positions.to(self.device), cache=cache,
                        use_cache=True, logits_to_keep=1)
            logits, last = out.logits[:, -1], positions[:, -1]
            if copies > 1:
                out.cache.batch_repeat_interleave(copies)
                logits = logits.repeat_interleave(copies, dim=0)
                mask = mask.repeat_interleave(copies, dim=0)
                last = last.repeat_interleave(copies, dim=0)
            # Where a redraw starts: its prompt's next-token logits and last position.
            first_logits, prompt_last = logits.clone(), last.clone()

            def take(b: int, token: int) -> None:
                """Row ``b``'s next token: its answer ends at an end token, a stop string or
                ``max_tokens``."""
                if token in eos:
                    finish(b)
                    return
                generated[b].append(token)
                if len(generated[b]) >= max_tokens:
                    finish(b)
                elif stop:
                    text = self.tokenizer.decode(generated[b], skip_special_tokens=True)
                    if cut_at_stop(text, stop) != text:
                        finish(b)

            def finish(b: int) -> None:
                done[b] = True
                i = prompt_of[b]
                answer = self._answer_text(starts[i], generated[b], stop)
                answers[i].append((not sampled[b], answer))
                if until is not None and until(i, answer):
                    satisfied[i] = True
                    for other in range(n):  # a greedy answer still decoding goes on
                        if prompt_of[other] == i and sampled[other]:
                            done[other] = True

            def redraw(b: int, i: int) -> None:
                """Row ``b`` (ended) starts a sampled answer to prompt ``i``."""
                left[i] -= 1
                if holds[b] != i:  # copy the prompt's positions from a row that holds them
                    src = holds.index(i)
                    out.cache.batch_select_indices(
                        torch.tensor([src if r == b else r for r in range(n)], device=self.device))
                    mask[b] = mask[src]
                    first_logits[b], prompt_last[b], holds[b] = first_logits[src], prompt_last[src], i
                prompt_of[b] = i
                done[b], sampled[b], generated[b] = False, True, []
                mask[b, shared + width:] = 0  # the positions of the row's earlier answer
                last[b] = prompt_last[b]
                take(b, _sample(first_logits[b:b + 1], temperature, top_p, generator)[0])

            def redraw_in_ended_rows() -> None:
                """Put each ended row to drawing again for a prompt with no answer that passed:
                its own prompt first; else one whose answers all failed, then one whose greedy
                answer is still decoding (it may yet fail); the fewest rows drawing first."""
                for b in range(n):
                    while done[b]:
                        wanting = [i for i in range(k) if not satisfied[i] and left[i]]
                        if not wanting:
                            return
                        i = prompt_of[b] if prompt_of[b] in wanting and answers[prompt_of[b]] else min(
                            wanting, key=lambda j: (not answers[j], sum(
                                not done[r] and prompt_of[r] == j for r in range(n))))
                        redraw(b, i)

            step_s = 0.0
            while True:
                greedy_tokens = logits.argmax(-1).tolist()
                drawn = [b for b in range(n) if sampled[b] and not done[b]]
                tokens = dict(zip(drawn, _sample(logits[drawn], temperature, top_p, generator)
                                  )) if drawn else {}
                for b in range(n):
                    if not done[b]:
                        take(b, tokens.get(b, greedy_tokens[b]))
                if deadline is not None and time.monotonic() + step_s >= deadline:
                    past_deadline = True
                    for b in range(n):
                        if not done[b]:
                            finish(b)  # cut off where it is, as at max_tokens
                if until is not None and redraws and not past_deadline:
                    redraw_in_ended_rows()
                if all(done):
                    break
                stepped = time.monotonic()
                step = torch.tensor([[pad if done[b] else generated[b][-1]] for b in range(n)])
                mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
                last = last + 1
                out = model(input_ids=step.to(self.device), attention_mask=mask.to(self.device),
                            position_ids=last[:, None].to(self.device), cache=out.cache,
                            use_cache=True, logits_to_keep=1)
                logits = out.logits[:, -1]
                step_s = time.monotonic() - stepped
        return [[a for _, a in sorted(drawn, key=lambda d: not d[0])] for drawn in answers]

    def _answer_text(self, start: str, generated: list[int], stop: Sequence[str]) -> str:
        """An answer as returned: its start, then the decoded tokens up to the first stop string."""
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        return (start + cut_at_stop(text, stop)).strip()

    def sample_batch(self, prompts: Sequence[str], n: int, *, max_tokens: int = 48,
                     stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                     adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                     seed: int = 0, until: Callable[[int, str], bool] | None = None,
                     deadline: float | None = None) -> list[list[str]]:
        """``n`` answers to each prompt drawn by sampling (temperature, nucleus ``top_p``), each
        opening with its start as ``generate_batch``'s do: one batch of ``n`` rows per prompt,
        the prompt computed once for them. A redraw in a second batch (Gemma 3's) stops an
        item's draws once one passes (``until``); distillation keeps the draws that pass
        (:mod:`recagent.evals.explain_distill`)."""
        if temperature <= 0:
            raise ValueError("sampling needs a temperature above 0")
        if n < 1 or not prompts:
            return [[] for _ in prompts]
        return self._generate_batch(prompts, max_tokens=max_tokens, stop=stop,
                                    starts=answer_starts(prompts, starts), adapter=adapter,
                                    greedy=False, temperature=temperature, top_p=top_p,
                                    seed=seed, copies=n, until=until, deadline=deadline)

    def draw_batch(self, prompts: Sequence[str], redraws: int, *,
                   until: Callable[[int, str], bool], max_tokens: int = 48,
                   stop: Sequence[str] = (), starts: Sequence[str] | None = None,
                   adapter: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                   seed: int = 0, deadline: float | None = None) -> list[list[str]]:
        """Each prompt's greedy answer, then, while its last answer fails ``until(i, answer)``,
        up to ``redraws`` sampled ones, each drawn in a row of the same batch as soon as one
        is free (:meth:`_generate_batch`); at ``deadline`` every answer ends where it is. A
        model with sliding-window layers (Gemma 3) drops the positions a redraw would need,
        so there the redraws come in a second batch."""
        if not prompts:
            return []
        starts = answer_starts(prompts, starts)
        if self._sliding:
            return draw_in_two_batches(self, prompts, redraws, until=until, max_tokens=max_tokens,
                                       stop=stop, starts=starts, adapter=adapter,
                                       temperature=temperature, top_p=top_p, seed=seed,
                                       deadline=deadline)
        return self._generate_batch(prompts, max_tokens=max_tokens, stop=stop, starts=starts,
                                    adapter=adapter, temperature=temperature, top_p=top_p,
                                    seed=seed, until=until, deadline=deadline, redraws=redraws)

    @cached_property
    def _sliding(self) -> bool:
        """Whether some layer attends within a sliding window (its cache drops old positions)."""
        return "sliding_attention" in (getattr(self.model.config, "layer_types", None) or ())

    def _answer_ids(self, prompt: str, start: str) -> list[int]:
        """The token ids a completion of ``prompt`` that opens with ``start`` continues from."""
        return self._prompt_ids(join_start(prompt, start))

    def _shared_prefix(self, ids: list[int], adapter: str | None = None):
        """A fresh copy of the KV cache of ``ids`` (a batch's common beginning), or None when
        it is too short to be worth a pass of its own.

        The cache of the last prefix is kept, so the next batch (the next turn's explanations,
        same template) computes only what differs: the longest beginning the two prefixes
        share is reused, the rest is computed.
        """
        import torch

        if len(ids) < _MIN_SHARED_PREFIX:
            return None
        # An adapter changes every layer's keys and values: a prefix is kept for one adapter.
        kept = self._kept_prefix if self._kept_adapter == adapter else None
        reuse = 0
        if kept is not None:
            limit = min(len(kept[0]), len(ids))
            while reuse < limit and kept[0][reuse] == ids[reuse]:
                reuse += 1
        with torch.inference_mode():
            if reuse == len(ids) and len(kept[0]) == len(ids):
                cache = kept[1]
            elif reuse >= _MIN_SHARED_PREFIX and _can_crop(kept[1]):
                cache = copy.deepcopy(kept[1])
                keep_prefix(cache, reuse)
                if reuse < len(ids):
                    cache = self._extend(cache, ids[reuse:], reuse, adapter)
            else:
                cache = self._extend(None, ids, 0, adapter)
        self._kept_prefix = (list(ids), cache)
        self._kept_adapter = adapter
        return copy.deepcopy(cache)

    def _extend(self, cache, ids: list[int], start: int, adapter: str | None = None):
        """``cache`` (None: empty) after running ``ids`` at positions ``start``, ``start+1``..."""
        import torch

        positions = torch.arange(start, start + len(ids), device=self.device)[None]
        out = self._model_for(adapter)(input_ids=torch.tensor([ids], device=self.device), cache=cache,
                         position_ids=positions, use_cache=True, logits_to_keep=1)
        return out.cache

    _kept_prefix: tuple[list[int], object] | None = None
    _kept_adapter: str | None = None

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


def _sample(logits, temperature: float, top_p: float, generator) -> list[int]:
    """A token per row from ``logits`` / ``temperature``, within the nucleus ``top_p``."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True)
    outside = ordered.cumsum(-1) - ordered > top_p  # keep the smallest set reaching top_p
    ordered[outside] = 0.0
    picked = torch.multinomial(ordered, 1, generator=generator)
    return order.gather(-1, picked)[:, 0].tolist()


def _contiguous_head_input(model):
    """``model`` with the input of its output head (``lm_head``) made contiguous.

    A prompt's forward with ``logits_to_keep=1`` hands the head a strided slice (the last
    position of each row). When the head's weight does not require grad (a LoRA-merged copy,
    a model frozen by peft), torch's matmul then multiplies a batch of the slice by the weight
    expanded per row, copying the 151,936 x 896 weight once per row: 5.3 s of a 7.3 s prefill
    of 5 x 160 tokens, against 2.0 s when the slice is copied first (a few kB). Measured on 2
    cores; the decode steps' one-position input is contiguous already. A fresh copy, not
    ``.contiguous()`` (nor a plain ``clone()``, which keeps strides): the last position of
    one row counts as contiguous (its other sizes are 1) but keeps the row's strides, and
    took the same slow path (0.47 s against 0.015 s for the head alone; a constrained JSON
    decode with the request-reading adapter took 0.64 s a 3-token step, against 0.10 s)."""
    import torch

    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(
            lambda _module, args: (args[0].clone(memory_format=torch.contiguous_format), *args[1:]))
    return model


@contextmanager
def _outside_inference_mode() -> Iterator[None]:
    import torch

    with torch.inference_mode(False):
        yield


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all ``rows`` share, leaving each at least one of its own (the
    first pass must predict from each row's last token)."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def keep_prefix(cache, length: int) -> None:
    """Cut ``cache`` back to its first ``length`` positions (transformers' ``crop`` takes the
    number of positions to remove, as a negative count)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _can_crop(cache) -> bool:
    """Whether ``cache`` can be cut back to a shorter prefix (a sliding-window layer, as in
    Gemma 3, cannot be once it has dropped positions; full-attention caches always can)."""
    return all(not getattr(layer, "is_sliding", False) for layer in getattr(cache, "layers", ()))
