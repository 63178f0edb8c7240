"""Score fusion: normalisation by hand, weighted sums, validation-only tuning."""

import numpy as np
import pytest

from recagent.catalog import Dataset, Interaction, Item
from recagent.protocol.split import leave_one_out
from recagent.retrieval.fusion import FusionScorer, standardise, tune_fusion


def test_standardise_ignores_masked_items_and_flat_rows():
    scores = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    z = standardise(scores, [[3], []])
    # Row 0: mean 2 and population std sqrt(2/3) over the unmasked 1, 2, 3.
    std = np.sqrt(2 / 3)
    assert z[0, :3] == pytest.approx([-1 / std, 0.0, 1 / std], rel=1e-5)
    assert z[0, 3] == pytest.approx(98 / std, rel=1e-5)
    assert (z[1] == 0).all()  # no preference: contributes nothing


class _Fixed:
    """A scorer returning one fixed row for every history."""

    def __init__(self, dataset, row, name="fixed"):
        self.dataset, self.row, self.name = dataset, np.asarray(row, dtype=np.float32), name
        self.fitted = False

    def fit(self, train):
        self.fitted = True

    def score(self, histories):
        return np.tile(self.row, (len(histories), 1))


def _dataset():
    items = [Item(f"i{k}", f"Item {k}") for k in range(4)]
    inters = [Interaction(f"u{u}", f"i{k}", t) for u in range(3) for t, k in enumerate((0, 1, 2))]
    return Dataset("tiny", items, inters)


