"""The tuned LLM ranker: one prompt per user, one forward pass, the logits of the letters.

The prompt (``prompts/rank_candidates.yaml``) is the user's history (the ``history_text``
template within a token budget) followed by the retriever's top-N candidates labelled
A, B, C, ... in the retriever's order; the candidate's score is the next-token logit of its
letter (" A", " B", ...), a *verbalizer* as in LlamaRec. Only the N letter rows of the output
embedding are multiplied, so the 262,144-way vocabulary logits are never computed.

A LoRA adapter (peft) on the last ``lora_layers`` decoder layers is what
:mod:`recagent.llm.ranker_train` trains; :meth:`LetterRanker.load` puts it back on its base
checkpoint. :class:`ServedRanker` asks a vLLM server that serves the adapter
(``--enable-lora --lora-modules NAME=DIR``) for the same letter log-probabilities: one
prompt, one decode step, the N letter ids' log-probabilities in one completions request.

Re-ranking only reorders the candidates it is given. :func:`blend_orders` fuses the ranker's
order with the incoming (retriever's) order by weighted reciprocal rank; the weight is
chosen on validation at training time and stored in ``ranker.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Dataset, Interaction
from recagent.llm.base import LLM, LLMUnavailable
from recagent.llm.vllm_client import VLLMClient
from recagent.prompts import render
from recagent.retrieval.text import history_text

if TYPE_CHECKING:
    import torch

__all__ = ["LETTERS", "RANKER_FILE", "CandidateRanker", "LetterRanker", "RankerConfig", "ServedRanker",
           "blend_orders", "rank_prompt"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RANKER_FILE = "ranker.json"
ADAPTER_DIR = "adapter"
_RRF_K = 60.0


@dataclass(frozen=True)
class RankerConfig:
    """How prompts are built and which adapter is trained (saved with the adapter)."""

    top_n: int = 20  # candidates per prompt (letters A..)
    history_tokens: int = 96  # token budget of the history text
    title_chars: int = 80  # each candidate title cut to this many characters
    noun: str = "items"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_layers: int = 6  # adapters on the last N decoder layers (0: all layers)
    blend: float = 1.0  # weight of the ranker's order against the retriever's (validation)

    def __post_init__(self) -> None:
        if not 1 <= self.top_n <= len(LETTERS):
            raise RecAgentError(f"the ranker labels at most {len(LETTERS)} candidates, not {self.top_n}")
        if not 0.0 <= self.blend <= 1.0:
            raise RecAgentError(f"blend must be in [0, 1], not {self.blend}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _one_line(title: str, limit: int) -> str:
    text = " ".join(str(title).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + "..."


def rank_prompt(
    dataset: Dataset, history: Sequence[Interaction], titles: Sequence[str], *,
    count_tokens, config: RankerConfig,
) -> str:
    """The verbalizer prompt for ``history`` and the candidate ``titles`` (in order)."""
    if len(titles) > config.top_n:
        raise RecAgentError(f"{len(titles)} candidates, but this ranker reads at most {config.top_n}")
    text = history_text(dataset, history, count_tokens=count_tokens, budget=config.history_tokens)
    return render("rank_candidates", history_text=text, noun=config.noun,
                  titles=[_one_line(t, config.title_chars) for t in titles])


def blend_orders(scores: Sequence[float], weight: float) -> np.ndarray:
    """Scores whose order fuses the ranker's order (``weight``) with the incoming order
    (``1 - weight``): sum of w / (60 + rank). Weight 1 is the ranker alone, 0 the incoming
    order; ties keep the incoming order."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    ranker_rank = np.empty(n)
    ranker_rank[np.argsort(-scores, kind="stable")] = np.arange(1, n + 1)
    incoming_rank = np.arange(1, n + 1)
    return weight / (_RRF_K + ranker_rank) + (1.0 - weight) / (_RRF_K + incoming_rank)


