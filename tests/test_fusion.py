"""Score fusion: normalisation by hand, weighted sums, validation-only tuning."""

import numpy as np
import pytest

from recagent.catalog import Dataset, Interaction, Item
from recagent.evals.split import leave_one_out
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
