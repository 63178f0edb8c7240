"""LoRA adapters that teach the instruct model to write given answers (supervised fine-tuning).

An example is a prompt, the start its answer opens with (given to the model at inference,
as :meth:`CausalLM.generate_batch` gives it), and the answer; or a prompt and the JSON value
:meth:`InstructLLM.generate_json` is to decode for it (``as_json=True``). Training sees exactly the token
ids a turn decodes from: the prompt as a chat turn, the start, then the rest of the answer and
the end-of-turn token; the loss is the cross-entropy of the answer's tokens only (the prompt
and the start are context). The full-vocabulary logits are computed at those positions only.

The epoch with the lowest loss on the validation examples (other users' items than the
training examples') is saved: ``<out>/adapter/`` (peft) and ``<out>/adapter.json`` (the base
checkpoint, the config, the loss history, and what the caller adds: the explanation adapter
records its validation pass rates there, and whether it is used). ``last.pt`` resumes.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recagent.llm.causal_lm import CausalLM
from recagent.llm.lora_training import load_checkpoint, save_checkpoint, train_epoch

__all__ = ["ADAPTER_DIR", "ADAPTER_META", "AdapterTrainConfig", "AdapterTrainResult", "Answer",
           "epoch_dir", "read_adapter_meta", "train_answer_adapter", "update_adapter_meta"]

ADAPTER_DIR = "adapter"
ADAPTER_META = "adapter.json"


@dataclass(frozen=True)
class Answer:
    prompt: str
    start: str
    answer: str  # the whole answer, opening with ``start``
    as_json: bool = False  # a JSON answer: the prompt as generate_json asks it (llm.json_ids)


@dataclass(frozen=True)
class AdapterTrainConfig:
    epochs: int = 2
    batch_size: int = 4
    lr: float = 2e-4
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    seed: int = 42
    max_minutes: float = 40.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                       "up_proj", "down_proj")


@dataclass
class AdapterTrainResult:
    best_epoch: int
    best_valid_loss: float
    epochs_run: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


Row = tuple[list[int], int, int]  # token ids, where the answer begins, the head's length


def _example_ids(llm: CausalLM, ex: Answer) -> Row:
    """The token ids of one example, where its answer's own tokens begin, and how many of the
    first tokens the model alone reads (a JSON answer's head, see ``InstructLLM.json_head``;
    0 otherwise)."""
    if not ex.answer.startswith(ex.start):
        raise ValueError(f"the answer does not open with its start: {ex.answer[:60]!r}")
    if ex.as_json:
        prompt_ids = llm.json_ids(ex.prompt)
        context = prompt_ids + llm.tokenizer.encode(ex.start, add_special_tokens=False)
        head = llm.json_head(ex.prompt, prompt_ids)
    else:
        context, head = llm._answer_ids(ex.prompt, ex.start), 0
    rest = llm.tokenizer.encode(ex.answer[len(ex.start):], add_special_tokens=False)
    end = llm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    end = end if isinstance(end, int) and end >= 0 else llm.tokenizer.eos_token_id
    return context + rest + [end], len(context), head


class _Heads:
    """The KV caches of the heads of the examples, computed once by the model alone (the
    adapter switched off): the head reads the same for every example that shares it."""

    def __init__(self, llm: CausalLM, peft_model) -> None:
        self.llm, self.peft_model, self._caches = llm, peft_model, {}

    def cache(self, ids: Sequence[int], batch: int):
        import torch

        key = tuple(ids)
        if key not in self._caches:
            with torch.no_grad(), self.peft_model.disable_adapter():
                out = self.llm.model.model(input_ids=torch.tensor([list(ids)], device=self.llm.device),
                                           use_cache=True)
            self._caches[key] = out.cache
        cache = copy.deepcopy(self._caches[key])
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


def _batch_loss(llm: CausalLM, rows: Sequence[Row], heads: _Heads | None = None):
    """Mean cross-entropy of the answers' tokens (teacher forcing), logits at those positions
    only. Rows with a head (``heads`` given) run from their head's cache, as decoding does."""
    by_head: dict[tuple[int, ...], list[Row]] = {}
    for r in rows:
        by_head.setdefault(tuple(r[0][: r[2]]), []).append(r)
    total, count = None, 0
    for head, group in by_head.items():
        n = sum(len(ids) - begin for ids, begin, _ in group)
        loss = _group_loss(llm, group, head, heads) * n
        total = loss if total is None else total + loss
        count += n
    return total / count


def _group_loss(llm: CausalLM, rows: Sequence[Row], head: tuple[int, ...], heads: _Heads | None):
    import torch

    model = llm.model
    skip = len(head)
    cache = heads.cache(head, len(rows)) if skip else None
    rows = [(ids[skip:], begin - skip) for ids, begin, _ in rows]
    width = max(len(ids) for ids, _ in rows)
    pad = llm.tokenizer.pad_token_id or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), skip + width), dtype=torch.long)
    mask[:, :skip] = 1
    for b, (r, _) in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, skip: skip + len(r)] = 1
    positions = torch.arange(skip, skip + width, device=llm.device)[None].expand(len(rows), -1)
    hidden = model.model(input_ids=ids.to(llm.device), attention_mask=mask.to(llm.device),
                         position_ids=positions, cache=cache, use_cache=cache is not None).last_hidden_state
    b_idx, t_idx, targets = [], [], []
    for b, (r, begin) in enumerate(rows):
        for t in range(max(begin, 1), len(r)):  # token t is predicted at position t - 1
            b_idx.append(b)
            t_idx.append(t - 1)
            targets.append(r[t])
    logits = model.lm_head(hidden[torch.tensor(b_idx), torch.tensor(t_idx)]).float()
    return torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=llm.device))


