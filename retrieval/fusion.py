"""Score fusion: a weighted sum of per-user normalised scores of several Scorers.

For each history, each component's scores are standardised over the items the user does
not have (z-score: (s - mean) / std over the candidates, so the items in the history, which
get masked anyway, do not move the scale), then combined as Σ_c w_c · z_c. The weights are
chosen on the VALIDATION stage only (:func:`tune_fusion`); the test stage never informs them.
:class:`FusionRetriever` serves the fused model in the product.

Cold items. An item that no history the scorer was fit on contains has nothing for the ID
and co-occurrence components to go on (item-kNN scores it 0, seqrec's text path barely
moves it), so it sits at the floor of the fused scale. For such an item the text
retriever's z-score (history text against item text) takes the place of item-kNN's, and
one offset, tuned on validation (:func:`tune_cold_offset`), puts it on the fused scale:
w · z(seqrec) + (1 − w) · z(text) + ``cold_offset``. Items with interactions keep exactly
the fused score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recagent.catalog.model import Dataset
from recagent.protocol.metrics import MetricSums
from recagent.protocol.ranking import history_masks, target_ranks
from recagent.protocol.scorer import History, Scorer
from recagent.protocol.split import LeaveOneOutSplit, sample_cases
from recagent.retrieval.base import Retriever, unit_rows

__all__ = [
    "COLD_OFFSETS",
    "TUNING_CHUNK",
    "ColdChoice",
    "FusionChoice",
    "FusionRetriever",
    "FusionScorer",
    "standardise",
    "tune_cold_offset",
    "tune_fusion",
]

COLD_OFFSETS: tuple[float, ...] = tuple(np.round(np.arange(-2.0, 4.01, 0.25), 2))
"""The offsets :func:`tune_cold_offset` tries, on top of leaving cold items at the floor."""


def standardise(scores: np.ndarray, masks: Sequence[Sequence[int]]) -> np.ndarray:
    """Row-wise z-scores of ``scores``, with mean and std taken over the unmasked columns.

    A row whose candidates all score the same (std 0) becomes all zeros: it carries no
    preference, so it must not tip the fusion either way.
    """
    scores = np.asarray(scores, dtype=np.float32)
    keep = np.ones(scores.shape, dtype=bool)
    for r, masked in enumerate(masks):
        keep[r, list(masked)] = False
    n = np.maximum(keep.sum(axis=1, keepdims=True), 1)
    mean = np.where(keep, scores, 0.0).sum(axis=1, keepdims=True) / n
    var = np.where(keep, (scores - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n
    std = np.sqrt(var)
    return np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)


class FusionScorer:
    """Σ_c w_c · standardise(component_c) over ``components``; ``fit`` fits every component.

    Cold items, those in no history given to :meth:`fit`, score differently once there is a
    ``cold_text`` (a factory of the text scorer, called on first need) and a ``cold_offset``:
    component ``cold_component`` (item-kNN, which scores them 0) is replaced for them by
    standardise(text), and ``cold_offset`` is added. Every other item keeps the fused score,
    and so does every item without the two (or before ``fit``).
    """

    def __init__(
        self,
        components: Sequence[Scorer],
        weights: Sequence[float],
        *,
        name: str = "fusion",
        fit_components: bool = True,
        cold_text: Callable[[], Scorer] | None = None,
        cold_offset: float | None = None,
        cold_component: int = -1,
    ) -> None:
        if len(components) != len(weights) or not components:
            raise ValueError("fusion needs one weight per component, and at least one component")
        self.components = list(components)
        self.weights = [float(w) for w in weights]
        self.name = name
        self.fit_components = fit_components
        self.cold_offset = cold_offset
        self.cold_component = range(len(self.components))[cold_component]
        self._cold_text = cold_text
        self._text: Scorer | None = None
        self.cold = np.zeros(len(self._index), dtype=bool)

    @property
    def _index(self) -> Mapping[str, int]:
        return self.components[0].dataset.item_index  # type: ignore[attr-defined]

    def fit(self, train: Sequence[History]) -> None:
        if self.fit_components:
            for component in self.components:
                component.fit(train)
        index = self._index
        self.cold = np.ones(len(index), dtype=bool)
        for history in train:
            self.cold[[index[x.item_id] for x in history]] = False

    def _weighted(self, histories: Sequence[History]) -> list[np.ndarray | float]:
        masks = history_masks(self._index, histories)
        return [weight * standardise(component.score(histories), masks) if weight else 0.0
                for component, weight in zip(self.components, self.weights, strict=True)]

    def fused(self, histories: Sequence[History]) -> np.ndarray:
        """Σ_c w_c · z_c for every item, cold ones included: the score without cold items."""
        total = np.zeros((len(histories), len(self._index)), dtype=np.float32)
        for part in self._weighted(histories):
            total += part
        return total

    def fused_and_cold(self, histories: Sequence[History]) -> tuple[np.ndarray, np.ndarray]:
        """The fused scores, and every item's score as a cold item before the offset: the
        fused score with component ``cold_component`` replaced by the text scorer's."""
        parts = self._weighted(histories)
        fused = np.zeros((len(histories), len(self._index)), dtype=np.float32)
        for part in parts:
            fused += part
        weight = self.weights[self.cold_component]
        return fused, fused - parts[self.cold_component] + weight * self._text_z(histories)

    def _text_z(self, histories: Sequence[History]) -> np.ndarray:
        if self._text is None:
            if self._cold_text is None:
                raise ValueError("this fusion has no text scorer for cold items")
            self._text = self._cold_text()
        return standardise(self._text.score(histories), history_masks(self._index, histories))

    def score(self, histories: Sequence[History]) -> np.ndarray:
        if self.cold_offset is None or self._cold_text is None or not self.cold.any():
            return self.fused(histories)
        fused, cold = self.fused_and_cold(histories)
        fused[:, self.cold] = cold[:, self.cold] + self.cold_offset
        return fused


