import numpy as np
import pytest

from recagent.catalog import Dataset, Interaction, Item
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import leave_one_out
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.popularity import Popularity


def _dataset():
    items = [Item(f"i{n}", f"Item {n}") for n in range(6)]
    seqs = {
        "a": ["i0", "i1", "i2", "i3"],
        "b": ["i1", "i2", "i4"],
        "c": ["i5", "i0"],  # too short to evaluate
    }
    inters = [Interaction(u, i, t) for u, seq in seqs.items() for t, i in enumerate(seq)]
    return Dataset("toy", items, list(reversed(inters)))  # file order must not matter


def test_leave_one_out_holds_out_last_two_by_time():
    split = leave_one_out(_dataset())
    assert set(split.users) == {"a", "b"}
    assert split.n_train_only_users == 1
    train = {tuple(x.item_id for x in h) for h in split.train}
    assert train == {("i0", "i1"), ("i1",), ("i5", "i0")}
    users, histories, targets = split.cases("test")
    by_user = dict(zip(users, zip(histories, targets)))
    assert [x.item_id for x in by_user["a"][0]] == ["i0", "i1", "i2"] and by_user["a"][1] == "i3"
    users, histories, targets = split.cases("valid")
    by_user = dict(zip(users, zip(histories, targets)))
    assert [x.item_id for x in by_user["b"][0]] == ["i1"] and by_user["b"][1] == "i2"
    with pytest.raises(ValueError):
        split.cases("train")


def test_popularity_never_sees_held_out_items():
    ds = _dataset()
    pop = Popularity(ds)
    pop.fit(leave_one_out(ds).train)
    # Training counts: i0 x2 (a, c), i1 x2 (a, b), i5 x1; i2, i3, i4 only held out.
    assert list(pop.counts) == [2, 2, 0, 0, 0, 1]


def test_harness_hand_computed_popularity_ranks():
    ds = _dataset()
    result = evaluate_scorer(Popularity(ds), leave_one_out(ds), ks=(1, 2))
    # a: history i0,i1,i2 masked; remaining i3(0) i4(0) i5(1): ranking i5, i3, i4 -> i3 rank 2.
    # b: history i1,i2 masked; remaining i0(2) i3(0) i4(0) i5(1) -> i4 rank 4.
    assert result.metrics["recall@1"] == 0.0
    assert result.metrics["recall@2"] == 0.5
    assert result.metrics["mrr"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert result.metrics["ndcg@2"] == pytest.approx((1 / np.log2(3)) / 2)


def test_itemknn_uses_cooccurrence():
    items = [Item(f"i{n}", f"Item {n}") for n in range(4)]
    inters = []
    for u in range(5):  # everyone who has i0 also has i1
        inters += [Interaction(f"u{u}", "i0", 0), Interaction(f"u{u}", "i1", 1)]
    inters += [Interaction("x", "i2", 0), Interaction("x", "i3", 1)]
    ds = Dataset("co", items, inters)
    knn = ItemKNN(ds)
    knn.fit([ds.histories[u] for u in ds.users])
    scores = knn.score([[Interaction("q", "i0", 0)]])[0]
    assert scores.argmax() == 1 and scores[1] == pytest.approx(1.0)
    assert scores[2] == scores[3] == 0


def test_sample_cases_is_seeded_sorted_and_only_below_the_total():
    from recagent.protocol.split import sample_cases

    assert sample_cases(10, None) is None and sample_cases(10, 10) is None
    keep = sample_cases(1000, 50, seed=1)
    assert len(keep) == 50 == len(set(keep.tolist())) and list(keep) == sorted(keep)
    assert list(keep) == list(sample_cases(1000, 50, seed=1))
    assert list(keep) != list(sample_cases(1000, 50, seed=2))
    assert list(keep) != list(range(50))  # a sample of all cases, not the first ones
    with pytest.raises(ValueError):
        sample_cases(10, 0)
