"""The built-in demo shop: deterministic, realistic, and with order-carried (complement) signal."""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from itertools import pairwise

import pytest

from recagent.catalog.demo_shop import (
    DEMO_SHOP_NAME,
    DemoShopConfig,
    generate_demo_shop,
    load_vocab,
)
from recagent.catalog.model import Dataset

SMALL = DemoShopConfig(n_users=300)
TIERS = ("budget", "mid", "premium")


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate_demo_shop(SMALL)


@pytest.fixture(scope="module")
def default_timed() -> tuple[Dataset, float]:
    start = time.perf_counter()
    ds = generate_demo_shop()
    return ds, time.perf_counter() - start


def _complements() -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    specs = load_vocab()["categories"]
    path_of = {s["key"]: tuple(s["path"]) for s in specs}
    return {tuple(s["path"]): {path_of[k] for k in s["next"]} for s in specs}


def _transitions(ds: Dataset):
    for hist in ds.histories.values():
        for a, b in pairwise(hist):
            yield ds.items[a.item_id], ds.items[b.item_id]


def _digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    for it in ds.items.values():
        h.update(
            repr(
                (
                    it.item_id,
                    it.title,
                    it.description,
                    it.category,
                    it.brand,
                    it.price,
                    sorted(it.attributes.items()),
                )
            ).encode()
        )
    for x in ds.interactions:
        h.update(repr((x.user_id, x.item_id, x.timestamp, x.rating, x.event)).encode())
    return h.hexdigest()


# --- determinism ---------------------------------------------------------------------------


def test_same_config_gives_identical_dataset(small: Dataset) -> None:
    again = generate_demo_shop(DemoShopConfig(n_users=300))
    assert again.name == small.name
    assert list(again.items.values()) == list(small.items.values())
    assert again.interactions == small.interactions


def test_different_seed_differs(small: Dataset) -> None:
    other = generate_demo_shop(DemoShopConfig(n_users=300, seed=8))
    assert other.name != small.name
    assert [i.title for i in other.items.values()] != [i.title for i in small.items.values()]
    assert other.interactions != small.interactions


def test_identical_across_processes_with_other_hash_seeds(small: Dataset) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from test_demo_shop import _digest, SMALL; "
        "from recagent.catalog.demo_shop import generate_demo_shop; "
        "print(_digest(generate_demo_shop(SMALL)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == _digest(small)


# --- sizes, names, configuration ----------------------------------------------------------


def test_default_config_size_name_and_speed(default_timed: tuple[Dataset, float]) -> None:
    ds, seconds = default_timed
    assert seconds < 10.0, f"default demo shop took {seconds:.2f}s"
    assert ds.name == DEMO_SHOP_NAME
    assert ds.has_timestamps
    assert 2500 <= len(ds.items) <= 3500
    assert len(ds.histories) == 3000
    assert 3000 * 8 <= len(ds.interactions) <= 3000 * 25
    # Every item is reachable: nearly all are bought by someone, with a long tail of rare ones.
    counts = Counter(x.item_id for x in ds.interactions)
    assert len(counts) >= 0.98 * len(ds.items)
    assert counts.most_common(1)[0][1] >= 20 * statistics.median(counts.values())


def test_small_config_sizes_and_name(small: Dataset) -> None:
    assert small.name == "demo-shop-s7-u300"
    assert len(small.histories) == 300
    lengths = [len(h) for h in small.histories.values()]
    assert min(lengths) >= 5 and max(lengths) <= 40
    assert statistics.median(lengths) < statistics.mean(lengths) < 25  # skewed toward short


def test_history_bounds_are_respected() -> None:
    ds = generate_demo_shop(
        DemoShopConfig(n_users=50, n_items=400, min_history=8, max_history=12, seed=3)
    )
    assert ds.name == "demo-shop-s3-u50-i400-h8-12"
    assert all(8 <= len(h) <= 12 for h in ds.histories.values())
    assert 300 <= len(ds.items) <= 500


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0},
        {"n_items": 10},
        {"min_history": 0},
        {"min_history": 9, "max_history": 8},
        {"n_items": 200, "max_history": 150},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DemoShopConfig(**kwargs)


