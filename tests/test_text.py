from recagent.catalog import Dataset, Interaction, Item
from recagent.retrieval.text import history_text, item_text, recency_phrase

DAY = 86_400


def _dataset(has_timestamps=True):
    items = [
        Item("c1", "Kestrel K-350 DSLR Camera", "24MP sensor.", ("Electronics", "Cameras"), "Kestrel", 499.0,
             {"tier": "premium"}),
        Item("m1", "Nordlicht 128GB SD Card", "", ("Electronics", "Memory Cards"), "Nordlicht", 19.5),
        Item("t1", "Plain Tripod"),
    ]
    inters = [
        Interaction("u", "c1", 0 * DAY, rating=5.0),
        Interaction("u", "m1", 3 * DAY),
        Interaction("u", "t1", 40 * DAY, rating=3.5),
    ]
    return Dataset("toy", items, inters, has_timestamps=has_timestamps)


def test_item_text_has_all_known_fields_on_one_line():
    ds = _dataset()
    text = item_text(ds.items["c1"])
    assert "\n" not in text and "  " not in text
    for part in ["Kestrel K-350 DSLR Camera", "Electronics > Cameras", "Brand: Kestrel",
                 "Price: $499.00", "Tier: premium", "24MP sensor."]:
        assert part in text
    bare = item_text(ds.items["t1"])
    assert bare == "Plain Tripod."


def test_history_text_newest_first_with_ratings_and_recency():
    ds = _dataset()
    text = history_text(ds, ds.histories["u"], count_tokens=lambda s: len(s.split()), budget=1000)
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines[0].startswith("- Plain Tripod") and "rated 3.5/5" in lines[0]
    assert "most recent" in lines[0]
    assert lines[1].startswith("- Nordlicht 128GB SD Card (Memory Cards)")
    assert "5 weeks earlier" in lines[1]
    assert "rated 5/5" in lines[2] and "months earlier" not in lines[2]


def test_history_text_without_timestamps_has_no_recency():
    ds = _dataset(has_timestamps=False)
    text = history_text(ds, ds.histories["u"], count_tokens=lambda s: len(s.split()), budget=1000)
    assert "earlier" not in text and "most recent" not in text


def test_history_text_fits_budget_keeping_newest():
    ds = _dataset()
    count = lambda s: len(s.split())
    full = history_text(ds, ds.histories["u"], count_tokens=count, budget=1000)
    budget = count(full) - 1
    cut = history_text(ds, ds.histories["u"], count_tokens=count, budget=budget)
    assert count(cut) <= budget
    assert "Plain Tripod" in cut  # newest kept
    assert "Kestrel" not in cut  # oldest dropped
    assert "earlier items" in cut
    # Even a budget too small for one entry keeps the newest item.
    tiny = history_text(ds, ds.histories["u"], count_tokens=count, budget=1)
    assert "Plain Tripod" in tiny and "Nordlicht" not in tiny


def test_empty_history_and_recency_phrases():
    ds = _dataset()
    assert history_text(ds, [], count_tokens=len, budget=10) == "No history yet."
    assert recency_phrase(3600) == "same day as the latest"
    assert recency_phrase(DAY) == "1 day earlier"
    assert recency_phrase(400 * DAY) == "13 months earlier"
    assert recency_phrase(800 * DAY) == "2 years earlier"