def _valid_loss(llm: CausalLM, rows, batch_size: int, heads: _Heads | None = None) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo: lo + batch_size]
            n = sum(len(r) - begin for r, begin, _ in chunk)
            total += float(_batch_loss(llm, chunk, heads)) * n
            count += n
    return total / max(1, count)


def train_answer_adapter(llm: CausalLM, train: Sequence[Answer], valid: Sequence[Answer],
                         out_dir: Path, *, config: AdapterTrainConfig | None = None,
                         resume: bool = True, show_progress: bool = False, keep_epochs: bool = False,
                         metadata: dict[str, Any] | None = None) -> AdapterTrainResult:
    """Train a LoRA adapter on ``llm``'s model (in place) and save the epoch of lowest
    validation loss to ``out_dir``; with ``keep_epochs``, every epoch's adapter too (in
    :func:`epoch_dir`), for a caller that judges the epochs by a truer measure than the loss."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = config or AdapterTrainConfig()
    if not train:
        raise ValueError("no training examples")
    if llm.quantized:
        raise ValueError("an adapter trains on the bf16 or fp32 model, not int8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train_rows = [_example_ids(llm, ex) for ex in train]
    valid_rows = [_example_ids(llm, ex) for ex in valid]
    peft_model = get_peft_model(llm.model, LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    heads = _Heads(llm, peft_model)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": float("inf"), "best_epoch": 0,
                             "history": [], "seconds": 0.0}
    last = out_dir / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last, peft_model, optim, rng, llm.device)
    base_loss = state.get("base_valid_loss")
    if base_loss is None and valid_rows:
        with peft_model.disable_adapter():
            base_loss = state["base_valid_loss"] = _valid_loss(llm, valid_rows, config.batch_size, heads)
    steps_per_epoch = -(-len(train_rows) // config.batch_size)
    start = time.perf_counter() - state["seconds"]
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
               desc="Training adapter", unit="step", disable=not show_progress)
    out_of_time = False
    while state["epoch"] < config.epochs and not out_of_time:
        peft_model.train()
        order = rng.sample(range(len(train_rows)), len(train_rows))
        losses, out_of_time = train_epoch(train_rows, order, config.batch_size,
                                          lambda rows: _batch_loss(llm, rows, heads), optim, state, bar,
                                          start + config.max_minutes * 60)
        state["epoch"] += 1
        peft_model.eval()
        v = _valid_loss(llm, valid_rows, config.batch_size, heads) if valid_rows else float(np.mean(losses))
        state["history"].append({"epoch": state["epoch"], "train_loss": round(float(np.mean(losses)), 4),
                                 "valid_loss": round(v, 4), "steps": len(losses)})
        if v < state["best"]:
            state.update(best=v, best_epoch=state["epoch"])
            _save_adapter(peft_model, out_dir)
        if keep_epochs:
            _save_adapter(peft_model, out_dir, epoch_dir(out_dir, state["epoch"]).name)
        state["seconds"] = time.perf_counter() - start
        save_checkpoint(last, peft_model, optim, state, rng)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", valid=f"{v:.3f}")
    bar.close()
    result = AdapterTrainResult(state["best_epoch"], state["best"], state["epoch"], state["step"],
                                state["seconds"], state["history"])
    update_adapter_meta(out_dir, {
        "base": llm.checkpoint.name,
        "train_config": asdict(config),
        "train_examples": len(train_rows),
        "valid_examples": len(valid_rows),
        "valid_loss_base": None if base_loss is None else round(base_loss, 4),
        "best_epoch": result.best_epoch,
        "best_valid_loss": round(result.best_valid_loss, 4),
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "history": result.history,
        **(metadata or {}),
    })
    return result


def epoch_dir(out_dir: Path, epoch: int) -> Path:
    """Where ``train_answer_adapter(..., keep_epochs=True)`` keeps epoch ``epoch``'s adapter."""
    return Path(out_dir) / f"{ADAPTER_DIR}-epoch{epoch}"


def _save_adapter(peft_model, out_dir: Path, name: str = ADAPTER_DIR) -> None:
    """The adapter, written to a temporary folder first so a crash never leaves half of one."""
    tmp = out_dir / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp))
    final = out_dir / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)


def read_adapter_meta(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / ADAPTER_META
    return json.loads(path.read_text()) if path.is_file() else {}


def update_adapter_meta(out_dir: Path, fields: dict[str, Any]) -> None:
    meta = read_adapter_meta(out_dir) | fields
    tmp = Path(out_dir) / (ADAPTER_META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(Path(out_dir) / ADAPTER_META)
