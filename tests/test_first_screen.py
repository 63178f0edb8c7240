"""The first screen: complements, not near-duplicates. ``recommend`` fills at most 3 of 10
places from one category (re-ordering, not filtering), and the exact top-n it starts from is
the stable sort's."""

from __future__ import annotations

import numpy as np
import pytest

from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.protocol.ranking import top_indices
from recagent.retrieval.diversity import max_per_category, spread_categories


def test_a_full_category_waits_and_fills_only_what_others_cannot():
    ranked = ["p1", "p2", "p3", "p4", "n1", "p5", "w1", None]
    cat = {"p": "pens", "n": "notebooks", "w": "watches"}

    def category(x):
        return None if x is None else cat[x[0]]

    assert spread_categories(ranked, category, 5, 0.4) == ["p1", "p2", "n1", "w1", None]
    # too few others: the held-back pens fill the rest, best first
    assert spread_categories(ranked[:5], category, 5, 0.4) == ["p1", "p2", "n1", "p3", "p4"]
    assert spread_categories(iter(ranked), category, 3, 1.0) == ["p1", "p2", "p3"]  # no cap
    assert [max_per_category(k, 0.3) for k in (1, 3, 5, 10, 50)] == [1, 1, 2, 3, 15]
    with pytest.raises(ValueError):
        max_per_category(10, 0)


def test_top_indices_is_the_stable_sort_prefix_even_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 6, size=rng.integers(1, 60)).astype(np.float32)
        scores[rng.random(len(scores)) < 0.2] = -np.inf
        for n in (0, 1, 3, 10, 100):
            expected = np.argsort(-scores, kind="stable")[:n]
            np.testing.assert_array_equal(top_indices(scores, n), expected)


def test_the_default_first_screen_is_not_near_duplicates_of_the_newest_item(tiny_shop, tiny_shop_dir,
                                                                            encoder, tmp_path):
    """No checkpoint: cooc-text. For each user, at most 3 of the top 10 share the leaf
    category of the newest history item; score order alone puts more there for some."""
    rt = Runtime(Settings(home=tmp_path, data=tiny_shop_dir, llm="none"))
    rt.__dict__["encoder"] = encoder
    model = rt.recommender("auto")
    assert model.name == "cooc-text"
    model.prepare()
    users = [u for u in tiny_shop.users if len(tiny_shop.histories[u]) >= 3][:40]

    def same_as_newest(user: str) -> int:
        history = tiny_shop.histories[user]
        newest = tiny_shop.items[history[-1].item_id].category[-1]
        recs = model.recommend(history, 10)
        assert len(recs) == 10
        return sum(tiny_shop.items[r.item_id].category[-1] == newest for r in recs)

    spread = {u: same_as_newest(u) for u in users}
    model.category_share = None  # the ranking as scored
    scored = {u: same_as_newest(u) for u in users}
    assert max(scored.values()) > 3, "the tiny shop no longer shows the problem"
    assert max(spread.values()) <= 3, spread
