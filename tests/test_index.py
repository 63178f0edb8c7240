"""The Chroma index: incremental and resumable builds, aligned embeddings, filtered search."""

from dataclasses import replace

import numpy as np
import pytest

from recagent.catalog import Dataset, IndexUnavailable
from recagent.retrieval.index import ItemIndex, open_chroma
from recagent.retrieval.text import item_text


def test_build_resumes_after_a_crash_and_is_incremental(tmp_path, tiny_shop, encoder):
    client = open_chroma(tmp_path / "store")
    index = ItemIndex(client, tiny_shop, encoder, batch_size=64)
    with pytest.raises(RuntimeError, match="simulated crash"):
        index.build(_fail_after_batches=2)
    assert len(index.stored_hashes()) == 128  # finished batches survived
    assert not index.is_current()
    with pytest.raises(IndexUnavailable, match="run `recagent index`"):
        index.embeddings()

    stats = index.build()
    assert stats.encoded == len(tiny_shop.items) - 128 and stats.deleted == 0
    assert index.is_current()
    assert index.build().encoded == 0

    # A new process (client) over the same directory sees the same, complete index.
    reopened = ItemIndex(open_chroma(tmp_path / "store"), tiny_shop, encoder)
    assert reopened.is_current()


def test_changed_and_removed_items_are_re_encoded_and_deleted(tmp_path, tiny_shop, encoder):
    client = open_chroma(tmp_path / "store")
    ItemIndex(client, tiny_shop, encoder).build()
    items = list(tiny_shop.items.values())
    changed = replace(items[0], title=items[0].title + " (2026 edition)")
    removed = items[1].item_id
    smaller = Dataset(
        tiny_shop.name,
        [changed, *items[2:]],
        [x for x in tiny_shop.interactions if x.item_id != removed],
    )
    stats = ItemIndex(client, smaller, encoder).build()
    assert (stats.encoded, stats.deleted, stats.total) == (1, 1, len(items) - 1)


def test_embeddings_are_aligned_with_the_catalog(built_index, tiny_shop, encoder):
    matrix = built_index.embeddings()
    assert matrix.shape == (len(tiny_shop.items), encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    some = tiny_shop.item_ids[17]
    expected = encoder.encode([item_text(tiny_shop.items[some])])[0]
    # Same text, other batch: equal up to bf16 rounding, and no other row is as close.
    sims = matrix @ expected
    assert sims[tiny_shop.item_index[some]] > 0.999
    assert int(np.argmax(sims)) == tiny_shop.item_index[some]


def test_search_finds_the_item_itself_and_honours_filters(built_index, tiny_shop, encoder):
    item = tiny_shop.items[tiny_shop.item_ids[5]]
    query = encoder.encode([item_text(item)])
    hits = built_index.search(query, 5)[0]
    assert hits[0].item_id == item.item_id and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].metadata["brand"] == item.brand
    assert hits[0].metadata["category_path"] == " > ".join(item.category)
    cheap = built_index.search(query, 10, where={"price": {"$lt": 20.0}})[0]
    assert cheap and all(h.metadata["price"] < 20.0 for h in cheap)
    other = next(i for i in tiny_shop.items.values() if i.brand and i.brand != item.brand)
    branded = built_index.search(query, 10, where={"brand": other.brand})[0]
    assert branded and {h.metadata["brand"] for h in branded} == {other.brand}


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(IndexUnavailable, match="cannot reach the Chroma server"):
        open_chroma(url="http://127.0.0.1:9")


def test_an_index_of_an_earlier_version_gets_its_metadata_without_re_encoding(tmp_path, tiny_shop, encoder):
    items = list(tiny_shop.items.values())
    also = replace(items[0], also_in=("Board Games",))  # filed under one category, in two
    shop = Dataset(tiny_shop.name, [also, *items[1:]], tiny_shop.interactions)
    index = ItemIndex(open_chroma(tmp_path / "store"), shop, encoder)
    index.build()
    assert index.stored_metadata()[also.item_id]["categories"] == [*also.category, "Board Games"]
    # As an index built before `categories` was stored: the key missing, an old one left over.
    ids = list(shop.items)
    index.collection.update(ids=ids, metadatas=[{"categories": None, "old_key": "x"}] * len(ids))
    assert not index.is_current()
    stats = index.build()
    assert (stats.encoded, stats.refreshed) == (0, len(ids))
    assert index.is_current() and "old_key" not in index.stored_metadata()[ids[1]]
    query = encoder.encode([item_text(also)])
    hits = index.search(query, 3, where={"categories": {"$contains": "Board Games"}})[0]
    assert also.item_id in {h.item_id for h in hits}


def test_an_item_with_no_path_keeps_the_categories_it_is_also_in():
    from recagent.catalog.model import Item
    from recagent.retrieval.index import item_metadata

    assert item_metadata(Item("X", "Loose", also_in=("War",)), "h")["categories"] == ["War"]
    assert "categories" not in item_metadata(Item("Y", "Plain"), "h")
