"""Score fusion: a weighted sum of per-user normalised scores of several Scorers.

For each history, each component's scores are standardised over the items the user does
not have (z-score: (s - mean) / std over the candidates, so the items in the history, which
get masked anyway, do not move the scale), then combined as Σ_c w_c · z_c. The weights are
chosen on the VALIDATION stage only (:func:`tune_fusion`); the test stage never informs them.
:class:`FusionRetriever` serves the fused model in the product.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recagent.catalog.model import Dataset
from recagent.evals.metrics import metrics_from_ranks
from recagent.evals.split import LeaveOneOutSplit
from recagent.retrieval.index import SearchHit
from recagent.retrieval.retriever import PopularItems, Recommendation, with_evidence
from recagent.retrieval.scorer import History, Scorer

__all__ = ["FusionChoice", "FusionRetriever", "FusionScorer", "standardise", "tune_fusion"]


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
    """Σ_c w_c · standardise(component_c) over ``components``; ``fit`` fits every component."""

    def __init__(
        self,
        components: Sequence[Scorer],
        weights: Sequence[float],
        *,
        name: str = "fusion",
        fit_components: bool = True,
    ) -> None:
        if len(components) != len(weights) or not components:
            raise ValueError("fusion needs one weight per component, and at least one component")
        self.components = list(components)
        self.weights = [float(w) for w in weights]
        self.name = name
        self.fit_components = fit_components

    def fit(self, train: Sequence[History]) -> None:
        if self.fit_components:
            for component in self.components:
                component.fit(train)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        index = self.components[0].dataset.item_index  # type: ignore[attr-defined]
        masks = [[index[x.item_id] for x in h] for h in histories]
        total = np.zeros((len(histories), len(index)), dtype=np.float32)
        for component, weight in zip(self.components, self.weights, strict=True):
            if weight:
                total += weight * standardise(component.score(histories), masks)
        return total


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


def _ranks(fused: np.ndarray, masks: Sequence[Sequence[int]], targets: np.ndarray) -> np.ndarray:
    """1-based ranks of the targets (the harness's rule: masked history, ties by catalog order)."""
    fused = fused.copy()
    for r, masked in enumerate(masks):
        fused[r, list(masked)] = -np.inf
    rows = np.arange(len(targets))
    t = fused[rows, targets][:, None]
    before = np.arange(fused.shape[1])[None, :] < targets[:, None]
    ranks = 1 + (fused > t).sum(axis=1) + ((fused == t) & before).sum(axis=1)
    return np.where(np.isfinite(t[:, 0]), ranks, np.inf).astype(np.float64)


def tune_fusion(
    split: LeaveOneOutSplit,
    base: Scorer,
    variants: Mapping[str, Callable[[], Scorer]],
    *,
    weights: Sequence[float] = tuple(np.round(np.linspace(0, 1, 21), 2)),
    metric: str = "ndcg@10",
    fit_base: bool = False,
) -> FusionChoice:
    """Pick (variant, weight) maximising validation ``metric`` for w·base + (1-w)·variant.

    ``base`` is scored as it is (a trained model) unless ``fit_base``; every variant is built
    by its factory and fitted on ``split.train``. Only the validation cases are scored.
    """
    _, histories, targets = split.cases("valid")
    index = split.dataset.item_index
    masks = [[index[x.item_id] for x in h] for h in histories]
    target_idx = np.array([index[t] for t in targets], dtype=np.int64)
    if fit_base:
        base.fit(split.train)
    base_z = _score_all(base, histories, masks)
    tried: list[dict[str, float | str]] = []
    best: tuple[float, str, float, dict[str, float]] | None = None
    for name, make in variants.items():
        other = make()
        other.fit(split.train)
        other_z = _score_all(other, histories, masks)
        for w in weights:
            metrics = metrics_from_ranks(_ranks(w * base_z + (1 - w) * other_z, masks, target_idx))
            tried.append({"variant": name, "weight": float(w), "recall@10": metrics["recall@10"],
                          "ndcg@10": metrics["ndcg@10"], "recall@50": metrics["recall@50"]})
            if best is None or metrics[metric] > best[0]:
                best = (metrics[metric], name, float(w), metrics)
    assert best is not None, "tune_fusion needs at least one variant"
    return FusionChoice(variant=best[1], weight=best[2], valid=best[3], tried=tried)


def _score_all(scorer: Scorer, histories: Sequence[History], masks, batch: int = 512) -> np.ndarray:
    parts = []
    for lo in range(0, len(histories), batch):
        scores = np.asarray(scorer.score(list(histories[lo : lo + batch])), dtype=np.float32)
        parts.append(standardise(scores, masks[lo : lo + batch]))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class FusionRetriever:
    """The fused model in the product: ``recommend(history, k)`` with evidence.

    The z-scores need every item's score, so the fused scores are computed exactly over the
    catalog (one query-tower pass, a product with the item vectors and one sparse kNN row:
    about a millisecond for the few thousand items here), not from an approximate index.
    Evidence is the history items closest to each pick in ``item_vectors`` (the seqrec item
    space). The scorer must already be fitted (the kNN side on the histories it may use).
    """

    name = "fusion"

    def __init__(self, dataset: Dataset, scorer: FusionScorer, item_vectors: np.ndarray, *,
                 evidence_per_item: int = 3) -> None:
        self.dataset = dataset
        self.scorer = scorer
        norms = np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
        self._unit_vectors = item_vectors / norms
        self.evidence_per_item = evidence_per_item
        self._popular = PopularItems(dataset)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        """Every item's fused score for each history."""
        return self.scorer.score(histories)

    def recommend(self, history: History, k: int = 10) -> list[Recommendation]:
        """Top ``k`` unseen items by fused score; an empty history gets the popular items."""
        if not history:
            return self._popular.recommend(k)
        scores = self.scorer.score([history])[0]
        index = self.dataset.item_index
        scores[[index[x.item_id] for x in history]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        hits = [SearchHit(self.dataset.item_ids[i], float(scores[i]), {}) for i in top
                if np.isfinite(scores[i])]
        return with_evidence(self.dataset, history, hits, self._unit_vectors, k=k,
                             per_item=self.evidence_per_item)
