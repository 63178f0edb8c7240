"""What the two LoRA trainers share (the ranker's, :mod:`recagent.llm.ranker_train`; the answer
adapters', :mod:`recagent.llm.answer_adapter`): one epoch of optimiser steps under a time cap,
and the resumable checkpoint ``last.pt`` (the adapter, the optimiser, the loop's state and the
random number generators)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_checkpoint", "save_checkpoint", "train_epoch"]


def train_epoch(items: Sequence, order: Sequence[int], batch_size: int, loss_of: Callable,
                optim, state: dict[str, Any], bar, deadline: float) -> tuple[list[float], bool]:
    """A step per batch of ``items`` taken in ``order``, counted in ``state["step"]`` and on
    the progress ``bar``; returns the losses and whether the time ran out (past ``deadline``,
    a ``time.perf_counter()`` value) before the epoch's end."""
    losses: list[float] = []
    for lo in range(0, len(order), batch_size):
        loss = loss_of([items[i] for i in order[lo: lo + batch_size]])
        optim.zero_grad()
        loss.backward()
        optim.step()
        state["step"] += 1
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.update(1)
        if time.perf_counter() > deadline:
            return losses, True
    return losses, False


def save_checkpoint(path: Path, model, optim, state: dict[str, Any], rng: random.Random) -> None:
    import torch
    from peft import get_peft_model_state_dict

    torch.save({"adapter": get_peft_model_state_dict(model), "optim": optim.state_dict(),
                "state": state, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, path)


def load_checkpoint(path: Path, model, optim, rng: random.Random, device: str) -> dict[str, Any]:
    """Restore the adapter, the optimiser and the generators from ``path``; returns the state."""
    import torch
    from peft import set_peft_model_state_dict

    saved = torch.load(path, map_location=device, weights_only=False)
    set_peft_model_state_dict(model, saved["adapter"])
    optim.load_state_dict(saved["optim"])
    rng.setstate(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    return saved["state"]
