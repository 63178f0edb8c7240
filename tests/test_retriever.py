"""History retrieval: excludes what the user has, explains with history items, falls back."""

import numpy as np
import pytest

from recagent.retrieval.base import Retriever
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.fusion import FusionRetriever
from recagent.retrieval.popularity import Popularity
from recagent.retrieval.registry import RETRIEVERS
from recagent.retrieval.retriever import HistoryRetriever
from recagent.retrieval.seq_retriever import SeqRetriever


def test_recommend_excludes_seen_and_grounds_evidence_in_history(retriever, tiny_shop):
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    seen = {x.item_id for x in history}
    recs = retriever.recommend(history, k=8)
    assert len(recs) == 8
    assert len({r.item_id for r in recs}) == 8
    assert not seen & {r.item_id for r in recs}
    assert all(r.item_id in tiny_shop.items for r in recs)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    for r in recs:
        assert r.title == tiny_shop.items[r.item_id].title
        assert 1 <= len(r.evidence) <= 3
        assert {e.item_id for e in r.evidence} <= seen
        assert r.evidence[0].title in r.explanation
        sims = [e.similarity for e in r.evidence]
        assert sims == sorted(sims, reverse=True)


def test_empty_history_gets_popular_items(retriever, tiny_shop):
    recs = retriever.recommend([], k=5)
    assert len(recs) == 5 and all(not r.evidence for r in recs)
    assert "Popular" in recs[0].explanation
    counts = {}
    for x in tiny_shop.interactions:
        counts[x.item_id] = counts.get(x.item_id, 0) + 1
    assert counts[recs[0].item_id] == max(counts.values())


def test_full_ranking_scores_match_the_query_and_item_vectors(retriever, tiny_shop):
    histories = [tiny_shop.histories[u] for u in tiny_shop.users[:3]]
    scores = retriever.score(histories)
    assert scores.shape == (3, len(tiny_shop.items))
    expected = retriever.query_vectors(histories) @ retriever.index.embeddings().T
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_history_text_respects_the_encoder_budget(tiny_shop, encoder, built_index):
    r = HistoryRetriever(tiny_shop, encoder, built_index, token_budget=64)
    longest = max(tiny_shop.histories.values(), key=len)
    text = r.history_texts([longest])[0]
    assert encoder.count_tokens(text) <= 64
    assert tiny_shop.items[longest[-1].item_id].title in text


class _Fixed(Retriever):
    """Every history gets the same scores: the base class's serving, seen in isolation."""

    name = "fixed"

    def __init__(self, dataset, row):
        self.dataset = dataset
        self.row = np.asarray(row, dtype=np.float32)

    def score(self, histories):
        return np.tile(self.row, (len(histories), 1))


def _twins():
    from recagent.catalog.model import Dataset, Interaction, Item

    items = [Item("a", "Chasing Amy (1997)"), Item("b", "chasing  AMY (1997)"),
             Item("c", "Fargo (1996)"), Item("d", "FARGO (1996)"), Item("e", "Heat (1995)")]
    return Dataset("twins", items, [Interaction("u", "a", 0.0), Interaction("v", "e", 0.0),
                                    Interaction("w", "e", 0.0)])


def test_recommendations_skip_a_title_already_had_or_already_picked():
    """ML-100K lists 18 films under two ids: one already had or already picked is skipped."""
    dataset = _twins()
    model = _Fixed(dataset, [0.0, 0.9, 0.8, 0.7, 0.6])
    picked = model.recommend(dataset.histories["u"], 3)
    assert [r.item_id for r in picked] == ["c", "e"]
    assert [r.score for r in picked] == pytest.approx([0.8, 0.6])
    assert all(not r.evidence and "Popular" in r.explanation for r in picked)  # no vectors


def test_exclusions_are_masked_and_an_empty_history_gets_popular_items():
    dataset = _twins()
    model = _Fixed(dataset, [0.0, 0.9, 0.8, 0.7, 0.6])
    assert [r.item_id for r in model.recommend(dataset.histories["u"], 3, exclude={"c"})] == ["d", "e"]
    popular = model.recommend([], 2)
    assert popular[0].item_id == "e" and popular[0].score == pytest.approx(2 / 3)
    assert [r.item_id for r in model.recommend([], 2, exclude={"e"})] == ["a", "b"]


