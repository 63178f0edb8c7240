"""Wires the components one command needs: dataset → encoder → Chroma index → retriever.

Everything is built lazily, on first use, so a command only pays for what it touches.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property, partial
from pathlib import Path

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.catalog.load import load_dataset
from recagent.catalog.model import Dataset
from recagent.protocol.scorer import Scorer
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.encoder import TextEncoder
from recagent.retrieval.index import BuildStats, ItemIndex, open_chroma
from recagent.retrieval.popularity import Popularity
from recagent.retrieval.retriever import HistoryRetriever

__all__ = ["RETRIEVERS", "SCORERS", "Runtime"]


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def dataset(self) -> Dataset:
        return load_dataset(self.settings.data)

    @cached_property
    def encoder(self) -> TextEncoder:
        return TextEncoder(self.settings.encoder, dtype=self.settings.encoder_dtype)

    @cached_property
    def index(self) -> ItemIndex:
        client = open_chroma(self.settings.store, self.settings.chroma_url)
        return ItemIndex(client, self.dataset, self.encoder)

    def ensure_index(self, *, show_progress: bool = True) -> BuildStats:
        """Build or update the index (a no-op apart from a hash check when it is current)."""
        return self.index.build(show_progress=show_progress)

    @cached_property
    def retriever(self) -> HistoryRetriever:
        return HistoryRetriever(self.dataset, self.encoder, self.index)

    def seq_retriever(self, directory: Path | None = None):
        """The trained seqrec with its own Chroma collection (built or completed on first use)."""
        from recagent.retrieval.seq_retriever import SeqIndex, SeqRetriever

        directory = directory or self.model_dir("seqrec")
        scorer = self.seq_scorer(directory)
        client = open_chroma(self.settings.store, self.settings.chroma_url)
        return SeqRetriever(self.dataset, scorer, SeqIndex(client, self.dataset, scorer, directory))

    def recommender(self, kind: str = "auto"):
        """The retriever ``recommend`` uses: "fusion", "seqrec", "text", or "auto".

        "auto" picks the best this dataset has: fusion (seqrec + recency-weighted item-kNN,
        the model that beats the peers) when a trained seqrec checkpoint that fits the
        catalog comes with its fusion choice (``train-retriever`` tunes it), seqrec alone when
        the choice is missing, the text retriever when there is no checkpoint.
        """
        if kind not in RETRIEVERS:
            raise RecAgentError(f"retriever must be one of {', '.join(RETRIEVERS)}, not {kind!r}")
        if kind == "text":
            return self.retriever
        if kind == "auto" and not (self.model_dir("seqrec") / "model.pt").is_file():
            return self.retriever
        try:
            if kind == "fusion" or (kind == "auto" and self.fusion_is_tuned()):
                return self.fusion_retriever()
            return self.seq_retriever()
        except RecAgentError:
            if kind != "auto":
                raise
            return self.retriever  # e.g. a checkpoint of an older catalog

    def prepare_recommender(self, model, *, show_progress: bool = True) -> None:
        """Build or update the Chroma collection ``model`` searches (fusion scores exactly
        and needs none)."""
        from recagent.retrieval.seq_retriever import SeqRetriever

        if isinstance(model, HistoryRetriever):
            self.ensure_index(show_progress=show_progress)
        elif isinstance(model, SeqRetriever):
            model.index.build(show_progress=show_progress)

    def fusion_retriever(self, directory: Path | None = None):
        """The fused model for ``recommend``: the kNN side fitted on every history."""
        from recagent.retrieval.fusion import FusionRetriever

        scorer = self.fusion_scorer(directory)
        scorer.fit(list(self.dataset.histories.values()))
        return FusionRetriever(self.dataset, scorer, scorer.components[0].item_vectors())

    def fusion_is_tuned(self, directory: Path | None = None) -> bool:
        """Whether the checkpoint's fusion choice (``fusion.json``) is there and current."""
        directory = directory or self.model_dir("seqrec")
        cache = directory / "fusion.json"
        if not cache.is_file() or not (directory / "model.pt").is_file():
            return False
        return json.loads(cache.read_text()).get("model_sha") == _file_hash(directory / "model.pt")

    def model_dir(self, name: str = "seqrec") -> Path:
        """Where ``recagent train-retriever`` keeps the trained model of this dataset."""
        slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", self.dataset.name).strip("-") or "dataset"
        return self.settings.home / "models" / f"{slug}-{name}"

    def scorer(self, name: str) -> Scorer:
        """A ranking model by name, for the evaluation harness."""
        if name == "popularity":
            return Popularity(self.dataset)
        if name == "itemknn":
            return ItemKNN(self.dataset)
        if name == "text":
            self.ensure_index()
            return self.retriever
        if name == "seqrec":
            return self.seq_scorer()
        if name == "fusion":
            return self.fusion_scorer()
        raise RecAgentError(f"unknown model {name!r}; choose from {', '.join(SCORERS)}")

    def seq_scorer(self, directory: Path | None = None):
        """The trained seqrec model of this dataset (``directory`` overrides where it lives)."""
        from recagent.retrieval.seq_train import SeqScorer

        directory = directory or self.model_dir("seqrec")
        if not (directory / "model.pt").is_file():
            raise RecAgentError(
                f"no trained seqrec model for {self.dataset.name!r} in {directory}: "
                "run `recagent train-retriever` with the same --data first"
            )
        return SeqScorer.load(directory, self.dataset)

    def fusion_scorer(self, directory: Path | None = None, split=None) -> Scorer:
        """seqrec fused with item-kNN, and the text retriever for cold items; the kNN variant,
        weight and cold offset are tuned on VALIDATION.

        The choice is cached next to the checkpoint (``fusion.json``) under the checkpoint's
        hash, so it is tuned once per trained model. ``split`` defaults to leave-one-out of
        the dataset; the cold-start report passes its own. The cold offset is tuned on a split
        with cold items: that one, or else the cold-start split of the dataset (10% of items
        held out of the kNN fit and scored by seqrec without their ID embeddings). A
        ``fusion.json`` written before cold items had an offset keeps its variant and weight
        and gets one.
        """
        from recagent.protocol.split import ColdStartSplit, cold_start_split, leave_one_out
        from recagent.retrieval.fusion import FusionScorer, tune_cold_offset, tune_fusion

        directory = directory or self.model_dir("seqrec")
        seq = self.seq_scorer(directory)
        split = split or leave_one_out(self.dataset)
        key = _file_hash(directory / "model.pt")
        cache = directory / "fusion.json"
        choice = json.loads(cache.read_text()) if cache.is_file() else {}
        if choice.get("model_sha") != key:
            tuned = tune_fusion(split, seq, {n: partial(ItemKNN, self.dataset, **kw)
                                             for n, kw in KNN_VARIANTS.items()})
            choice = {"model_sha": key, "components": ["seqrec", tuned.variant],
                      "tuned_on": "validation stage", **tuned.to_dict()}
        knn = ItemKNN(self.dataset, **KNN_VARIANTS[choice["variant"]])
        fusion = FusionScorer([seq, knn], [choice["weight"], 1 - choice["weight"]],
                              cold_text=self._text_scorer)
        if "cold_offset" not in choice:
            cold_split, tuning, how = split, fusion, "in no training history"
            if not isinstance(split, ColdStartSplit):
                # Hold 10% of the items out of the kNN side and, by their ID embeddings, out
                # of seqrec: they then score as new items would (text only).
                cold_split, blind = cold_start_split(self.dataset), self.seq_scorer(directory)
                blind.forget(cold_split.cold_items)
                tuning = FusionScorer([blind, knn], fusion.weights, cold_text=self._text_scorer)
                how = "held out of the kNN fit and of seqrec's ID embeddings (cold-start split)"
            cold = tune_cold_offset(cold_split, tuning)
            choice |= {"cold_tuned_on": f"validation stage; {cold.n_cold_items} of "
                                        f"{len(self.dataset.items)} items {how}",
                       **cold.to_dict()}
            cache.write_text(json.dumps(choice, indent=2) + "\n")
        fusion.cold_offset = choice["cold_offset"]
        return fusion

    def _text_scorer(self) -> Scorer:
        """The text retriever as a scorer, its index current (fusion's side for cold items)."""
        self.ensure_index(show_progress=False)
        return self.retriever


# The co-occurrence side of fusion: plain item-kNN and recency-weighted variants.
KNN_VARIANTS: dict[str, dict[str, float]] = {
    f"itemknn-n{n}-d{d}": {"neighbours": n, "recency_decay": d}
    for n in (20, 100) for d in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
}


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


SCORERS = ("popularity", "itemknn", "text", "seqrec", "fusion")
RETRIEVERS = ("auto", "fusion", "seqrec", "text")
