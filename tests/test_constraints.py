"""The rule-based constraint parser, on the demo shop's real brands and categories."""

import pytest

from recagent.agent.constraints import ConstraintParser
from recagent.tools.filter_items import Constraints


@pytest.fixture(scope="module")
def parser(tiny_shop):
    return ConstraintParser(tiny_shop)


@pytest.fixture(scope="module")
def a_brand(tiny_shop):
    return min({i.brand for i in tiny_shop.items.values() if i.brand})


@pytest.mark.parametrize(
    ("message", "low", "high"),
    [
        ("something under $30", None, 30.0),
        ("below 25 dollars please", None, 25.0),
        ("$40 or less", None, 40.0),
        ("at least $100", 100.0, None),
        ("between $20 and $50", 20.0, 50.0),
        ("$50-$20", 20.0, 50.0),
        ("movies from 1995", None, None),  # a year, not a price
        ("show me more", None, None),
    ],
)
def test_prices(parser, message, low, high):
    c = parser.parse(message)
    assert (c.min_price, c.max_price) == (low, high)


def test_brand_exclusion_and_inclusion_need_a_catalog_brand(parser, a_brand):
    assert parser.parse(f"no {a_brand}").exclude_brands == (a_brand,)
    assert parser.parse(f"only {a_brand.lower()} please").brands == (a_brand,)
    # "no thanks" is not a brand: nothing is excluded, and the rest stays the query.
    c = parser.parse("no thanks, something for my desk")
    assert c.exclude_brands == () and c.brands == ()
    assert "desk" in c.query


def test_category_mentions_keep_the_most_specific(tiny_shop, parser):
    leaf = next(i.category for i in tiny_shop.items.values() if len(i.category) == 3)
    c = parser.parse(f"I need {leaf[-1].lower()}")
    assert leaf[-1] in c.categories
    assert parser.parse(f"no {leaf[-1].lower()}").exclude_categories == (leaf[-1],)


def test_more_like_refers_to_the_last_answer(parser):
    assert parser.parse("more like #2", last_shown=["A", "B", "C"]).like_item == "B"
    assert parser.parse("more like #9", last_shown=["A"]).like_item is None


def test_filler_is_not_a_query(parser):
    assert parser.parse("show me something please").query == ""
    assert parser.parse("a gel pen").query == "gel pen"


def test_constraints_merge_newer_wins():
    old = Constraints(max_price=30.0, brands=("Acme",))
    new = Constraints(max_price=50.0, exclude_brands=("acme",), categories=("Pens",))
    merged = old.merged(new)
    assert merged.max_price == 50.0
    assert merged.brands == () and merged.exclude_brands == ("acme",)
    assert merged.categories == ("Pens",)
    assert Constraints().merged(Constraints()).is_empty()
