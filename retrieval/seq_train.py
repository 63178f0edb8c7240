"""Training the sequence retriever: (history -> next item) on the TRAINING part only.

Every position of a user's training sequence is a (history prefix -> next item) pair; one
forward pass of the causal query tower scores all of a sequence's prefixes at once. The loss
is InfoNCE with the whole catalog as negatives (softmax cross-entropy over every item's
cosine / temperature): for catalogs of a few thousand items that is cheaper than mining, and
strictly harder than in-batch negatives. For large catalogs ``negatives`` > 0 replaces the
catalog by the batch's own items plus that many drawn uniformly (sampled softmax; only those
items' vectors are computed). Augmentation: a random window (crop) of long sequences and
random item masking. Optional: bf16 autocast (``precision``) and CL4SRec's sequence-level
contrastive term (``cl_weight``: two crop+mask views of each sequence are positives, the
batch's other views negatives).

Validation NDCG@10 (the harness, stage "valid") picks the best epoch and stops training
after ``patience`` evaluations without improvement. ``last.pt`` holds everything needed to
resume; ``model.pt`` the best weights; ``metadata.json`` what was trained on what, how.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from recagent.catalog.model import Dataset
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.scorer import History
from recagent.protocol.split import LeaveOneOutSplit
from recagent.retrieval.seq_model import SeqConfig, SequenceRetriever

__all__ = [
    "FULL_SOFTMAX_MAX_ITEMS", "SAMPLED_NEGATIVES", "SeqScorer", "TrainConfig", "TrainResult",
    "default_negatives", "resolve_precision", "train_seq_retriever", "train_sequences",
]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    # "constant", or "cosine": linear warm-up over ``warmup_epochs``, then cosine decay to 0
    # at ``epochs`` (so set ``epochs`` to what fits in the time budget).
    schedule: str = "constant"
    warmup_epochs: int = 3
    weight_decay: float = 0.05
    # ML-100K's validation curve has a plateau between epochs ~25 and ~45 with stale streaks
    # of up to 15 epochs: patience 15 stopped there on 2 of 4 runs (valid N@10 0.063 instead
    # of 0.085; docs/scale.md, "On a GPU"), so 30.
    patience: int = 30
    crop_prob: float = 0.5  # probability of a random window instead of the newest one
    mask_prob: float = 0.1  # probability of replacing an input item by padding
    id_dropout: float = 0.0  # share of items trained on text alone at each step (cold start)
    seed: int = 42
    device: str = "cpu"
    max_minutes: float = 15.0  # checked after every step: a long epoch is cut short
    # Negatives of the next-item loss: 0 = every catalog item (full softmax); N > 0 = the
    # items of the batch (inputs and targets) plus N drawn uniformly from the catalog, shared
    # by the whole batch (sampled softmax: the cost no longer grows with the catalog).
    negatives: int = 0
    # "fp32", or "bf16": forward passes under bfloat16 autocast (weights and optimiser stay
    # fp32); "auto" takes bf16 where the device computes it natively (a CPU with AVX-512 bf16
    # or AMX, a CUDA GPU with bf16) and fp32 elsewhere.
    precision: str = "fp32"
    # Sequence-level contrastive loss (CL4SRec): two augmented views (crop, mask) of each
    # sequence are positives, the batch's other views negatives; weight 0 leaves it out.
    cl_weight: float = 0.0
    cl_temperature: float = 0.2
    # Validation cases scored after each epoch (a seeded sample when there are more).
    valid_cases: int | None = 20_000


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_sequences(split: LeaveOneOutSplit) -> list[np.ndarray]:
    """Item-index sequences of the training part of every user (validation/test removed)."""
    index = split.dataset.item_index
    out = []
    for history in split.train:
        seq = np.fromiter((index[x.item_id] for x in history), dtype=np.int64)
        if len(seq) >= 2:
            out.append(seq)
    return out


def _left_pad(rows: Sequence[np.ndarray], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(1, max(len(r) for r in rows))
    items = torch.full((len(rows), length), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            items[i, length - len(r):] = torch.from_numpy(np.asarray(r, dtype=np.int64))
    return items, items == fill


class SeqScorer:
    """The trained sequence retriever as a harness Scorer (and for candidate retrieval)."""

    name = "seqrec"

    def __init__(self, model: SequenceRetriever, dataset: Dataset, device: str = "cpu", *,
                 frozen: bool = False):
        """``frozen``: the model no longer changes (a loaded checkpoint), so every item's
        vector is computed once and kept, not once per ``score`` call (the adapter over the
        whole catalog: most of a one-history call); training scores an unfrozen one."""
        self.model = model
        self.dataset = dataset
        self.device = device
        self.frozen = frozen
        self._table: torch.Tensor | None = None

    def _item_table(self) -> torch.Tensor | None:
        """The kept item vectors of a frozen model (None: compute them per call)."""
        if not self.frozen:
            return None
        if self._table is None:
            self.model.eval()
            with torch.no_grad():
                self._table = self.model.item_vectors()
        return self._table

    def fit(self, train: Sequence[History]) -> None:
        """Trained by :func:`train_seq_retriever`; the harness must not refit it."""

    def _inputs(self, histories: Sequence[History]) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.dataset.item_index
        max_len = self.model.config.max_len
        rows = [np.array([index[x.item_id] for x in h[-max_len:]], dtype=np.int64) for h in histories]
        items, pad = _left_pad(rows, fill=-1)
        self.model.eval()
        return items.to(self.device), pad.to(self.device)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        scores = self.model.score_last(*self._inputs(histories), table=self._item_table())
        return scores.float().cpu().numpy()

    def query_vectors(self, histories: Sequence[History]) -> np.ndarray:
        """Query-tower vectors of ``histories`` for an inner-product index (see SeqIndex)."""
        return self.model.search_vectors(*self._inputs(histories),
                                         table=self._item_table()).float().cpu().numpy()

    def forget(self, item_ids: Iterable[str]) -> None:
        """Score ``item_ids`` from here on as items never seen in training: by their text
        alone, without their ID embedding (tuning for new items on items the model knows)."""
        index = self.dataset.item_index
        self.model.seen[[index[i] for i in item_ids]] = False
        self._table = None

    def item_vectors(self) -> np.ndarray:
        """Every item's vector, aligned with ``dataset.item_ids``."""
        self.model.eval()
        return self.model.search_vectors(table=self._item_table()).float().cpu().numpy()

    @classmethod
    def load(cls, directory: Path, dataset: Dataset, device: str = "cpu") -> SeqScorer:
        payload = torch.load(directory / "model.pt", map_location=device, weights_only=True)
        if payload["item_ids"] != dataset.item_ids:
            from recagent.catalog.errors import RecAgentError

            raise RecAgentError(
                f"{directory} was trained on another catalog than {dataset.name!r}: retrain it"
            )
        model = SequenceRetriever(
            SeqConfig(**payload["config"]), payload["state_dict"]["text"], payload["state_dict"]["seen"]
        )
        model.load_state_dict(payload["state_dict"])
        return cls(model.to(device).eval(), dataset, device, frozen=True)