def test_fusion_is_the_weighted_sum_of_standardised_scores():
    ds = _dataset()
    a = _Fixed(ds, [0.0, 1.0, 2.0, 3.0])
    b = _Fixed(ds, [3.0, 0.0, 0.0, 0.0])
    fusion = FusionScorer([a, b], [0.25, 0.75])
    fusion.fit([])
    assert a.fitted and b.fitted
    history = [[Interaction("u", "i0", 0)]]  # i0 masked from the normalisation
    got = fusion.score(history)
    expected = 0.25 * standardise(a.score(history), [[0]]) + 0.75 * standardise(b.score(history), [[0]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_tuning_uses_validation_targets_and_picks_the_informative_side():
    # Every user's sequence is i0, i1, i2: validation target i1, test target i2.
    ds = _dataset()
    split = leave_one_out(ds)
    points_at_valid = _Fixed(ds, [0.0, 5.0, 1.0, 0.0])  # ranks i1 first among unseen items
    points_at_test = _Fixed(ds, [0.0, 1.0, 5.0, 0.0])   # ranks i2 first: right on test only
    choice = tune_fusion(split, points_at_test, {"valid-side": lambda: points_at_valid},
                         weights=(0.0, 0.5, 1.0))
    assert choice.variant == "valid-side" and choice.weight == 0.0
    assert choice.valid["recall@10"] == 1.0 and choice.valid["ndcg@10"] == 1.0
    assert [t["weight"] for t in choice.tried] == [0.0, 0.5, 1.0]
    assert choice.tried[-1]["ndcg@10"] < 1.0  # the test-side scorer alone is worse on validation


# -- Cold items: no interactions in what the fusion was fit on -----------------------------

def _cold_dataset():
    """i0-i2 bought by every user; i3 and i4 never (cold)."""
    items = [Item(f"i{k}", f"Item {k}") for k in range(5)]
    inters = [Interaction(f"u{u}", f"i{k}", t) for u in range(3) for t, k in enumerate((0, 1, 2))]
    return Dataset("tiny-cold", items, inters)


def _cold_fusion(ds, offset, text_row=(0.0, 0.1, 0.2, -1.0, 3.0)):
    seq = _Fixed(ds, [0.0, 1.0, 2.0, 0.5, 0.2])
    knn = _Fixed(ds, [3.0, 0.0, 1.0, 0.0, 0.0])
    text = _Fixed(ds, list(text_row), name="text")
    return FusionScorer([seq, knn], [0.6, 0.4], cold_text=lambda: text, cold_offset=offset), text


def test_cold_items_swap_knn_for_text_plus_offset_and_warm_items_keep_the_fused_score():
    ds = _cold_dataset()
    fusion, text = _cold_fusion(ds, offset=1.5)
    fusion.fit(list(ds.histories.values()))
    assert fusion.cold.tolist() == [False, False, False, True, True]
    history = [[Interaction("u", "i0", 0)]]
    got = fusion.score(history)
    today = FusionScorer(fusion.components, fusion.weights)  # no cold side: the old fusion
    today.fit(list(ds.histories.values()))
    np.testing.assert_array_equal(got[:, :3], today.score(history)[:, :3])
    seq_z = standardise(fusion.components[0].score(history), [[0]])
    text_z = standardise(text.score(history), [[0]])  # in the place of item-kNN's z
    np.testing.assert_allclose(got[:, 3:], (0.6 * seq_z + 0.4 * text_z)[:, 3:] + 1.5, rtol=1e-6)


def test_without_an_offset_or_a_cold_item_fusion_scores_as_before():
    ds = _cold_dataset()
    history = [[Interaction("u", "i0", 0)]]
    off, _ = _cold_fusion(ds, offset=None)
    off.fit(list(ds.histories.values()))
    np.testing.assert_array_equal(off.score(history), off.fused(history))
    calls = []
    warm, _ = _cold_fusion(ds, offset=2.0)
    warm._cold_text = lambda: calls.append(1)  # must never be built: nothing is cold
    warm.fit([[Interaction("u", f"i{k}", k) for k in range(5)]])
    assert not warm.cold.any()
    np.testing.assert_array_equal(warm.score(history), warm.fused(history))
    assert not calls


def test_fusion_retriever_recommends_a_cold_item_whose_text_matches():
    from recagent.retrieval.fusion import FusionRetriever

    ds = _cold_dataset()
    history = [Interaction("u", "i0", 0)]
    for offset, top in ((None, "i2"), (2.0, "i4")):
        fusion, _ = _cold_fusion(ds, offset=offset)
        fusion.fit(list(ds.histories.values()))
        recs = FusionRetriever(ds, fusion, np.eye(5, dtype=np.float32)).recommend(history, 2)
        assert recs[0].item_id == top
        assert "i3" not in {r.item_id for r in recs}  # cold, but its text is far from i0


def test_cold_offset_tuning_uses_validation_cold_targets():
    from recagent.retrieval.fusion import COLD_OFFSETS, tune_cold_offset

    # u0-u3 buy i0, i1, i2, i3 (validation target i2, cold: training keeps only i0, i1);
    # w buys i4, i5, i0, i1 (validation target i0, warm). The text side ranks i2 first.
    items = [Item(f"i{k}", f"Item {k}") for k in range(6)]
    inters = [Interaction(f"u{u}", f"i{k}", t) for u in range(4) for t, k in enumerate(range(4))]
    inters += [Interaction("w", f"i{k}", t) for t, k in enumerate((4, 5, 0, 1))]
    ds = Dataset("tiny-cold-valid", items, inters)
    split = leave_one_out(ds)
    fusion = FusionScorer([_Fixed(ds, [1.0, 0.0, 0.0, 0.0, 2.0, 1.0])], [1.0],
                          cold_text=lambda: _Fixed(ds, [0.0, 0.0, 5.0, 1.0, 0.0, 0.0]))
    choice = tune_cold_offset(split, fusion)
    assert fusion.cold.tolist() == [False, False, True, True, False, False]
    assert (choice.n_cases, choice.n_cold_cases, choice.n_cold_items) == (5, 4, 2)
    assert choice.tried[0]["offset"] is None and len(choice.tried) == len(COLD_OFFSETS) + 1
    floor = choice.tried[0]
    assert floor["cold_ndcg@10"] == 0.5  # third, after the warm i4 and i5
    assert choice.offset is not None
    best = max(t["ndcg@50"] for t in choice.tried)  # NDCG@50 over every validation case
    assert choice.valid["ndcg@50"] == best > floor["ndcg@50"]
    assert choice.valid_cold["ndcg@10"] == 1.0  # i2 now first for every cold case
    assert choice.offset == min(t["offset"] for t in choice.tried[1:]
                                if t["ndcg@50"] == best)  # ties: the lowest offset


def test_cold_offset_tuning_keeps_the_floor_when_cold_items_only_cost():
    from recagent.retrieval.fusion import tune_cold_offset

    # u0-u2 buy i0-i3 and w buys i2, i3, i0, i1, so training sees i0-i3; i4 is never bought
    # (cold) and its text matches everything: showing it can only push warm targets down.
    items = [Item(f"i{k}", f"Item {k}") for k in range(5)]
    inters = [Interaction(f"u{u}", f"i{k}", t) for u in range(3) for t, k in enumerate(range(4))]
    inters += [Interaction("w", f"i{k}", t) for t, k in enumerate((2, 3, 0, 1))]
    ds = Dataset("tiny-cold-floor", items, inters)
    fusion = FusionScorer([_Fixed(ds, [1.0, 0.0, 3.0, 0.0, 0.0])], [1.0],
                          cold_text=lambda: _Fixed(ds, [0.0, 0.0, 0.0, 0.0, 9.0]))
    choice = tune_cold_offset(leave_one_out(ds), fusion)
    assert fusion.cold.tolist() == [False, False, False, False, True]
    assert choice.n_cold_cases == 0 and choice.valid_cold == {}
    assert choice.offset is None and choice.valid["ndcg@50"] == 1.0
    assert choice.tried[-1]["ndcg@50"] < 1.0  # a high offset puts i4 first


# -- Tuning streams over users: the same choice as scoring every case at once --------------

def _full_matrix_fusion(split, base, variants, weights):
    """The pre-streaming tune_fusion: every validation case x the catalog, per component."""
    from recagent.protocol.metrics import metrics_from_ranks
    from recagent.protocol.ranking import history_masks, target_ranks

    _, histories, targets = split.cases("valid")
    index = split.dataset.item_index
    masks = history_masks(index, histories)
    target_idx = np.array([index[t] for t in targets])
    base_z = standardise(base.score(histories), masks)
    out = []
    for name, make in variants.items():
        other = make()
        other.fit(split.train)
        other_z = standardise(other.score(histories), masks)
        for w in weights:
            ranks = target_ranks(w * base_z + (1 - w) * other_z, masks, target_idx)
            out.append((name, float(w), metrics_from_ranks(ranks)))
    return out


def _small_shop():
    from recagent.catalog.demo_shop import DemoShopConfig, generate_demo_shop

    return generate_demo_shop(DemoShopConfig(n_users=150, n_items=200, max_history=12))


def test_chunked_fusion_tuning_matches_the_full_matrix():
    from recagent.retrieval.cooccurrence import ItemKNN
    from recagent.retrieval.popularity import Popularity

    ds = _small_shop()
    split = leave_one_out(ds)
    base = ItemKNN(ds, neighbours=5)
    base.fit(split.train)
    variants = {"pop": lambda: Popularity(ds),
                "knn-d0.5": lambda: ItemKNN(ds, neighbours=20, recency_decay=0.5)}
    weights = (0.0, 0.3, 0.6, 1.0)
    reference = _full_matrix_fusion(split, base, variants, weights)
    best = max(reference, key=lambda r: r[2]["ndcg@10"])  # first of equals wins, as in tuning
    for chunk in (7, 64, 10_000):  # several chunks, uneven last one, one chunk
        choice = tune_fusion(split, base, variants, weights=weights, chunk_size=chunk)
        assert (choice.variant, choice.weight) == best[:2]
        assert choice.valid == pytest.approx(best[2], abs=1e-6)
        assert len(choice.tried) == len(reference)
        for tried, (name, w, metrics) in zip(choice.tried, reference, strict=True):
            assert (tried["variant"], tried["weight"]) == (name, w)
            assert tried["ndcg@10"] == pytest.approx(metrics["ndcg@10"], abs=1e-6)
            assert tried["recall@50"] == pytest.approx(metrics["recall@50"], abs=1e-6)
    assert len({round(r[2]["ndcg@10"], 9) for r in reference}) > 2  # the candidates differ


def test_chunked_cold_offset_tuning_matches_the_full_matrix():
    from recagent.protocol.metrics import metrics_from_ranks
    from recagent.protocol.ranking import history_masks, target_ranks
    from recagent.protocol.split import cold_start_split
    from recagent.retrieval.cooccurrence import ItemKNN
    from recagent.retrieval.fusion import COLD_OFFSETS, tune_cold_offset
    from recagent.retrieval.popularity import Popularity

    ds = _small_shop()
    split = cold_start_split(ds, fraction=0.2)
    seen_all = ItemKNN(ds, neighbours=20)  # the "text" side: it knows the cold items too
    seen_all.fit(list(ds.histories.values()))

    def fusion():
        return FusionScorer([ItemKNN(ds, neighbours=20), Popularity(ds)], [0.7, 0.3],
                            cold_text=lambda: seen_all)

    # The reference: every validation case at once, as before streaming.
    ref = fusion()
    ref.fit(split.train)
    _, histories, targets = split.cases("valid")
    index = ds.item_index
    masks = history_masks(index, histories)
    target_idx = np.array([index[t] for t in targets])
    fused, as_cold = ref.fused_and_cold(histories)
    cold_cases = ref.cold[target_idx]
    assert cold_cases.any() and not cold_cases.all()
    expected = []
    for offset in (None, *COLD_OFFSETS):
        scores = fused.copy() if offset is None else np.where(ref.cold, as_cold + offset, fused)
        ranks = target_ranks(scores, masks, target_idx)
        expected.append((offset, metrics_from_ranks(ranks), metrics_from_ranks(ranks[cold_cases])))
    best = max(expected, key=lambda e: e[1]["ndcg@50"])
    for chunk in (9, 10_000):
        choice = tune_cold_offset(split, fusion(), chunk_size=chunk)
        assert choice.offset == best[0]
        assert choice.valid == pytest.approx(best[1], abs=1e-6)
        assert choice.valid_cold == pytest.approx(best[2], abs=1e-6)
        for tried, (offset, every, on_cold) in zip(choice.tried, expected, strict=True):
            assert tried["offset"] == offset
            assert tried["ndcg@50"] == pytest.approx(every["ndcg@50"], abs=1e-6)
            assert tried["cold_recall@50"] == pytest.approx(on_cold["recall@50"], abs=1e-6)
    assert len({round(e[1]["ndcg@50"], 9) for e in expected}) > 2


def test_tuning_rejects_a_chunk_size_below_one():
    ds = _dataset()
    with pytest.raises(ValueError, match="chunk_size"):
        tune_fusion(leave_one_out(ds), _Fixed(ds, [0, 1, 2, 3]),
                    {"x": lambda: _Fixed(ds, [0, 1, 2, 3])}, chunk_size=0)
