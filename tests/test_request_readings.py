"""The readings the request-reading adapter learns (evals/request_readings.py,
evals/reader_training.py): what each label becomes, and that every reading of the read sets'
demo-shop requests is a JSON value the agent's schema admits and, read back through
``parse_with_llm`` and ``combine``, gives the labels."""

from __future__ import annotations

import json

import jsonschema
import pytest

from recagent.evals.requests import Request


def test_each_kind_of_label_becomes_the_prompts_price_kind():
    from recagent.evals.request_readings import reading_of

    def price(**labels):
        return reading_of(Request("demo", "m", categories=("Tents",), **labels), has_prices=True)["price"]

    assert price(max_price=50) == {"kind": "under", "amount": 50, "amount2": None}
    assert price(min_price=150.5) == {"kind": "over", "amount": 150.5, "amount2": None}
    assert price(min_price=30, max_price=60) == {"kind": "between", "amount": 30, "amount2": 60}
    assert price(around=100) == {"kind": "around", "amount": 100, "amount2": None}
    assert price(price_level="mid-range") == {"kind": "mid-range", "amount": None, "amount2": None}
    assert price() == {"kind": "none", "amount": None, "amount2": None}
    reading = reading_of(Request("demo", "m", categories=("Tents", "Camping"), brands=("Alpenglow",),
                                 exclude_brands=("Pinecrest",)), has_prices=True)
    assert list(reading) == ["product", "exclude_categories", "price", "brands", "exclude_brands",
                             "in_stock_only"]  # the schema's order, which the grammar keeps
    assert reading["product"] == "Tents" and reading["brands"] == ["Alpenglow"]


def test_a_catalog_without_prices_or_categories_gets_no_price_and_the_keywords_as_said():
    from recagent.evals.request_readings import reading_of

    r = Request("amazon", "heat shrink tubing to tidy up wiring", keywords=("tubing", "heat", "shrink"))
    reading = reading_of(r, has_prices=False)
    assert "price" not in reading
    assert reading["product"] == "heat shrink tubing"


@pytest.fixture(scope="module")
def demo_readings():
    from recagent.evals.reader_training import READ_SETS, reading_set

    s = reading_set(READ_SETS)
    s.requests = [r for r in s.requests if r.dataset == "demo"]
    return s


def test_every_demo_reading_is_one_the_agents_schema_admits(demo_readings):
    from recagent.agent.constraints import constraint_schema
    from recagent.evals.reader_training import reading_examples

    parser = demo_readings.parsers["demo"]
    examples = reading_examples(demo_readings)
    assert len(examples) == len(demo_readings.requests) > 250
    for r, ex in zip(demo_readings.requests, examples, strict=True):
        assert ex.as_json and r.message in ex.prompt
        jsonschema.validate(json.loads(ex.answer), constraint_schema(parser, r.message))


class _Labels:
    """An LLM whose reading of each message is its labels' (the readings' ceiling)."""

    structured_output = True
    adapters = frozenset()

    def __init__(self, s) -> None:
        from recagent.evals.request_readings import reading_of

        self.by_prompt = {s.prompt(r): reading_of(r, has_prices=True) for r in s.requests}

    def generate_json(self, prompt, schema, *, max_tokens=256, adapter=None):
        return self.by_prompt[prompt]


def test_the_labels_reading_read_back_as_the_agent_does_gives_the_labels(demo_readings):
    from recagent.evals.reader_training import validate

    got = validate(_Labels(demo_readings), demo_readings)
    # The rules win where they found something, so a perfect reading cannot mend every
    # request; it must mend nearly all (the rules alone read about 60% exactly).
    assert got["share"] >= 0.9, got


class _Says:
    """An LLM that names one product, whatever the message."""

    structured_output = True
    adapters = frozenset()

    def __init__(self, product: str) -> None:
        self.product = product

    def generate_json(self, prompt, schema, *, max_tokens=256, adapter=None):
        return {"product": self.product, "exclude_categories": [],
                "price": {"kind": "none", "amount": None, "amount2": None},
                "brands": [], "exclude_brands": [], "in_stock_only": False}


def test_the_models_own_product_words_are_kept_only_where_they_find_a_labelled_category(demo_readings):
    from recagent.evals.reader_training import own_products, reading_examples

    decided = own_products(_Says("dog leash"), demo_readings)
    assert set(decided) == {r.message for r in demo_readings.requests}
    own = {m: p for m, p in decided.items() if p is not None}
    # A second run reads only the messages the first did not decide.
    first = demo_readings.requests[0].message
    assert own_products(_Says("tent"), demo_readings, known={k: v for k, v in decided.items() if k != first}) \
        == {**decided, first: own_products(_Says("tent"), demo_readings)[first]}
    by_message = {r.message: r for r in demo_readings.requests}
    leashes = [m for m, r in by_message.items() if "Dog Leashes" in r.categories]
    assert leashes and all(own.get(m) == "dog leash" for m in leashes)
    for m in own:  # elsewhere only where the rules alone found the labelled category
        r = by_message[m]
        assert "Dog Leashes" in r.categories or not r.categories or \
            set(demo_readings.parsers["demo"].parse(m).categories) & set(r.categories)
    missed = next(m for m, r in by_message.items() if r.categories and m not in own)
    examples = {ex.prompt: json.loads(ex.answer) for ex in reading_examples(demo_readings, own)}
    assert examples[demo_readings.prompt(by_message[leashes[0]])]["product"] == "dog leash"
    assert examples[demo_readings.prompt(by_message[missed])]["product"] == by_message[missed].categories[0]