def _batches(seqs: list[np.ndarray], cfg: TrainConfig, max_len: int, rng: random.Random):
    order = list(range(len(seqs)))
    rng.shuffle(order)
    for lo in range(0, len(order), cfg.batch_size):
        inputs, targets = [], []
        for u in order[lo : lo + cfg.batch_size]:
            seq = seqs[u]
            width = min(len(seq), max_len + 1)
            start = len(seq) - width
            if start > 0 and rng.random() < cfg.crop_prob:
                start = rng.randrange(0, start + 1)
            window = seq[start : start + width]
            x = window[:-1].copy()
            if cfg.mask_prob > 0:
                drop = np.array([rng.random() < cfg.mask_prob for _ in range(len(x))])
                drop[-1] = False  # keep the newest item: it is the strongest signal
                x[drop] = -1
            inputs.append(x)
            targets.append(window[1:])
        yield inputs, targets


def _views(inputs: Sequence[np.ndarray], gen: np.random.Generator, crop: float = 0.6,
           mask: float = 0.3) -> list[np.ndarray]:
    """Two augmented views of every input sequence (CL4SRec's crop, then mask): a random
    window of ``crop`` of the items, each of them then masked (-1) with chance ``mask`` (the
    newest kept). Views 0..B-1 are the first view of each sequence, B..2B-1 the second."""
    views = []
    for _ in range(2):
        for x in inputs:
            x = x[x >= 0]
            if len(x) == 0:
                views.append(np.full(1, -1, dtype=np.int64))
                continue
            k = max(1, int(crop * len(x)))
            lo = int(gen.integers(0, len(x) - k + 1))
            view = x[lo : lo + k].copy()
            drop = gen.random(k) < mask
            drop[-1] = False
            view[drop] = -1
            views.append(view)
    return views


