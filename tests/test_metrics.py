"""Metrics against hand-computed values, and the rank fast path against the list functions."""

import math

import numpy as np
import pytest

from recagent.protocol.metrics import (
    coverage,
    metrics_from_ranks,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from recagent.protocol.ranking import rank_targets, top_columns


def test_hand_computed_single_relevant():
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"c"}, 2) == 0.0
    assert recall_at_k(ranked, {"c"}, 3) == 1.0
    assert precision_at_k(ranked, {"c"}, 3) == pytest.approx(1 / 3)
    # rank 3 -> 1/log2(4) = 0.5
    assert ndcg_at_k(ranked, {"c"}, 3) == pytest.approx(0.5)
    assert reciprocal_rank(ranked, {"c"}) == pytest.approx(1 / 3)


def test_hand_computed_multiple_relevant():
    ranked = ["a", "b", "c", "d", "e"]
    rel = {"a", "d", "z"}
    assert recall_at_k(ranked, rel, 5) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, rel, 5) == pytest.approx(2 / 5)
    dcg = 1 / math.log2(2) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rel, 5) == pytest.approx(dcg / idcg)
    assert reciprocal_rank(ranked, rel) == 1.0


def test_k_larger_than_list_and_empty_lists():
    assert recall_at_k(["a"], {"a"}, 50) == 1.0
    assert precision_at_k(["a"], {"a"}, 50) == pytest.approx(1 / 50)
    assert ndcg_at_k(["a"], {"a"}, 50) == 1.0
    assert recall_at_k([], {"a"}, 10) == 0.0
    assert ndcg_at_k([], {"a"}, 10) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), 10)
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a"}, 0)


def test_coverage():
    assert coverage([["a", "b"], ["b", "c"]], 6) == pytest.approx(0.5)
    assert coverage([], 3) == 0.0


def test_rank_fast_path_agrees_with_list_metrics():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)  # many ties
    masks = [list(rng.choice(n_items, size=3, replace=False)) for _ in range(n_users)]
    targets = [int(rng.integers(n_items)) for _ in range(n_users)]
    original = scores.copy()
    ranks, _ = rank_targets(scores, masks, targets)
    per_user = {"recall@10": [], "ndcg@10": [], "mrr": [], "precision@10": []}
    for u in range(n_users):
        # Reference ranking: sort by score desc, ties by item index; masked items removed.
        ranked = [i for i in sorted(range(n_items), key=lambda i: (-original[u, i], i))
                  if i not in masks[u]]
        rel = {targets[u]}
        per_user["recall@10"].append(recall_at_k(ranked, rel, 10))
        per_user["ndcg@10"].append(ndcg_at_k(ranked, rel, 10))
        per_user["mrr"].append(reciprocal_rank(ranked, rel))
        per_user["precision@10"].append(precision_at_k(ranked, rel, 10))
    fast = metrics_from_ranks(ranks, ks=(10,))
    for name, values in per_user.items():
        assert fast[name] == pytest.approx(np.mean(values)), name


def test_masked_target_is_a_miss_and_ties_break_by_catalog_order():
    scores = np.array([[1.0, 1.0, 1.0, 0.5]], dtype=np.float32)
    ranks, top = rank_targets(scores.copy(), [[]], [1])
    assert ranks[0] == 2  # item 0 ties and comes first in catalog order
    assert list(top[0][:3]) == [0, 1, 2]
    ranks, _ = rank_targets(scores.copy(), [[1]], [1])
    assert np.isinf(ranks[0])
    m = metrics_from_ranks(np.array([np.inf, 1.0]), ks=(10,))
    assert m["recall@10"] == 0.5 and m["mrr"] == 0.5


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError):
        rank_targets(np.array([[np.nan, 1.0]], dtype=np.float32), [[]], [0])


def test_metric_sums_over_chunks_equal_the_metrics_of_all_ranks():
    from recagent.protocol.metrics import MetricSums

    ranks = np.array([1, 3, 11, 51, np.inf, 2, 20, 7], dtype=np.float64)
    sums = MetricSums()
    for lo in range(0, len(ranks), 3):
        sums.add(ranks[lo : lo + 3])
    sums.add(np.array([]))  # an empty chunk changes nothing
    assert sums.n == len(ranks)
    assert sums.means() == pytest.approx(metrics_from_ranks(ranks), abs=1e-12)
    with pytest.raises(ValueError, match="no ranks"):
        MetricSums().means()


def test_top_columns_is_the_stable_full_sort_cut_at_k():
    rng = np.random.default_rng(0)
    for trial in range(200):
        rows, n = int(rng.integers(1, 30)), int(rng.integers(1, 200))
        k = int(rng.integers(0, n + 3))
        if trial % 3 == 0:  # many ties (item-kNN's zeros, popularity counts)
            scores = rng.integers(0, 4, (rows, n)).astype(np.float32)
        else:
            scores = rng.standard_normal((rows, n)).astype(np.float32)
        if trial % 3 == 2:  # mostly masked rows: fewer finite scores than k
            scores[rng.random((rows, n)) < 0.9] = -np.inf
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_columns(scores, k), expected)
