"""The harness on the real datasets reproduces outside figures for the cheap reference models."""

import pytest

from recagent.catalog.load import load_dataset
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import leave_one_out
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.popularity import Popularity

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    ("folder", "recall10", "ndcg10"),
    [
        ("ml-100k", 0.0859, 0.0449),  # outside computation of the same protocol
        ("amazon-scientific", 0.0315, 0.0180),
    ],
)
def test_popularity_matches_the_outside_computation(real_data_dir, folder, recall10, ndcg10):
    split = leave_one_out(load_dataset(real_data_dir / folder))
    popularity = evaluate_scorer(Popularity(split.dataset), split)
    assert popularity.metrics["recall@10"] == pytest.approx(recall10, abs=0.002)
    assert popularity.metrics["ndcg@10"] == pytest.approx(ndcg10, abs=0.002)
    itemknn = evaluate_scorer(ItemKNN(split.dataset), split)
    assert itemknn.metrics["recall@10"] > popularity.metrics["recall@10"]
    assert itemknn.metrics["ndcg@10"] > popularity.metrics["ndcg@10"]