def test_the_registry_builds_each_model_by_name(tiny_shop, tmp_path):
    from recagent.catalog.errors import RecAgentError
    from recagent.retrieval.registry import RetrieverContext

    def untouched():
        raise AssertionError("a factory touched what its model does not need")

    ctx = RetrieverContext(tiny_shop, untouched, untouched, tmp_path / "no-checkpoint")
    assert isinstance(RETRIEVERS.create("popularity", ctx), Popularity)
    assert isinstance(RETRIEVERS.create("itemknn", ctx), ItemKNN)
    for cls in (HistoryRetriever, SeqRetriever, FusionRetriever):
        assert issubclass(cls, Retriever)
    assert {"popularity", "itemknn", "text", "seqrec", "fusion"} <= set(RETRIEVERS.names(evaluates=True))
    assert "auto" in RETRIEVERS.names(serves=True) and "auto" not in RETRIEVERS.names(evaluates=True)
    with pytest.raises(RecAgentError, match="unknown model 'auto'; choose from popularity"):
        RETRIEVERS.create("auto", ctx, evaluates=True)
    with pytest.raises(RecAgentError, match="no trained seqrec"):
        RETRIEVERS.create("seqrec", ctx)
    with pytest.raises(ValueError, match="already registered"):
        RETRIEVERS.register("text", "x:y", help="")


def test_item_knn_recommends_with_its_neighbours_as_evidence(tiny_shop):
    knn = ItemKNN(tiny_shop)
    knn.fit(list(tiny_shop.histories.values()))
    history = tiny_shop.histories[tiny_shop.users[0]]
    seen = {x.item_id for x in history}
    recs = knn.recommend(history, 5)
    assert len(recs) == 5 and not {r.item_id for r in recs} & seen
    index = tiny_shop.item_index
    for r in recs:
        assert r.evidence and {e.item_id for e in r.evidence} <= seen
        top = r.evidence[0]
        assert top.similarity == pytest.approx(knn.similarity[index[top.item_id], index[r.item_id]])
        assert top.title in r.explanation


def test_cooc_text_ranks_what_is_bought_together_above_look_alikes(encoder, tmp_path):
    """Without a trained model, the default fuses item-kNN with text: a camera's buyers also
    bought a tripod, so the tripod outranks the cameras that merely read like the camera."""
    from recagent.catalog.model import Dataset, Interaction, Item
    from recagent.retrieval.cooc_text import CoocTextRetriever
    from recagent.retrieval.index import ItemIndex, open_chroma

    items = [Item("cam1", "Lumen X100 Mirrorless Camera", category=("Cameras",)),
             Item("cam2", "Lumen X200 Mirrorless Camera", category=("Cameras",)),
             Item("cam3", "Optix Z5 Mirrorless Camera Body", category=("Cameras",)),
             Item("pod", "Steady Aluminium Tripod, 150 cm", category=("Tripods",)),
             Item("sock", "Wool Hiking Socks", category=("Socks",))]
    interactions = []
    for u in range(12):  # every buyer of cam1 buys the tripod next; socks are bought alone
        interactions += [Interaction(f"u{u}", "cam1", 1.0), Interaction(f"u{u}", "pod", 2.0),
                         Interaction(f"u{u}", "sock", 3.0 + u)]
    dataset = Dataset("shop", items, interactions)
    index = ItemIndex(open_chroma(tmp_path / "chroma"), dataset, encoder)
    text = HistoryRetriever(dataset, encoder, index)
    model = CoocTextRetriever(dataset, index)
    model.prepare()
    model.fit(list(dataset.histories.values()))
    history = [Interaction("new", "cam1", 1.0)]
    assert text.recommend(history, 1)[0].item_id in {"cam2", "cam3"}  # text alone: look-alikes
    picks = model.recommend(history, 2)
    assert picks[0].item_id == "pod"
    assert picks[0].evidence[0].item_id == "cam1"  # evidence from the history, in text space


def test_the_default_without_a_checkpoint_is_cooc_text(tiny_shop_dir, tmp_path):
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings
    from recagent.retrieval.cooc_text import CoocTextRetriever

    model = Runtime(Settings(home=tmp_path, data=tiny_shop_dir)).recommender()
    assert isinstance(model, CoocTextRetriever) and model.name == "cooc-text"
    assert "cooc-text" in RETRIEVERS.names(serves=True, evaluates=True)