@dataclass
class FusionChoice:
    """What :func:`tune_fusion` picked, and every candidate it measured on validation."""

    variant: str
    weight: float  # weight of the first component; the second gets 1 - weight
    valid: dict[str, float]
    tried: list[dict[str, float | str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"variant": self.variant, "weight": self.weight, "valid": self.valid,
                "tried": self.tried}


TUNING_CHUNK = 256
"""Validation cases scored at once while tuning: memory is O(chunk x catalog), whatever
the number of users."""


def _chunks(n: int, size: int) -> range:
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, not {size}")
    return range(0, n, size)


def _z(scorer: Scorer, histories: Sequence[History], masks: Sequence[Sequence[int]]) -> np.ndarray:
    return standardise(np.asarray(scorer.score(histories), dtype=np.float32), masks)


def tune_fusion(
    split: LeaveOneOutSplit,
    base: Scorer,
    variants: Mapping[str, Callable[[], Scorer]],
    *,
    weights: Sequence[float] = tuple(np.round(np.linspace(0, 1, 21), 2)),
    metric: str = "ndcg@10",
    fit_base: bool = False,
    chunk_size: int = TUNING_CHUNK,
    max_cases: int | None = None,
    seed: int = 0,
) -> FusionChoice:
    """Pick (variant, weight) maximising validation ``metric`` for w·base + (1-w)·variant.

    ``base`` is scored as it is (a trained model) unless ``fit_base``; every variant is built
    by its factory and fitted on ``split.train``. Only the validation cases are scored, in
    chunks of ``chunk_size``: per chunk each component is scored and standardised once, every
    candidate is fused and ranked, and only its metric sums are kept. ``max_cases`` caps the
    validation cases (a seeded sample); None scores them all.
    """
    _, histories, targets = split.cases("valid")
    if (keep := sample_cases(len(histories), max_cases, seed)) is not None:
        histories, targets = [histories[k] for k in keep], [targets[k] for k in keep]
    index = split.dataset.item_index
    target_idx = np.array([index[t] for t in targets], dtype=np.int64)
    train = split.train  # built once: the property copies every history
    if fit_base:
        base.fit(train)
    others: dict[str, Scorer] = {}
    for name, make in variants.items():
        others[name] = make()
        others[name].fit(train)
    if not others:
        raise ValueError("tune_fusion needs at least one variant")
    sums = {(name, float(w)): MetricSums() for name in others for w in weights}
    for lo in _chunks(len(histories), chunk_size):
        batch = list(histories[lo : lo + chunk_size])
        masks = history_masks(index, batch)
        chunk_targets = target_idx[lo : lo + chunk_size]
        base_z = _z(base, batch, masks)
        for name, other in others.items():
            other_z = _z(other, batch, masks)
            for w in weights:
                fused = w * base_z + (1 - w) * other_z
                sums[name, float(w)].add(target_ranks(fused, masks, chunk_targets))
    tried: list[dict[str, float | str]] = []
    best: tuple[float, str, float, dict[str, float]] | None = None
    for (name, w), candidate in sums.items():
        metrics = candidate.means()
        tried.append({"variant": name, "weight": w, "recall@10": metrics["recall@10"],
                      "ndcg@10": metrics["ndcg@10"], "recall@50": metrics["recall@50"]})
        if best is None or metrics[metric] > best[0]:
            best = (metrics[metric], name, w, metrics)
    assert best is not None
    return FusionChoice(variant=best[1], weight=best[2], valid=best[3], tried=tried)


@dataclass
class ColdChoice:
    """What :func:`tune_cold_offset` picked; ``offset`` None leaves cold items at the floor."""

    offset: float | None
    valid: dict[str, float]  # every validation case scored
    valid_cold: dict[str, float]  # the cases whose target is a cold item
    n_cases: int
    n_cold_cases: int
    n_cold_items: int
    tried: list[dict[str, float | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"cold_offset": self.offset, "cold_valid": self.valid,
                "cold_valid_cold_targets": self.valid_cold, "cold_n_cases": self.n_cases,
                "cold_n_cold_cases": self.n_cold_cases, "cold_n_items": self.n_cold_items,
                "cold_tried": self.tried}


def tune_cold_offset(
    split: LeaveOneOutSplit,
    fusion: FusionScorer,
    *,
    offsets: Sequence[float] = COLD_OFFSETS,
    metric: str = "ndcg@50",
    max_cases: int | None = None,
    seed: int = 0,
    chunk_size: int = TUNING_CHUNK,
) -> ColdChoice:
    """Pick the cold items' offset that maximises validation ``metric``.

    ``fusion`` is fitted on ``split.train``; its cold items are those no training history
    contains (a :class:`~recagent.protocol.split.ColdStartSplit` holds some out). The
    metric is over all validation cases, warm and cold targets together, so what cold items
    gain is paid for with what warm ones lose. It is NDCG@50 by default: the retriever hands
    50 candidates on, and on ML-100K's cold split NDCG@10 only saw the cost (cold items
    rarely reach the top 10) and kept them at the floor. Leaving them there (``None``) is a
    candidate and wins ties, as does the lower of two offsets. ``max_cases`` caps the
    validation cases scored (a seeded sample), since the text side encodes every history;
    the default scores them all: on Amazon's cold split a sample of 1,000 picked offset 0
    (cold R@50 0.021), all 8,442 picked 0.25 (0.061), at a 262 s one-off cost. Cases are
    scored ``chunk_size`` at a time, keeping only each offset's metric sums.
    """
    fusion.fit(split.train)
    _, histories, targets = split.cases("valid")
    if (keep := sample_cases(len(histories), max_cases, seed)) is not None:
        histories, targets = [histories[k] for k in keep], [targets[k] for k in keep]
    index = split.dataset.item_index
    target_idx = np.array([index[t] for t in targets], dtype=np.int64)
    cold = fusion.cold
    cold_cases = cold[target_idx]
    candidates = (None, *offsets)
    every = {offset: MetricSums() for offset in candidates}
    on_cold = {offset: MetricSums() for offset in candidates}
    for lo in _chunks(len(histories), chunk_size):
        batch = list(histories[lo : lo + chunk_size])
        masks = history_masks(index, batch)
        chunk_targets = target_idx[lo : lo + chunk_size]
        chunk_cold = cold_cases[lo : lo + chunk_size]
        fused, as_cold = fusion.fused_and_cold(batch)
        for offset in candidates:
            scores = fused.copy() if offset is None else np.where(cold[None, :], as_cold + offset,
                                                                  fused)
            ranks = target_ranks(scores, masks, chunk_targets)
            every[offset].add(ranks)
            on_cold[offset].add(ranks[chunk_cold])
    tried: list[dict[str, float | None]] = []
    best: tuple[float, float | None, dict[str, float], dict[str, float]] | None = None
    for offset in candidates:
        all_cases = every[offset].means()
        cold_only = on_cold[offset].means() if cold_cases.any() else {}
        tried.append({"offset": offset, **{k: all_cases[k] for k in _SHOWN},
                      **{f"cold_{k}": cold_only[k] for k in _SHOWN if cold_only}})
        if best is None or all_cases[metric] > best[0]:
            best = (all_cases[metric], offset, all_cases, cold_only)
    assert best is not None
    return ColdChoice(offset=best[1], valid=best[2], valid_cold=best[3], n_cases=len(targets),
                      n_cold_cases=int(cold_cases.sum()), n_cold_items=int(cold.sum()), tried=tried)


_SHOWN = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


class FusionRetriever(Retriever):
    """The fused model in the product: ``recommend(history, k)`` with evidence.

    The z-scores need every item's score, so the fused scores are computed exactly over the
    catalog (one query-tower pass, a product with the item vectors and one sparse kNN row:
    about a millisecond for the few thousand items here), not from an approximate index.
    Evidence is the history items closest to each pick in ``item_vectors`` (the seqrec item
    space). ``fit`` fits the kNN side (in the product: on every history); items that none of
    those histories contains are its cold items, scored through the text retriever, which is
    only built (MiniLM loaded) when the catalog has such an item.
    """

    name = "fusion"

    def __init__(self, dataset: Dataset, scorer: FusionScorer, item_vectors: np.ndarray, *,
                 evidence_per_item: int = 3) -> None:
        self.dataset = dataset
        self.scorer = scorer
        self._unit_vectors = unit_rows(item_vectors)
        self.evidence_per_item = evidence_per_item

    @property
    def evidence_vectors(self) -> np.ndarray:
        return self._unit_vectors

    def fit(self, train: Sequence[History]) -> None:
        self.scorer.fit(train)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        """Every item's fused score for each history."""
        return self.scorer.score(histories)