# --- catalog --------------------------------------------------------------------------------


def test_categories_and_brands(small: Dataset) -> None:
    by_cat = defaultdict(list)
    for it in small.items.values():
        by_cat[it.category].append(it)
    assert 20 <= len(by_cat) <= 35
    assert all(len(path) == 3 for path in by_cat)
    assert len({path[0] for path in by_cat}) >= 8
    for path in (
        ("Electronics", "Cameras", "DSLR Cameras"),
        ("Electronics", "Camera Accessories", "Memory Cards"),
        ("Home", "Kitchen", "Coffee Makers"),
        ("Sports", "Running", "Running Shoes"),
    ):
        assert path in by_cat
    for path, items in by_cat.items():
        assert len(items) >= 20, path
        assert 4 <= len({it.brand for it in items}) <= 8, path
        assert {it.attributes["tier"] for it in items} == set(TIERS), path


def test_item_fields(small: Dataset) -> None:
    ids = list(small.items)
    assert ids == [f"P{i:05d}" for i in range(1, len(ids) + 1)]
    titles = [it.title for it in small.items.values()]
    assert len(set(titles)) == len(titles)
    for it in small.items.values():
        assert it.title.isascii() and it.description.isascii()
        assert it.brand and it.title.startswith(it.brand) or it.category[0] == "Books"
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", it.description)) <= 3, it.description
        assert not it.description[0].islower()
        assert all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in it.attributes.items()
        )
        assert it.attributes["tier"] in TIERS
        if "model" in it.attributes:
            assert it.attributes["model"] in it.title