def _contrastive(model: SequenceRetriever, items: torch.Tensor, table: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """NT-Xent over the 2B views (left-padded with -2, masked -1): each view's positive is
    the other view of its sequence, the other 2B - 2 views are its negatives."""
    items = items.masked_fill(items == -1, -2)
    hidden = model.encode(items, items == -2, table)[:, -1]
    z = torch.nn.functional.normalize(hidden.float(), dim=-1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    half = len(z) // 2
    labels = torch.cat([torch.arange(half, 2 * half), torch.arange(0, half)]).to(z.device)
    return torch.nn.functional.cross_entropy(sim, labels)


def _loss(model: SequenceRetriever, inputs, targets, device: str,
          id_dropout: float = 0.0, negatives: int = 0,
          generator: torch.Generator | None = None, views: Sequence[np.ndarray] = (),
          cl_weight: float = 0.0, cl_temperature: float = 0.2) -> torch.Tensor:
    """Next-item InfoNCE, plus ``cl_weight`` x the sequence-level contrastive loss of
    ``views`` (:func:`_views`) when given."""
    items, _ = _left_pad(inputs, fill=-2)  # -2: length padding; -1: a masked item
    tgt, tpad = _left_pad(targets, fill=-2)
    items = items.masked_fill(items == -1, -2)  # a masked item is read as padding
    labels = tgt[~tpad]
    seen_views = _left_pad(views, fill=-2)[0] if len(views) else None
    if negatives > 0:  # only the batch's items and the drawn negatives get vectors
        drawn = torch.randint(model.n_items, (negatives,), generator=generator)
        parts = [items[items >= 0], labels, drawn]
        if seen_views is not None:
            parts.append(seen_views[seen_views >= 0])
        rows = torch.cat(parts).unique()  # sorted

        def local(x: torch.Tensor) -> torch.Tensor:
            return torch.where(x >= 0, torch.searchsorted(rows, x.clamp(min=0)), x)

        items, labels = local(items), torch.searchsorted(rows, labels)
        seen_views = None if seen_views is None else local(seen_views)
        table = model.item_vectors(id_dropout, rows.to(device))
    else:
        table = model.item_vectors(id_dropout)
    hidden = model.encode(items.to(device), (items == -2).to(device), table)
    logits = model.logits(hidden[~tpad.to(device)], table)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(device))
    if seen_views is not None and cl_weight > 0:
        loss = loss + cl_weight * _contrastive(model, seen_views.to(device), table, cl_temperature)
    return loss


FULL_SOFTMAX_MAX_ITEMS = 20_000  # above it, the product trains with sampled negatives
SAMPLED_NEGATIVES = 1024


def default_negatives(n_items: int) -> int:
    """The product's negatives for a catalog of ``n_items``: the whole catalog (0) up to
    ``FULL_SOFTMAX_MAX_ITEMS``, else ``SAMPLED_NEGATIVES`` drawn per batch. A full softmax
    over 100,000 items took 10.6 s a step here, the sampled one 0.84 s."""
    return 0 if n_items <= FULL_SOFTMAX_MAX_ITEMS else SAMPLED_NEGATIVES


def resolve_precision(precision: str, device: str) -> str:
    """"fp32" or "bf16" for ``precision`` ("auto" decides by what ``device`` computes natively)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    flags = _cpu_flags()
    return "bf16" if {"avx512_bf16", "amx_bf16"} & flags else "fp32"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def train_seq_retriever(
    split: LeaveOneOutSplit,
    text_embeddings: np.ndarray,
    out_dir: Path,
    *,
    seq_config: SeqConfig | None = None,
    config: TrainConfig | None = None,
    resume: bool = True,
    show_progress: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, early-stop on validation NDCG@10, and write the checkpoint to ``out_dir``."""
    seq_config = seq_config or SeqConfig()
    config = config or TrainConfig()
    precision = resolve_precision(config.precision, config.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    rng = random.Random(config.seed)
    seqs = train_sequences(split)
    n_items = len(split.dataset.items)
    seen = torch.zeros(n_items, dtype=torch.bool)  # every item with a training interaction
    for history in split.train:
        for x in history:
            seen[split.dataset.item_index[x.item_id]] = True
    model = SequenceRetriever(seq_config, torch.from_numpy(text_embeddings), seen).to(config.device)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(seqs) // config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _lr_factor(config, steps_per_epoch))
    scorer = SeqScorer(model, split.dataset, config.device)
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "stale": 0, "history": [], "seconds": 0.0}
    last = out_dir / "last.pt"
    if resume and last.exists():
        saved = torch.load(last, map_location=config.device, weights_only=False)
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        if "sched" in saved:
            sched.load_state_dict(saved["sched"])
        state = saved["state"]
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
    start = time.perf_counter() - state["seconds"]
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc="Training seqrec",
               unit="epoch", disable=not show_progress)
    autocast = torch.autocast(device_type=torch.device(config.device).type,
                              dtype=torch.bfloat16, enabled=precision == "bf16")
    gen = torch.Generator().manual_seed(config.seed)
    view_rng = np.random.default_rng(config.seed)  # its own stream: the batches stay the same
    out_of_time = False
    while state["epoch"] < config.epochs and state["stale"] < config.patience and not out_of_time:
        model.train()
        losses = []
        epoch_start = time.perf_counter()
        for inputs, targets in _batches(seqs, config, seq_config.max_len, rng):
            views = _views(targets, view_rng) if config.cl_weight > 0 else ()
            with autocast:
                loss = _loss(model, inputs, targets, config.device, config.id_dropout,
                             config.negatives, gen, views, config.cl_weight,
                             config.cl_temperature)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            losses.append(float(loss.detach()))
            if time.perf_counter() - start > config.max_minutes * 60:
                out_of_time = True  # the budget ends inside this epoch: validate what we have
                break
        state["epoch"] += 1
        train_s = time.perf_counter() - epoch_start
        valid = evaluate_scorer(scorer, split, stage="valid", fit=False,
                                max_users=config.valid_cases, sample_seed=config.seed).metrics
        record = {"epoch": state["epoch"], "loss": float(np.mean(losses)),
                  "valid_ndcg@10": valid["ndcg@10"], "valid_recall@10": valid["recall@10"],
                  "train_s": round(train_s, 2), "steps": len(losses)}
        state["history"].append(record)
        if valid["ndcg@10"] > state["best"]:
            state.update(best=valid["ndcg@10"], best_epoch=state["epoch"], stale=0,
                         best_valid=valid)
            _save_model(model, split.dataset, out_dir)
        else:
            state["stale"] += 1
        state["seconds"] = time.perf_counter() - start
        torch.save({"model": model.state_dict(), "optim": optim.state_dict(),
                    "sched": sched.state_dict(), "state": state,
                    "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, last)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_ndcg10=f"{valid['ndcg@10']:.4f}")
        bar.update(1)
        if state["seconds"] > config.max_minutes * 60:
            break
    bar.close()
    result = TrainResult(
        best_epoch=state["best_epoch"], best_valid=state.get("best_valid", {}),
        epochs_run=state["epoch"], seconds=state["seconds"], history=state["history"],
    )
    metadata = {
        "model": "seqrec",
        "dataset": split.dataset.name,
        "n_items": n_items,
        "n_train_sequences": len(seqs),
        "n_cold_items": int((~seen).sum()),
        "split": "leave-one-out by time; trained on training parts only (no validation/test items)",
        "seq_config": seq_config.to_dict(),
        "train_config": asdict(config),
        "precision": precision,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid_metrics": result.best_valid,
        "seconds": round(result.seconds, 1),
        "history": result.history,
        **(extra_metadata or {}),
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return result


def _lr_factor(config: TrainConfig, steps_per_epoch: int):
    """Multiplier of ``config.lr`` at each optimisation step."""
    if config.schedule == "constant":
        return lambda step: 1.0
    if config.schedule != "cosine":
        raise ValueError(f"schedule must be 'constant' or 'cosine', not {config.schedule!r}")
    warmup = max(1, config.warmup_epochs * steps_per_epoch)
    total = max(warmup + 1, config.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    return factor


def _save_model(model: SequenceRetriever, dataset: Dataset, out_dir: Path) -> None:
    tmp = out_dir / "model.pt.tmp"
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(),
                "item_ids": dataset.item_ids}, tmp)
    tmp.replace(out_dir / "model.pt")
