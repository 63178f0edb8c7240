"""The labelled request set and its scoring (evals/requests.py), without an LLM."""

from __future__ import annotations

from dataclasses import replace

from recagent.catalog.model import Dataset, Item
from recagent.tools.filter_items import Constraints


def test_the_request_set_loads_and_its_demo_labels_are_the_catalogs_spelling():
    from recagent.catalog.demo_shop import generate_demo_shop
    from recagent.evals.requests import check_labels, load_requests

    datasets, requests = load_requests()
    assert len(requests) >= 150 and set(datasets) == {r.dataset for r in requests}
    check_labels([r for r in requests if r.dataset == "demo"], generate_demo_shop())


def _shop() -> Dataset:
    items = [Item(f"P{i}", f"Tent {i}", category=("Outdoors", "Tents"), brand=b, price=p)
             for i, (b, p) in enumerate([("Alpenglow", 60.0), ("Pinecrest", 100.0), ("Alpenglow", 300.0)])]
    return Dataset("t", items, [])


def test_price_bounds_are_scored_against_the_labels():
    from recagent.evals.requests import Request, _Prices, score_fields

    prices = _Prices(_shop())
    around = Request("demo", "a tent around $100", around=100, categories=("Tents",))
    assert score_fields(around, Constraints(min_price=80, max_price=120), prices)["price"] == (2, 2, 2, 2)
    assert score_fields(around, Constraints(min_price=100), prices)["price"] == (1, 1, 2, 1)
    assert score_fields(around, Constraints(), prices)["price"] == (0, 0, 2, 0)
    cheap = Request("demo", "a cheap tent", price_level="cheap", categories=("Tents",))
    assert score_fields(cheap, Constraints(max_price=90), prices)["price"] == (1, 1, 1, 1)  # <= median 100
    assert score_fields(cheap, Constraints(max_price=200), prices)["price"] == (0, 1, 1, 0)
    got = score_fields(cheap, Constraints(categories=("Tents", "Camping")), prices)["categories"]
    assert got == (1, 2, 1, 1)
    # labelled categories are alternatives: naming two of them finds the request once
    either = Request("ml", "a scary thriller", categories=("Horror", "Thriller"))
    got = score_fields(either, Constraints(categories=("Horror", "Thriller")), prices)["categories"]
    assert got == (2, 2, 1, 1)


def test_a_request_is_read_right_when_every_field_is_and_nothing_more():
    from recagent.evals.requests import Request, _Prices, read_right

    prices = _Prices(_shop())
    ask = Request("demo", "a cheap tent, no Pinecrest", price_level="cheap", exclude_brands=("Pinecrest",),
                  categories=("Tents",))
    right = Constraints(max_price=90, exclude_brands=("Pinecrest",), categories=("Tents",))
    assert read_right(ask, right, prices)
    assert not read_right(ask, replace(right, max_price=200), prices)  # over the median
    assert not read_right(ask, replace(right, exclude_brands=()), prices)
    assert not read_right(ask, replace(right, brands=("Alpenglow",)), prices)  # more than asked
    assert not read_right(ask, replace(right, categories=("Tents", "Camping")), prices)


def test_a_shown_item_must_meet_every_labelled_field():
    from recagent.evals.requests import Request, _Prices, shown_meets

    shop = _shop()
    prices = _Prices(shop)
    ask = Request("demo", "a tent around $100, not Pinecrest", around=100, exclude_brands=("Pinecrest",),
                  categories=("Tents",))
    assert [shown_meets(ask, shop.items[i], prices) for i in ("P0", "P1", "P2")] == [False, False, False]
    ask = Request("demo", "a tent, no Pinecrest", exclude_brands=("Pinecrest",), categories=("Tents",))
    assert [shown_meets(ask, shop.items[i], prices) for i in ("P0", "P1", "P2")] == [True, False, True]


def test_the_ceiling_counts_what_the_catalog_could_show_one_per_title():
    from recagent.evals.requests import Request, _Prices, attainable

    parts = [Item(f"A{i}", "Anti-Seize Compound, 8 oz", category=("Lubricants",), brand="Loctite")
             for i in range(3)]  # one product under three ids
    parts += [Item("B0", "Copper Anti-Seize Paste", category=("Lubricants",), brand="Dynatex")]
    parts += [Item(f"C{i}", f"Lithium Grease {i}", category=("Lubricants",), brand="Loctite") for i in range(12)]
    shop = Dataset("parts", parts, [])
    prices = _Prices(shop)
    # two anti-seize titles among the 16 items, of which a list of 10 could show at most 2
    assert attainable(Request("amazon", "anti-seize", keywords=("seize",)), shop, prices) == (2, 10)
    # a brand the filter holds: Loctite's 13 items hold one anti-seize title
    assert attainable(Request("amazon", "Loctite anti-seize", brands=("Loctite",), keywords=("seize",)),
                      shop, prices) == (1, 10)
    # a product word counts at the start of a word, not inside one ("Diffused" holds no fuse)
    lamps = Dataset("lamps", [Item("L0", "5mm Diffused LED", category=("Lamps",)),
                              Item("F0", "Blade Fuses, 10 Pack", category=("Fuses",))], [])
    assert attainable(Request("amazon", "spare fuses", keywords=("fuse",)), lamps, _Prices(lamps)) == (1, 2)
    # what a filter can say in full is met by everything it leaves
    assert attainable(Request("amazon", "Dynatex", brands=("Dynatex",)), shop, prices) == (1, 1)


def test_the_held_out_set_loads_and_its_demo_labels_are_the_catalogs_spelling():
    from recagent.catalog.demo_shop import generate_demo_shop
    from recagent.evals.requests import REQUEST_SETS, check_labels, load_requests

    shop = generate_demo_shop()
    earlier = {r.message for r in load_requests()[1]}
    held_out = [name for name in REQUEST_SETS if name != "labelled"]
    assert held_out[-1] == "heldout27"
    for name in held_out:
        _, requests = load_requests(name)
        assert len(requests) >= 40, name
        check_labels([r for r in requests if r.dataset == "demo"], shop)
        if name == held_out[-1]:  # the newest set repeats no request of an earlier one
            assert not earlier & {r.message for r in requests}
        earlier |= {r.message for r in requests}