def test_prices_are_plausible(small: Dataset) -> None:
    ranges = {tuple(s["path"]): s["price"][1:] for s in load_vocab()["categories"]}
    prices: dict[tuple[str, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for it in small.items.values():
        lo, hi = ranges[it.category]
        assert it.price is not None and 0 < lo <= it.price <= hi, (it.title, it.price)
        prices[it.category][it.attributes["tier"]].append(it.price)
    for path, by_tier in prices.items():
        med = {t: statistics.median(v) for t, v in by_tier.items()}
        assert med["budget"] < med["mid"] < med["premium"], path
        assert med["premium"] > 2 * med["budget"], path

    def median(leaf: str) -> float:
        return statistics.median(
            p for (_, _, c), t in prices.items() if c == leaf for v in t.values() for p in v
        )

    assert 300 < median("DSLR Cameras") < 2000
    assert 400 < median("Laptops") < 2500
    assert median("DSLR Cameras") > 10 * median("Memory Cards")
    assert 5 < median("Coffee Beans") < 40
    assert median("Coffee Makers") > 3 * median("Coffee Beans")


# --- histories ------------------------------------------------------------------------------


def test_users_and_histories(small: Dataset) -> None:
    assert small.users == [str(i) for i in range(1, 301)]
    for uid, hist in small.histories.items():
        assert len(hist) >= SMALL.min_history
        stamps = [x.timestamp for x in hist]
        assert all(a < b for a, b in pairwise(stamps)), uid
        assert 1_672_531_200 <= stamps[0] and stamps[-1] < 1_672_531_200 + 4 * 365 * 86_400
        assert len({x.item_id for x in hist}) == len(hist), f"user {uid} repeats an item"
        assert all(x.event == "purchase" for x in hist)
    gaps = [b.timestamp - a.timestamp for h in small.histories.values() for a, b in pairwise(h)]
    assert min(gaps) >= 3600 and statistics.median(gaps) < 14 * 86_400 < max(gaps)


def test_ratings(small: Dataset) -> None:
    ratings = [x.rating for x in small.interactions if x.rating is not None]
    assert 0.45 < len(ratings) / len(small.interactions) < 0.75
    assert set(ratings) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert statistics.mean(ratings) > 3.5
    assert Counter(ratings)[5.0] > Counter(ratings)[1.0] * 3


def test_every_category_is_bought(small: Dataset) -> None:
    bought = {small.items[x.item_id].category for x in small.interactions}
    assert bought == {it.category for it in small.items.values()}


# --- order signal ---------------------------------------------------------------------------


def test_next_purchase_is_often_a_complement(small: Dataset) -> None:
    comp = _complements()
    freq = Counter(small.items[x.item_id].category for x in small.interactions)
    total = sum(freq.values())
    hits = base = n = 0
    for a, b in _transitions(small):
        n += 1
        hits += b.category in comp[a.category]
        base += sum(freq[c] for c in comp[a.category]) / total
    rate, base_rate = hits / n, base / n
    assert rate > 0.45, rate
    assert rate > 5 * base_rate, (rate, base_rate)


def test_complements_are_not_text_neighbours(small: Dataset) -> None:
    """What follows an item is far more often a complement in another category than another
    item of the same category (what text similarity would propose)."""
    comp = _complements()
    other_cat_comp = same_cat = 0
    for a, b in _transitions(small):
        other_cat_comp += b.category in comp[a.category] and b.category != a.category
        same_cat += b.category == a.category
    assert other_cat_comp > 4 * same_cat, (other_cat_comp, same_cat)


def test_complements_follow_brand_or_tier(small: Dataset) -> None:
    """A complement is often of the brand or the price tier of the item just bought."""
    comp = _complements()
    brands_in = defaultdict(Counter)
    for it in small.items.values():
        brands_in[it.category][it.brand] += 1
    kept = same_brand = chance = n = 0
    for a, b in _transitions(small):
        if b.category in comp[a.category]:
            n += 1
            kept += a.brand == b.brand or a.attributes["tier"] == b.attributes["tier"]
            same_brand += a.brand == b.brand
            chance += brands_in[b.category][a.brand] / sum(brands_in[b.category].values())
    assert kept / n > 0.6, kept / n
    assert same_brand > 2.5 * chance, (same_brand / n, chance / n)


# --- many users at once ---------------------------------------------------------------------


def test_users_drawn_in_several_chunks_keep_their_ids_and_rules(monkeypatch) -> None:
    """Users are drawn CHUNK at a time: every chunk's users get their own ids, in order, and
    the rules (bounds, no repeats, time order) hold across chunk borders."""
    import recagent.catalog.demo_histories as drawing

    monkeypatch.setattr(drawing, "CHUNK", 64)
    ds = generate_demo_shop(DemoShopConfig(n_users=200, n_items=400, seed=11, max_history=15))
    assert ds.users == [str(i) for i in range(1, 201)]
    for uid, hist in ds.histories.items():
        assert 5 <= len(hist) <= 15, uid
        assert len({x.item_id for x in hist}) == len(hist), uid
        assert all(a.timestamp < b.timestamp for a, b in pairwise(hist)), uid
    # Chunks draw from one generator in turn: no two chunks repeat each other's histories.
    first = [x.item_id for x in ds.history("1")]
    assert first != [x.item_id for x in ds.history("65")]
    assert first != [x.item_id for x in ds.history("129")]


def test_a_large_catalog_keeps_every_category_and_the_complement_signal() -> None:
    ds = generate_demo_shop(DemoShopConfig(n_users=400, n_items=20_000, seed=5))
    assert 19_000 <= len(ds.items) <= 21_000
    assert {it.category for it in ds.items.values()} == {
        tuple(s["path"]) for s in load_vocab()["categories"]}
    comp = _complements()
    pairs = list(_transitions(ds))
    assert sum(b.category in comp[a.category] for a, b in pairs) / len(pairs) > 0.45