class CandidateRanker:
    """What both rankers share: the prompt, and the blended scores of a candidate list."""

    name: str
    tokenizer: Any
    config: RankerConfig

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, dataset: Dataset, history: Sequence[Interaction], titles: Sequence[str]) -> str:
        return rank_prompt(dataset, history, titles, count_tokens=self.count_tokens, config=self.config)

    def encode(self, prompt: str) -> list[int]:
        """The prompt's token ids as the model reads them: BOS, then the text."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return [self.tokenizer.bos_token_id, *ids]

    def log_probs(self, dataset: Dataset, history: Sequence[Interaction],
                  titles: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def rerank_scores(self, dataset: Dataset, history: Sequence[Interaction],
                      titles: Sequence[str]) -> np.ndarray:
        """One score per title (higher first): the letters' log-probabilities fused with the
        incoming order by the blend weight chosen on validation."""
        if not titles:
            return np.zeros(0)
        return blend_orders(self.log_probs(dataset, history, titles), self.config.blend)


class LetterRanker(CandidateRanker):
    """A causal LM (with or without a LoRA adapter) scoring candidates by their letters."""

    def __init__(self, model, tokenizer, config: RankerConfig, *, base: Path, device: str = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.base = Path(base)
        self.device = device
        self.letter_ids = _letter_token_ids(tokenizer, config.top_n)
        self.name = f"embedded:{self.base.name}{'+lora' if hasattr(model, 'peft_config') else ''} ({device})"

    @classmethod
    def from_base(cls, checkpoint: Path, config: RankerConfig, *, device: str = "cpu",
                  dtype: str = "auto", adapter: Path | None = None,
                  trainable: bool = False) -> LetterRanker:
        """The base checkpoint with a fresh LoRA adapter (``trainable``), a saved one
        (``adapter``), or none (the untuned base model)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        checkpoint = Path(checkpoint)
        if not (checkpoint / "config.json").is_file():
            raise LLMUnavailable(f"no model checkpoint in {checkpoint}")
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        tokenizer.add_bos_token = True
        torch_dtype = _torch_dtype(dtype, device)
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch_dtype).to(device)
        if adapter is not None or trainable:
            try:
                from peft import LoraConfig, PeftModel, get_peft_model
            except ImportError:
                raise LLMUnavailable("the tuned ranker needs peft (pip install peft)") from None
            if adapter is not None:
                model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
            else:
                n_layers = model.config.num_hidden_layers
                layers = None if config.lora_layers <= 0 else list(
                    range(max(0, n_layers - config.lora_layers), n_layers))
                model = get_peft_model(model, LoraConfig(
                    r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                    layers_to_transform=layers, task_type="CAUSAL_LM"))
        model.train(trainable)
        if not trainable:
            model.eval()
        return cls(model, tokenizer, config, base=checkpoint, device=device)

    @classmethod
    def load(cls, directory: Path, *, device: str = "cpu", dtype: str = "auto",
             base: Path | None = None) -> LetterRanker:
        """The ranker saved by :meth:`save` (``base`` overrides the recorded checkpoint)."""
        meta = read_ranker_meta(directory)
        checkpoint = Path(base or meta["base"])
        return cls.from_base(checkpoint, RankerConfig.from_dict(meta["config"]), device=device,
                             dtype=dtype, adapter=Path(directory) / ADAPTER_DIR)

    def save(self, directory: Path, metadata: dict[str, Any] | None = None) -> None:
        """The adapter and ``ranker.json`` (config, base checkpoint, what it was trained on);
        written to a temporary folder first, so a crash never leaves half an adapter."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{ADAPTER_DIR}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.model.save_pretrained(str(partial))
        shutil.rmtree(directory / ADAPTER_DIR, ignore_errors=True)
        partial.rename(directory / ADAPTER_DIR)
        meta = {"base": str(self.base), "config": asdict(self.config), **(metadata or {})}
        (directory / RANKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    def letter_logits(self, batch: Sequence[Sequence[int]], counts: Sequence[int]) -> torch.Tensor:
        """[len(batch), top_n] next-token logits of the letters after each prompt (token ids);
        letters past a prompt's candidate count are -inf. Differentiable when training."""
        import torch

        lengths = torch.tensor([len(ids) for ids in batch], device=self.device)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), int(lengths.max())), pad, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for b, row in enumerate(batch):
            ids[b, : len(row)] = torch.tensor(row, device=self.device)
            mask[b, : len(row)] = 1
        causal = self._causal_lm()
        hidden = causal.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(batch), device=self.device), lengths - 1]
        rows = causal.get_output_embeddings().weight[self.letter_ids]
        logits = last.float() @ rows.float().T
        cap = getattr(causal.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        letters = torch.arange(self.config.top_n, device=self.device)
        outside = letters[None, :] >= torch.tensor(counts, device=self.device)[:, None]
        return logits.masked_fill(outside, float("-inf"))

    def _causal_lm(self):
        from_peft = getattr(self.model, "get_base_model", None)
        return from_peft() if callable(from_peft) else self.model

    def log_probs(self, dataset: Dataset, history: Sequence[Interaction],
                  titles: Sequence[str]) -> np.ndarray:
        """Log-softmax over the candidates' letters, one forward pass."""
        import torch

        ids = self.encode(self.prompt(dataset, history, titles))
        with torch.inference_mode():
            logits = self.letter_logits([ids], [len(titles)])[0, : len(titles)]
            return torch.log_softmax(logits, dim=-1).cpu().numpy().astype(np.float64)


class ServedRanker(CandidateRanker):
    """The same ranker through a vLLM server that serves the adapter under its own model name
    (``--lora-modules NAME=DIR``): the prompt's token ids, exactly as :class:`LetterRanker`
    encodes them, in one completions request asking for the next-token log-probabilities of
    the N letter ids only (:meth:`VLLMClient.next_token_logprobs`); renormalised over the
    letters, they are the embedded ranker's log-softmax."""

    def __init__(self, client: VLLMClient, tokenizer, config: RankerConfig) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.config = config
        self.letter_ids = _letter_token_ids(tokenizer, config.top_n)
        self.name = client.name

    @classmethod
    def from_saved(cls, llm: LLM, directory: Path) -> ServedRanker:
        from transformers import AutoTokenizer

        if not isinstance(llm, VLLMClient):
            raise RecAgentError("the served ranker needs the vllm backend (--llm vllm)")
        meta = read_ranker_meta(directory)
        return cls(llm, AutoTokenizer.from_pretrained(meta["base"]),
                   RankerConfig.from_dict(meta["config"]))

    def log_probs(self, dataset: Dataset, history: Sequence[Interaction],
                  titles: Sequence[str]) -> np.ndarray:
        ids = self.encode(self.prompt(dataset, history, titles))
        raw = np.array(self.client.next_token_logprobs(ids, self.letter_ids[: len(titles)]),
                       dtype=np.float64)
        return raw - np.logaddexp.reduce(raw)  # renormalised over the letters


def read_ranker_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / RANKER_FILE
    if not path.is_file() or not (Path(directory) / ADAPTER_DIR).is_dir():
        raise RecAgentError(f"no trained ranker in {directory}: run `recagent train-ranker` first")
    return json.loads(path.read_text())


def _letter_token_ids(tokenizer, n: int) -> list[int]:
    ids = []
    for letter in LETTERS[:n]:
        tokens = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise LLMUnavailable(f"this tokenizer splits {' ' + letter!r} into {len(tokens)} tokens; "
                                 "the letter ranker needs one token per letter")
        ids.append(tokens[0])
    return ids


def _torch_dtype(name: str, device: str):
    import torch

    from recagent.retrieval.encoder import cpu_has_native_bf16

    if name == "auto":
        native = device.startswith("cuda") or cpu_has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise RecAgentError(f"dtype must be auto, float32 or bfloat16, not {name!r}") from None
