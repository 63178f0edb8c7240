"""The product's fusion: seqrec + item-kNN (text for cold items), its choice tuned on
validation once per checkpoint and kept next to it in ``fusion.json``.

``fusion.json`` holds ``model_sha`` (:func:`~recagent.retrieval.seq_retriever.checkpoint_hash`
of the checkpoint it was tuned for), the kNN ``variant``, the seqrec ``weight``, the
validation figures, and the cold items' ``cold_offset`` with how it was tuned and the text
scorer it was tuned for (``cold_text``; an offset tuned for another is tuned again).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History, Scorer
from recagent.protocol.split import (
    ColdStartSplit,
    LeaveOneOutSplit,
    cold_start_split,
    leave_one_out,
)
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.fusion import FusionRetriever, FusionScorer, tune_cold_offset, tune_fusion
from recagent.retrieval.registry import RetrieverContext
from recagent.retrieval.seq_retriever import checkpoint_hash, load_seq_scorer
from recagent.retrieval.text_profile import PROFILE_DECAY, TextProfile

__all__ = ["CHOICE_FILE", "COLD_TEXT", "KNN_VARIANTS", "cold_text_scorer", "fusion_is_tuned", "fusion_retriever", "tuned_fusion"]

CHOICE_FILE = "fusion.json"
COLD_TEXT = f"text-profile-d{PROFILE_DECAY}"
"""The scorer of cold items that ``cold_offset`` is tuned for: the history's text profile
from the item text embeddings (:class:`TextProfile`). On the demo shop's cold-start
validation it matches MiniLM over the history text (NDCG@50 0.0907 vs 0.0905; cold targets
0.0540 vs 0.0533) and serving needs no encoder pass (docs/scale.md)."""

# The co-occurrence side of fusion: plain item-kNN and recency-weighted variants.
KNN_VARIANTS: dict[str, dict[str, float]] = {
    f"itemknn-n{n}-d{d}": {"neighbours": n, "recency_decay": d}
    for n in (20, 100) for d in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
}


def _stored_choice(directory: Path) -> dict[str, Any]:
    """``fusion.json`` when it was tuned for the checkpoint in ``directory``, else {}."""
    cache = directory / CHOICE_FILE
    if not cache.is_file() or not (directory / "model.pt").is_file():
        return {}
    choice = json.loads(cache.read_text())
    if choice.get("model_sha") != checkpoint_hash(directory):
        return {}
    if choice.get("cold_text") != COLD_TEXT:  # an offset tuned for another text scorer
        choice = {k: v for k, v in choice.items() if not k.startswith("cold")}
    return choice


def fusion_is_tuned(directory: Path) -> bool:
    """Whether the checkpoint in ``directory`` comes with its current fusion choice."""
    return bool(_stored_choice(directory))


def tuned_fusion(
    dataset: Dataset,
    directory: Path,
    text: Callable[[], Scorer],
    split: LeaveOneOutSplit | None = None,
    *,
    cold_cases: int | None = None,
    max_cases: int | None = None,
) -> FusionScorer:
    """seqrec fused with item-kNN, and ``text`` (a factory of the text scorer,
    :func:`cold_text_scorer`) for cold items;
    the kNN variant, weight and cold offset are tuned on VALIDATION.

    The choice is cached next to the checkpoint (``fusion.json``) under the checkpoint's
    hash, so it is tuned once per trained model. ``split`` defaults to leave-one-out of
    ``dataset``; the cold-start report passes its own. The cold offset is tuned on a split
    with cold items: that one, or else the cold-start split of the dataset (10% of items held
    out of the kNN fit and scored by seqrec without their ID embeddings). A ``fusion.json``
    written before cold items had an offset keeps its variant and weight and gets one.
    ``cold_cases`` caps the validation cases the cold offset is tuned on (a seeded sample:
    each encodes its history's text); None tunes it on all of them. ``max_cases`` caps the
    cases the variant and weight are tuned on (a seeded sample; None: all).
    """
    seq = load_seq_scorer(directory, dataset)
    split = split or leave_one_out(dataset)
    choice = _stored_choice(directory)
    if not choice:
        fits: dict[int, Any] = {}
        tuned = tune_fusion(split, seq, {n: partial(_SharedFitKNN, fits, dataset, **kw)
                                         for n, kw in KNN_VARIANTS.items()},
                            max_cases=max_cases)
        choice = {"model_sha": checkpoint_hash(directory), "components": ["seqrec", tuned.variant],
                  "tuned_on": "validation stage", **tuned.to_dict()}
    knn = ItemKNN(dataset, **KNN_VARIANTS[choice["variant"]])
    fusion = FusionScorer([seq, knn], [choice["weight"], 1 - choice["weight"]], cold_text=text)
    if "cold_offset" not in choice:
        cold_split, tuning, how = split, fusion, "in no training history"
        if not isinstance(split, ColdStartSplit):
            # Hold 10% of the items out of the kNN side and, by their ID embeddings, out of
            # seqrec: they then score as new items would (text only).
            cold_split, blind = cold_start_split(dataset), load_seq_scorer(directory, dataset)
            blind.forget(cold_split.cold_items)
            tuning = FusionScorer([blind, knn], fusion.weights, cold_text=text)
            how = "held out of the kNN fit and of seqrec's ID embeddings (cold-start split)"
        cold = tune_cold_offset(cold_split, tuning, max_cases=cold_cases)
        choice |= {"cold_tuned_on": f"validation stage; {cold.n_cold_items} of "
                                    f"{len(dataset.items)} items {how}",
                   "cold_text": COLD_TEXT, **cold.to_dict()}
        (directory / CHOICE_FILE).write_text(json.dumps(choice, indent=2) + "\n")
    fusion.cold_offset = choice["cold_offset"]
    return fusion


class _SharedFitKNN(ItemKNN):
    """Item-kNN for one tuning run: the variants of one neighbour count share one fit (the
    recency decay changes only the scoring), so 16 variants cost 2 fits, not 16."""

    def __init__(self, fits: dict[int, Any], dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._fits = fits

    def fit(self, train: Sequence[History]) -> None:
        if self.neighbours not in self._fits:
            super().fit(train)
            self._fits[self.neighbours] = self.similarity
        self.similarity = self._fits[self.neighbours]


def fusion_retriever(ctx: RetrieverContext) -> FusionRetriever:
    """The registry's "fusion": the tuned fusion of the checkpoint ``ctx.checkpoint``."""
    scorer = tuned_fusion(ctx.dataset, ctx.checkpoint, partial(cold_text_scorer, ctx), ctx.split)
    return FusionRetriever(ctx.dataset, scorer, scorer.components[0].item_vectors())


def cold_text_scorer(ctx: RetrieverContext) -> TextProfile:
    """Fusion's scorer of cold items, from the item-text index (built or checked first)."""
    index = ctx.text_index()
    index.build()
    return TextProfile(ctx.dataset, index.embeddings, recency_decay=PROFILE_DECAY)
