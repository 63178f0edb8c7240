"""Training the LLM ranker (LoRA) on the TRAINING part of the split only.

An example is a position of a user's training sequence: the history before it, the
retriever's top-N candidates for that history (history items masked, as in the harness),
and the letter of the true next item; positions whose next item is not among the candidates
teach nothing and are skipped. The loss is cross-entropy over the N letters' logits.

After every epoch (and when the time cap ends one early) the ranker re-ranks the retriever's
top-N of a seeded sample of validation users (stage "valid": training history -> validation
item); the blend of its order with the retriever's order (``blend_orders``) is chosen on the
same users, and the best epoch by that NDCG@10 is saved (``adapter/`` + ``ranker.json``).
It counts as helping (``helps_on_validation``) only when the 95% interval of its paired
per-user NDCG@10 gain over the retriever's order lies above zero.
``last.pt`` holds the adapter, the optimiser and the RNG states to resume from.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recagent.catalog.model import Dataset, Interaction
from recagent.llm.lora_training import load_checkpoint, save_checkpoint, train_epoch
from recagent.llm.ranker import RANKER_FILE, LetterRanker, blend_orders
from recagent.protocol.metrics import metrics_from_ranks, paired_ndcg_gain_ci95
from recagent.protocol.ranking import rank_targets
from recagent.protocol.scorer import Scorer
from recagent.protocol.split import LeaveOneOutSplit

__all__ = ["Example", "RankerTrainConfig", "RankerTrainResult", "candidate_lists",
           "rerank_ranks", "train_ranker", "training_examples"]

BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class RankerTrainConfig:
    epochs: int = 2
    examples_per_epoch: int | None = None  # a seeded sample of the examples each epoch; None: all
    positions_per_user: int = 1  # the newest training positions of each user
    train_users: int = 0  # a seeded sample of users to take positions from (0: all)
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.0
    valid_users: int = 200  # seeded sample of validation users (0: all)
    seed: int = 42
    device: str = "cpu"
    max_minutes: float = 30.0


@dataclass(frozen=True)
class Example:
    history: Sequence[Interaction]
    candidates: list[str]  # item ids, in the retriever's order
    label: int  # position of the true next item among them


@dataclass
class RankerTrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    blend: float
    epochs_run: int
    steps: int
    seconds: float
    n_examples: int
    history: list[dict[str, float]] = field(default_factory=list)


def candidate_lists(scorer: Scorer, dataset: Dataset, histories: Sequence[Sequence[Interaction]],
                    targets: Sequence[str], top_n: int, batch_size: int = 256,
                    ) -> tuple[np.ndarray, list[list[str]]]:
    """The harness rank of each target under ``scorer`` and its top-``top_n`` item ids
    (input-history items masked, ties by catalog order: :func:`rank_targets`)."""
    index, ids = dataset.item_index, dataset.item_ids
    ranks, tops = [], []
    for lo in range(0, len(histories), batch_size):
        batch = histories[lo : lo + batch_size]
        scores = np.array(scorer.score(batch), dtype=np.float32)
        masks = [[index[x.item_id] for x in h] for h in batch]
        r, top = rank_targets(scores, masks, [index[t] for t in targets[lo : lo + batch_size]],
                              top_k=top_n)
        ranks.append(r)
        tops.extend([ids[i] for i in row if np.isfinite(scores[k, i])] for k, row in enumerate(top))
    return np.concatenate(ranks) if ranks else np.zeros(0), tops


def training_examples(split: LeaveOneOutSplit, scorer: Scorer, top_n: int,
                      positions_per_user: int = 1, users: int = 0,
                      seed: int = 42) -> tuple[list[Example], int]:
    """Examples from the training sequences (never a validation or test item), and how many
    positions were skipped because their next item was not among the candidates; ``users``
    takes them from a seeded sample of that many users (0: all)."""
    sequences = list(split.train)
    if 0 < users < len(sequences):
        sequences = [sequences[i] for i in sorted(random.Random(seed).sample(range(len(sequences)), users))]
    histories, targets = [], []
    for seq in sequences:
        for cut in range(len(seq) - 1, max(0, len(seq) - 1 - positions_per_user), -1):
            if cut >= 1:
                histories.append(seq[:cut])
                targets.append(seq[cut].item_id)
    _, tops = candidate_lists(scorer, split.dataset, histories, targets, top_n)
    examples = [Example(h, top, top.index(t))
                for h, t, top in zip(histories, targets, tops, strict=True) if t in top]
    return examples, len(histories) - len(examples)


def rerank_ranks(ranker: LetterRanker, dataset: Dataset, histories, base_ranks: np.ndarray,
                 tops: list[list[str]], targets: Sequence[str], blends: Sequence[float],
                 ) -> tuple[dict[float, np.ndarray], float]:
    """The target's rank after re-ranking, for each blend weight (a target outside the
    candidates keeps its base rank), and the mean seconds per re-ranked user of the LLM (only
    users whose target is among the candidates are re-ranked: the others' ranks cannot change)."""
    out = {w: base_ranks.copy() for w in blends}
    spent, called = 0.0, 0
    items = dataset.items
    for u, (history, top, target) in enumerate(zip(histories, tops, targets, strict=True)):
        if target not in top:
            continue
        started = time.perf_counter()
        logp = ranker.log_probs(dataset, history, [items[i].title for i in top])
        spent += time.perf_counter() - started
        called += 1
        at = top.index(target)
        for w in blends:
            fused = blend_orders(logp, w)
            out[w][u] = 1 + np.count_nonzero(fused > fused[at]) + np.count_nonzero(fused[:at] == fused[at])
    return out, spent / max(1, called)


def _valid_cases(split: LeaveOneOutSplit, scorer: Scorer, top_n: int, n_users: int, seed: int):
    users, histories, targets = split.cases("valid")
    pick = list(range(len(users)))
    if 0 < n_users < len(pick):
        pick = sorted(random.Random(seed).sample(pick, n_users))
    histories = [histories[i] for i in pick]
    targets = [targets[i] for i in pick]
    base, tops = candidate_lists(scorer, split.dataset, histories, targets, top_n)
    return histories, targets, base, tops


def train_ranker(
    split: LeaveOneOutSplit,
    scorer: Scorer,
    ranker: LetterRanker,
    out_dir: Path,
    *,
    config: RankerTrainConfig | None = None,
    resume: bool = True,
    show_progress: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> RankerTrainResult:
    """Train ``ranker``'s adapter (built with ``trainable=True``) on ``scorer``'s candidates."""
    import torch

    config = config or RankerTrainConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    top_n = ranker.config.top_n
    examples, skipped = training_examples(split, scorer, top_n, config.positions_per_user,
                                          config.train_users, config.seed)
    if not examples:
        raise ValueError("no training position has its next item among the candidates")
    valid = _valid_cases(split, scorer, top_n, config.valid_users, config.seed)
    base_valid = metrics_from_ranks(valid[2], ks=(10, 20))
    params = [p for p in ranker.model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "blend": 0.0,
                             "history": [], "seconds": 0.0, "best_valid": {}}
    last = out_dir / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last, ranker.model, optim, rng, config.device)
    per_epoch = min(len(examples), config.examples_per_epoch or len(examples))
    steps_per_epoch = -(-per_epoch // config.batch_size)
    start = time.perf_counter() - state["seconds"]
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch,
               desc="Training ranker", unit="step", disable=not show_progress)
    out_of_time = False
    while state["epoch"] < config.epochs and not out_of_time:
        ranker.model.train()
        order = rng.sample(range(len(examples)), per_epoch)
        losses, out_of_time = train_epoch(examples, order, config.batch_size,
                                          lambda batch: _loss(ranker, split.dataset, batch), optim,
                                          state, bar, start + config.max_minutes * 60)
        state["epoch"] += 1
        ranker.model.eval()
        ranks, seconds_per_user = rerank_ranks(ranker, split.dataset, valid[0], valid[2], valid[3],
                                               valid[1], BLEND_GRID)
        scores = {w: metrics_from_ranks(r, ks=(10, 20)) for w, r in ranks.items()}
        blend = max(BLEND_GRID, key=lambda w: (scores[w]["ndcg@10"], w))
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)),
                  "examples": min(per_epoch, len(losses) * config.batch_size),
                  "valid_ndcg@10_ranker": scores[1.0]["ndcg@10"],
                  "valid_ndcg@10_blend": scores[blend]["ndcg@10"], "blend": blend,
                  "valid_ms_per_user": round(1000 * seconds_per_user, 1)}
        state["history"].append(record)
        if scores[blend]["ndcg@10"] > state["best"]:
            state.update(best=scores[blend]["ndcg@10"], best_epoch=state["epoch"], blend=blend,
                         best_valid=scores[blend], best_ranks=ranks[blend].tolist())
            ranker.config = replace(ranker.config, blend=blend)
            ranker.save(out_dir, {"best_epoch": state["epoch"]})
        state["seconds"] = time.perf_counter() - start
        save_checkpoint(last, ranker.model, optim, state, rng)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_ndcg10=f"{scores[blend]['ndcg@10']:.4f}",
                        blend=blend)
    bar.close()
    result = RankerTrainResult(
        best_epoch=state["best_epoch"], best_valid=state["best_valid"], blend=state["blend"],
        epochs_run=state["epoch"], steps=state["step"], seconds=state["seconds"],
        n_examples=len(examples), history=state["history"],
    )
    lift = paired_ndcg_gain_ci95(valid[2], np.array(state.get("best_ranks", valid[2]), dtype=np.float64))
    helps = state["blend"] > 0 and lift[0] > 0
    ranker.config = replace(ranker.config, blend=state["blend"])
    metadata = {
        "model": "llm-ranker (LoRA verbalizer)",
        "dataset": split.dataset.name,
        "split": "leave-one-out by time; trained on training positions only (no validation/test items)",
        "train_config": asdict(config),
        "n_examples": len(examples),
        "n_positions_skipped": skipped,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "valid_users": len(valid[0]),
        "valid_metrics": result.best_valid,
        "valid_metrics_no_rerank": base_valid,
        "valid_ndcg@10_lift_ci95": lift,
        "helps_on_validation": bool(helps),
        "history": result.history,
        **(extra_metadata or {}),
    }
    if state["best_epoch"]:
        _write_meta(out_dir, metadata)
    return result


def _write_meta(out_dir: Path, metadata: dict[str, Any]) -> None:
    """Rewrite ``ranker.json`` of the saved best adapter with the final metadata."""
    path = out_dir / RANKER_FILE
    saved = json.loads(path.read_text())
    saved.update(metadata)
    (path.parent / (RANKER_FILE + ".tmp")).write_text(json.dumps(saved, indent=2) + "\n")
    (path.parent / (RANKER_FILE + ".tmp")).replace(path)


def _loss(ranker: LetterRanker, dataset: Dataset, batch: Sequence[Example]):
    import torch

    items = dataset.items
    ids = [ranker.encode(ranker.prompt(dataset, ex.history, [items[i].title for i in ex.candidates]))
           for ex in batch]
    logits = ranker.letter_logits(ids, [len(ex.candidates) for ex in batch])
    labels = torch.tensor([ex.label for ex in batch], device=ranker.device)
    return torch.nn.functional.cross_entropy(logits, labels)
