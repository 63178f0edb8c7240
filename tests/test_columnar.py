"""A dataset saved in columns reads back equal: items, interactions in order, name, flags."""

import numpy as np

from recagent.catalog import Dataset, Interaction, Item
from recagent.catalog.columnar import load_columns, save_columns


def test_a_saved_dataset_reads_back_equal(tmp_path):
    items = [Item("a", "Tent", category=("Outdoors",), brand="X", price=9.5,
                  attributes={"tier": "mid"}), Item("b", "Lamp")]
    inters = [Interaction("u2", "b", 5.0, None, "click"), Interaction("u1", "a", 1.5, 4.0, None),
              Interaction("u2", "a", 2.0, 4.0, "purchase"), Interaction("u1", "b", 1.5)]
    ds = Dataset("shop", items, inters, has_timestamps=False, user_aliases={"7": "u1"})
    back = load_columns(save_columns(ds, tmp_path / "snap"))
    assert back.name == "shop" and back.has_timestamps is False
    assert back.user_aliases == {"7": "u1"}
    assert list(back.items.values()) == items
    assert back.interactions == inters
    assert back.histories == ds.histories  # ties keep the source order
    assert back.interactions[1].rating is back.interactions[2].rating  # one object per value


def test_a_generated_shop_round_trips(tmp_path, tiny_shop):
    back = load_columns(save_columns(tiny_shop, tmp_path))
    assert back.interactions == tiny_shop.interactions
    assert list(back.items.values()) == list(tiny_shop.items.values())
    arrays = np.load(tmp_path / "interactions.npz")
    assert arrays["item"].dtype == np.int32 and len(arrays["item"]) == len(tiny_shop.interactions)
