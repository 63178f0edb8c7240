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
        ("a wireless mouse that won't break the bank, say 20 bucks max", None, 20.0),
        ("a coffee machine for under a hundred", None, 100.0),
        ("about thirty dollars", 24.0, 36.0),  # "around X": within 20%
        ("around $100 for my dad", 80.0, 120.0),
        ("between twenty and forty", 20.0, 40.0),
        ("twenty-five dollars tops", None, 25.0),
        ("a tent for two people", None, None),  # number words that are not a price
        ("about 2 pairs of socks", None, None),  # "about" without money
        ("a sturdy tripod, nothing over $80", None, 80.0),  # a negated minimum is a maximum
        ("not more than 50 dollars", None, 50.0),
    ],
)
def test_prices(parser, message, low, high):
    c = parser.parse(message)
    assert (c.min_price, c.max_price) == (low, high)


def test_amounts_in_words_become_digits_only_where_they_are_prices():
    from recagent.agent.price_words import spell_prices

    assert spell_prices("around two hundred and fifty dollars") == "around 250 dollars"
    assert spell_prices("under a grand") == "under 1000"
    assert spell_prices("the one with two lenses") == "the one with two lenses"


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
    assert parser.parse("what else do I need under $40").query == ""  # was the topic "do"
    assert parser.parse("do you have running shoes?").query == "running shoes"


def test_constraints_merge_newer_wins():
    old = Constraints(max_price=30.0, brands=("Acme",))
    new = Constraints(max_price=50.0, exclude_brands=("acme",), categories=("Pens",))
    merged = old.merged(new)
    assert merged.max_price == 50.0
    assert merged.brands == () and merged.exclude_brands == ("acme",)
    assert merged.categories == ("Pens",)
    assert Constraints().merged(Constraints()).is_empty()


def test_a_new_request_starts_a_new_topic_but_keeps_prices_and_brands():
    shoes = Constraints(max_price=60.0, exclude_brands=("Pacer",), categories=("Running Shoes",),
                        query="running shoes", like_item="P1")
    camera = shoes.merged(Constraints(query="something for my camera"))
    assert camera.categories == () and camera.like_item is None and camera.query == "something for my camera"
    assert camera.max_price == 60.0 and camera.exclude_brands == ("Pacer",)
    # A turn that only adds a constraint keeps the topic.
    cheaper = shoes.merged(Constraints(max_price=40.0))
    assert cheaper.categories == ("Running Shoes",) and cheaper.like_item == "P1"
    assert cheaper.max_price == 40.0
    assert cheaper.query == "running shoes"
    # "more like #2" is a new topic: the old request's words no longer describe it.
    like = shoes.merged(Constraints(like_item="P7"))
    assert like.like_item == "P7" and like.query == "" and like.categories == ()


def test_the_topic_line_is_said_of_an_item_only_when_it_shares_a_word_with_it():
    from recagent.catalog.model import Item

    asked = Constraints(max_price=30.0, query="a present for someone who loves cooking")
    cookbook = Item("B1", "Weeknight Cooking: 75 Recipes", category=("Books", "Cookbooks"), price=20.0)
    shampoo = Item("S1", "Moisturizing Shampoo, 16oz", category=("Beauty", "Shampoo"), price=9.0)
    topic = 'about "a present for someone who loves cooking"'
    assert asked.describe_for(cookbook) == ["price $30 or less", topic]
    assert asked.describe_for(shampoo) == ["price $30 or less"]
    cams = Constraints(query="cameras")
    assert cams.describe_for(Item("C1", "Optivo D-500 DSLR", category=("Electronics", "Cameras"))) == \
        ['about "cameras"']


class JsonLLM:
    """An LLM with structured output that returns a fixed JSON value (or raises)."""

    name = "json"
    serves_chat = False
    can_call_tools = False
    structured_output = True

    def __init__(self, value, adapters=()):
        self.value = value
        self.prompts = []
        self.adapters = frozenset(adapters)
        self.asked_with = []

    def generate_json(self, prompt, schema, *, adapter=None):
        self.prompts.append(prompt)
        self.asked_with.append(adapter)
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def _reply(**fields):
    base = {"product": "", "exclude_categories": [], "price": {"kind": "none", "amount": None, "amount2": None},
            "brands": [], "exclude_brands": [], "in_stock_only": False}
    return {**base, **fields}


def _leaf(parser) -> str:
    """A category at the last level of some item's path (what a product is called)."""
    return next(i.category[-1] for i in parser.dataset.items.values() if i.category)


def test_llm_constraints_are_kept_only_where_the_message_supports_them(parser, a_brand, tiny_shop):
    from recagent.agent.constraints import parse_with_llm

    category = _leaf(parser)
    message = f"I'd like something for less than 45 bucks, nothing by {a_brand}"
    llm = JsonLLM(_reply(product=category.lower(), price={"kind": "between", "amount": 10, "amount2": 45},
                         exclude_brands=[a_brand, "Imaginary Brand"], brands=["Acme Nonexistent"],
                         in_stock_only=True))
    got = parse_with_llm(llm, parser, message)
    assert got.min_price is None and got.max_price is None  # 10 is not written: invented
    assert got.exclude_brands == (a_brand,) and got.brands == ()  # only catalog brands it names
    assert got.categories == (category,)  # read from the product the model named
    assert got.in_stock_only is False  # the message says nothing about stock
    assert message in llm.prompts[0]
    under = parse_with_llm(JsonLLM(_reply(price={"kind": "under", "amount": 45, "amount2": None})),
                           parser, message)
    assert (under.min_price, under.max_price) == (None, 45.0)  # written in the message


@pytest.mark.parametrize(("kind", "amount", "expected"), [
    ("around", 100, (80.0, 120.0)), ("over", 100, (100.0, None)), ("between", 100, (None, None)),
    ("under", 99, (None, None)),  # 99 is not in the message
])
def test_price_kinds_become_bounds(parser, kind, amount, expected):
    got = parser.price_bounds({"kind": kind, "amount": amount, "amount2": None}, "about $100 please")
    assert got == expected


def test_vague_price_words_use_the_catalogs_own_prices(parser):
    category = _leaf(parser)
    prices = sorted(i.price for i in parser.dataset.items.values() if category in i.category and i.price)
    low, high = parser.price_bounds({"kind": "cheap"}, "something cheap", (category,))
    assert low is None and prices[0] <= high <= prices[len(prices) // 2]
    low, high = parser.price_bounds({"kind": "premium"}, "the best", (category,))
    assert high is None and prices[len(prices) // 2] <= low <= prices[-1]


def test_a_wanted_brand_after_a_negation_is_dropped(parser, a_brand):
    from recagent.agent.constraints import parse_with_llm

    message = f"shampoo that isn't from {a_brand}"
    got = parse_with_llm(JsonLLM(_reply(brands=[a_brand])), parser, message)
    assert got.brands == ()


def test_the_schema_offers_only_the_brands_the_message_names(parser, a_brand):
    from recagent.agent.constraints import constraint_schema

    named = constraint_schema(parser, f"nothing by {a_brand}")["properties"]
    assert named["exclude_brands"]["items"] == {"enum": [a_brand]}
    assert constraint_schema(parser, "anything")["properties"]["brands"]["maxItems"] == 0


@pytest.mark.parametrize("bad", [["not", "an", "object"], "text", 3])
def test_llm_constraints_that_are_not_an_object_are_a_tool_error(parser, bad):
    from recagent.agent.constraints import parse_with_llm
    from recagent.catalog.errors import ToolError

    with pytest.raises(ToolError, match="expected a JSON object"):
        parse_with_llm(JsonLLM(bad), parser, "under $30")


def test_the_agent_merges_llm_constraints_and_the_rules_win(tiny_shop, encoder, built_index, a_brand):
    from agent_support import make_toolbox

    from recagent.agent.agents import plan_agent
    from recagent.agent.session import Session
    from recagent.catalog.errors import ToolError

    def agent(llm):
        return plan_agent(make_toolbox(tiny_shop, encoder, built_index), llm, k=3,
                          explain_with_llm=False)

    # The rules read "under $30"; the LLM says 40 (also in the message) and excludes a brand.
    message = f"under $30, well maybe 40, and no {a_brand}"
    llm = JsonLLM(_reply(max_price=40, exclude_brands=[a_brand]))
    answer = agent(llm).turn(Session(user_id=None), message)
    assert answer.constraints.max_price == 30.0
    assert a_brand in answer.constraints.exclude_brands
    assert [c.tool for c in answer.trace][:2] == ["parse_constraints", "parse_constraints_llm"]
    # Broken JSON from the LLM: the rules' parse stands alone, and the trace says why.
    broken = agent(JsonLLM(ToolError("the LLM's JSON does not parse"))).turn(Session(user_id=None), message)
    assert broken.constraints.max_price == 30.0
    assert next(c for c in broken.trace if c.tool == "parse_constraints_llm").error
    # When the rules explain every word, the LLM has nothing to add and is not asked.
    quiet = JsonLLM(_reply(max_price=40))
    answer = agent(quiet).turn(Session(user_id=None), f"under $30, no {a_brand} please")
    assert quiet.prompts == [] and answer.constraints.max_price == 30.0
    assert "parse_constraints_llm" not in [c.tool for c in answer.trace]
    # The request-reading adapter reads where the LLM has it, the model alone elsewhere.
    assert llm.asked_with == [None]
    adapted = JsonLLM(_reply(exclude_brands=[a_brand]), adapters={"reader", "explainer"})
    agent(adapted).turn(Session(user_id=None), message)
    assert adapted.asked_with == ["reader"]


def test_combine_lets_the_llm_add_but_never_override():
    from recagent.agent.constraints import combine

    rules = Constraints(max_price=50.0, exclude_brands=("Nikon",), query="camera")
    # A weak model read "under $50" as a minimum too, and wants the excluded brand.
    llm = Constraints(min_price=50.0, max_price=80.0, brands=("Nikon",), categories=("Cameras",))
    got = combine(rules, llm)
    assert (got.min_price, got.max_price) == (None, 50.0)
    assert got.exclude_brands == ("Nikon",) and got.brands == ()
    assert got.categories == ("Cameras",) and got.query == "camera"
    # With no price from the rules, a consistent LLM bound is taken; an inverted one is not.
    assert combine(Constraints(), Constraints(max_price=20.0)).max_price == 20.0
    assert combine(Constraints(), Constraints(min_price=30.0, max_price=20.0)).max_price is None
    # The LLM's categories (read from intent) only when the rules found none: adding one to
    # the rules' would widen the request.
    shoes = Constraints(categories=("Running Shoes",))
    assert combine(shoes, Constraints(categories=("Running Socks",))).categories == ("Running Shoes",)


def test_a_category_named_inside_a_longer_one_is_not_meant(tiny_shop):
    from recagent.catalog.model import Dataset, Item

    items = [Item("D1", "Squeaky Rubber Bone", category=("Pets", "Dogs", "Dog Toys")),
             Item("D2", "Grain-Free Kibble", category=("Pets", "Dogs", "Dog Food")),
             Item("C1", "Sling Bag", category=("Cameras", "Camera Bags"))]
    parser = ConstraintParser(Dataset("pets", items, []))
    assert parser.parse("dog toys under $20").categories == ("Dog Toys",)
    assert parser.parse("camera bags").categories == ("Camera Bags",)
    assert set(parser.parse("cameras and dog food").categories) == {"Cameras", "Dog Food"}


def test_a_category_and_one_above_it_mean_the_narrower_one():
    from recagent.catalog.model import Dataset, Item

    items = [Item("M1", "Saving Private Ryan", category=("Movies", "War")),
             Item("M2", "Scream", category=("Movies", "Horror")),
             Item("M3", "Toy Story", category=("Movies", "Animation"))]
    parser = ConstraintParser(Dataset("films", items, []))
    assert parser.parse("a war movie").categories == ("War",)
    assert parser.parse("a movie for tonight").categories == ("Movies",)
    assert parser.within("Horror", "Movies") and not parser.within("Movies", "Horror")


def test_the_llm_may_narrow_the_rules_categories_but_not_widen_them():
    from recagent.agent.constraints import combine
    from recagent.catalog.model import Dataset, Item

    items = [Item("M1", "Scream", category=("Movies", "Horror")),
             Item("B1", "Cookbook", category=("Books", "Cookbooks"))]
    parser = ConstraintParser(Dataset("mixed", items, []))
    rules = parser.parse("a scary movie for Halloween")
    assert rules.categories == ("Movies",)
    narrowed = combine(rules, Constraints(categories=("Horror",)), parser)
    assert narrowed.categories == ("Horror",)
    # A category outside the rules' one would widen the request: the rules' stands.
    assert combine(rules, Constraints(categories=("Horror", "Cookbooks")), parser).categories == ("Movies",)
    # Without the parser (no catalog paths) the rules' categories stand.
    assert combine(rules, Constraints(categories=("Horror",))).categories == ("Movies",)
    # A narrower category the message excludes is not taken.
    excluding = Constraints(categories=("Movies",), exclude_categories=("Horror",))
    assert combine(excluding, Constraints(categories=("Horror",)), parser).categories == ("Movies",)


def test_a_brand_with_a_company_suffix_is_known_by_its_name():
    from recagent.catalog.model import Dataset, Item

    items = [Item("A1", "pH Meter", brand="Apera Instruments, LLC"), Item("B1", "Beaker", brand="Pyrex")]
    parser = ConstraintParser(Dataset("lab", items, []))
    assert parser.parse("only Apera Instruments, please").brands == ("Apera Instruments, LLC",)
    assert parser.parse("no apera instruments").exclude_brands == ("Apera Instruments, LLC",)
    assert parser.parse("from Apera Instruments, LLC").brands == ("Apera Instruments, LLC",)


@pytest.mark.parametrize("message", ["a tent but not from {b}", "one that isn't from {b}",
                                     "nothing from {b}, thanks"])
def test_a_negated_from_excludes_the_brand(parser, a_brand, message):
    got = parser.parse(message.format(b=a_brand))
    assert got.exclude_brands == (a_brand,) and got.brands == ()


def test_a_brand_named_plainly_is_wanted_unless_negated(parser, a_brand):
    assert parser.parse(f"{a_brand} please").brands == (a_brand,)
    done = parser.parse(f"I'm done with {a_brand}")
    assert done.brands == () and done.exclude_brands == (a_brand,)


def test_a_brand_whose_name_describes_other_brands_products_needs_from():
    from recagent.catalog.model import Dataset, Item

    items = [Item(f"I{n}", f"Super Glue Gel {n}", brand="Bondix") for n in range(4)]
    items.append(Item("S", "Super Glue Liquid", brand="Super Glue"))
    parser = ConstraintParser(Dataset("glue", items, []))
    assert parser.parse("super glue that bonds plastic").brands == ()
    assert parser.parse("glue from Super Glue").brands == ("Super Glue",)
    assert parser.parse("Bondix glue").brands == ("Bondix",)
    # The LLM may not want it either where the rules would not: its name said as a product.
    from recagent.agent.constraints import parse_with_llm

    both = JsonLLM(_reply(product="glue", brands=["Super Glue", "Bondix"]))
    assert parse_with_llm(both, parser, "super glue from Bondix").brands == ("Bondix",)
    assert parse_with_llm(JsonLLM(_reply(product="glue", brands=["Super Glue"])), parser,
                          "glue from Super Glue").brands == ("Super Glue",)


def test_a_negation_in_another_clause_does_not_reach_the_brand(parser, a_brand):
    other = next(b for b in sorted(parser.brands.values()) if b != a_brand)
    got = parser.parse(f"no {other}, from {a_brand}")
    assert got.brands == (a_brand,) and got.exclude_brands == (other,)


def test_a_category_only_the_llm_read_never_empties_the_answer(tiny_shop, encoder, built_index,
                                                                monkeypatch):
    """A weak model can read a category into a message that names none ("something under
    $60" -> Laptops); when nothing then matches, the turn answers without that guess, and
    says so."""
    from agent_support import make_toolbox

    import recagent.agent.runner as runner_module
    from recagent.agent.agents import plan_agent
    from recagent.agent.session import Session

    class GuessingParse:
        name, serves_chat, can_call_tools, structured_output = "guess", False, False, True
        adapters = frozenset()

    absent = "Category That No Item Has"
    monkeypatch.setattr(runner_module, "parse_with_llm",
                        lambda _llm, _rules, _message, adapter=None: Constraints(categories=(absent,)))
    runner = plan_agent(make_toolbox(tiny_shop, encoder, built_index), GuessingParse(), k=3,
                        explain_with_llm=False)
    answer = runner.turn(Session(user_id=None), "something for the weekend under $60")
    assert len(answer.recommendations) == 3
    assert all(r.item.price <= 60 for r in answer.recommendations)  # the stated bound holds
    assert absent not in answer.constraints.categories
    assert any("the LLM read into the request" in d for d in answer.degraded)


def test_a_category_the_message_negates_is_not_wanted(parser):
    from recagent.agent.constraints import parse_with_llm

    category = _leaf(parser)
    message = f"I don't want anything for {category.lower()}, just show me good deals"
    got = parse_with_llm(JsonLLM(_reply(product=category.lower())), parser, message)
    assert got.categories == ()
    rules = parser.parse(message)  # the rules read it as an exclusion
    assert rules.categories == () and rules.exclude_categories == (category,)
    wanted = parse_with_llm(JsonLLM(_reply(product=category.lower())), parser, f"good {category.lower()} deals")
    assert wanted.categories == (category,)


def test_price_words_become_the_cheapest_or_dearest_third_of_the_category(parser):
    category = _leaf(parser)
    cheap = parser.parse(f"{category.lower()} that won't break the bank")
    premium = parser.parse(f"a high-end {category.lower()}, money is no object")
    assert cheap.min_price is None and cheap.max_price == parser.price_quantile(1 / 3, (category,))
    assert premium.max_price is None and premium.min_price == parser.price_quantile(2 / 3, (category,))
    assert "bank" not in cheap.query and parser.parse(f"cheap {category.lower()} under $5").max_price == 5.0
    assert parser.parse(f"{category.lower()}, not the cheap ones").max_price is None
    # The third is of the wanted categories' prices, never of one the message excludes.
    elsewhere = parser.parse(f"something cheap, but I don't want anything for {category.lower()}")
    assert elsewhere.exclude_categories == (category,)
    assert elsewhere.max_price == parser.price_quantile(1 / 3, ())


def test_the_query_keeps_no_stray_full_stop(parser):
    assert parser.parse("I need board games between $15 and $35.").query == "board games"
    assert parser.parse("I need coffee beans.").query == "coffee beans"


def test_the_llm_reading_may_name_a_category_by_meaning(encoder):
    from recagent.agent.constraints import combine, parse_with_llm
    from recagent.catalog.model import Dataset, Item

    genres = ["Horror", "Comedy", "Western", "Animation", "Romance", "War"]
    items = [Item(f"M{n}", f"Film {n}", category=("Movies", g)) for n, g in enumerate(genres)]
    films = ConstraintParser(Dataset("films", items, []), encoder=encoder)
    assert films.category_by_meaning("a scary movie for Halloween night") == "Horror"
    assert films.category_by_meaning("a cowboy movie") == "Western"
    message = "a scary movie for Halloween night"
    rules = films.parse(message)
    assert rules.categories == ("Movies",)
    read = parse_with_llm(JsonLLM(_reply(product="scary movie")), films, message)
    assert read.categories == ("Horror",)
    assert combine(rules, read, films).categories == ("Horror",)
    # Not a category the message rules out: no item would be left.
    no_horror = "a scary movie, but no horror please"
    assert parse_with_llm(JsonLLM(_reply(product="scary movie")), films, no_horror).categories == ("Movies",)
    # No product wanted, no category guessed; nor without the encoder.
    assert parse_with_llm(JsonLLM(_reply(product="")), films, message).categories == ()
    plain = ConstraintParser(films.dataset)
    assert plain.category_by_meaning(message) is None
    assert parse_with_llm(JsonLLM(_reply(product="scary movie")), plain, message).categories == ("Movies",)


@pytest.mark.parametrize(
    ("message", "wanted"),
    [
        ("a sleeve to protect my laptop on the go", ("Laptop Sleeves",)),
        ("toys for my dog", ("Dog Toys",)),
        ("a watch for sports under 100", ("Sports Watches",)),
        ("a laptop for my kid", ("Laptops",)),
        # the same order as the name is not the other way round; a list is two products (the
        # camera: the one leaf whose name ends in "cameras", in the group "camera" names)
        ("a camera for my trip, and a bag too", ("DSLR Cameras",)),
    ],
)
def test_a_two_word_category_said_the_other_way_round_is_named(message, wanted):
    from recagent.catalog.demo_shop import generate_demo_shop

    parser = ConstraintParser(generate_demo_shop())
    assert parser.parse(message).categories == wanted


def test_the_category_by_meaning_reads_only_what_is_not_negated():
    from recagent.agent.constraints import _unnegated

    # An embedding reads "nothing violent" as violent: those clauses are left out.
    assert _unnegated("nothing violent, my little cousins are here") == "my little cousins are here"
    assert _unnegated("no dramas please, something light and funny") == "something light and funny"
    assert _unnegated("I don't want anything gory") == ""
    assert _unnegated("a scary movie") == "a scary movie"


@pytest.mark.parametrize(
    ("message", "low", "high"),
    [
        ("my budget is about 200", 160.0, 240.0),  # a bare amount ending its clause
        ("a tent for about 4 people", None, None),  # a count: a noun follows it
        ("something in the region of 40 dollars", 32.0, 48.0),
        ("give or take 1200", 960.0, 1440.0),
        ("I don't want to go over 100", None, 100.0),  # a negation three words back
        ("it shouldn't cost more than twenty", None, 20.0),
        ("I don't mind paying over 100", 100.0, None),  # "don't mind" is not a negation
        ("spending 15 tops", None, 15.0),
        ("I'd pay anything from 100 to 200", 100.0, 200.0),
        ("30 to 60 dollars", 30.0, 60.0),
        ("a leash, under a tenner", None, 10.0),  # banknotes by name
        ("a laptop, around 600 would be fine", 480.0, 720.0),  # the amount ends its phrase
        ("about 50 is my budget", 40.0, 60.0),
        ("socks for about a fiver", 4.0, 6.0),
        ("an espresso maker for a small flat, 150 at most", None, 150.0),
        ("a grinder, 50 at the very most", None, 50.0),
        # bare numbers that open their own clause and end it
        ("a down sleeping bag, 150 to 250", 150.0, 250.0),
        ("a heavy tripod, 150 or more", 150.0, None),
        ("a laptop for video editing, 2000 max", None, 2000.0),
        ("a tent, 150 or more would be fine", 150.0, None),
        ("a tent, 2 to 3 people", None, None),  # a noun follows: a count
        ("a building set for ages 8 to 12", None, None),  # no clause of their own
        ("a tent for 4 or more", None, None),
    ],
)
def test_more_ways_of_saying_a_price(demo, message, low, high):
    c = demo.parse(message)
    assert (c.min_price, c.max_price) == (low, high)


@pytest.fixture(scope="module")
def demo():
    from recagent.catalog.demo_shop import generate_demo_shop

    return ConstraintParser(generate_demo_shop())


def test_from_to_is_a_price_only_where_items_have_prices():
    from recagent.catalog.model import Dataset, Item

    films = ConstraintParser(Dataset("films", [Item("M1", "Heat (1995)", category=("Crime",))], []))
    c = films.parse("movies from 1990 to 1995")
    assert (c.min_price, c.max_price) == (None, None)
    for message in ("a war film, 1960 to 1970", "a western, 1950 or more", "a comedy, 90 max"):
        c = films.parse(message)
        assert (c.min_price, c.max_price) == (None, None), message


@pytest.mark.parametrize("message", ["a sleeve, skip {b}", "leave out {b}, they fall apart",
                                     "we've had enough of {b}", "a bag, I've had bad luck with {b}",
                                     "something, we were let down by {b} last time",
                                     "a game for two, nothing by {b}", "none from {b} please",
                                     "anything, nothing made by {b}"])
def test_skip_and_leave_out_exclude_a_brand(parser, a_brand, message):
    got = parser.parse(message.format(b=a_brand))
    assert got.exclude_brands == (a_brand,) and got.brands == ()


@pytest.mark.parametrize("message", ["a sleeve, any brand but {b}", "any make other than {b} is fine",
                                     "anyone but {b}, please"])
def test_any_brand_but_one_excludes_that_one(parser, a_brand, message):
    got = parser.parse(message.format(b=a_brand))
    assert got.exclude_brands == (a_brand,) and got.brands == ()


@pytest.mark.parametrize("message", ["a leash, it doesn't have to be expensive",
                                     "a leash, I don't need it to be fancy", "a leash for just a few bucks"])
def test_more_ways_of_saying_cheap(demo, message):
    got = demo.parse(message)
    assert got.min_price is None and got.max_price == demo.price_quantile(1 / 3, ("Dog Leashes",))


def test_the_best_you_have_got_is_premium_and_a_trailing_verdict_is_no_query(demo):
    got = demo.parse("a tent for a family, the best you've got")
    assert got.max_price is None and got.min_price == demo.price_quantile(2 / 3, ("Tents",))
    assert demo.parse("a tent, around 300 would be fine").query == "tent"
    assert demo.parse("a tent for around 4 people").min_price is None  # no phrase ends on the 4


def test_a_head_noun_outside_a_named_group_names_its_leaf(demo):
    # "Running" holds shoes and socks, not watches: the watch is what is wanted.
    assert demo.parse("a running watch").categories == ("Sports Watches",)
    assert demo.parse("GPS watch for running").categories == ("Sports Watches",)
    assert demo.parse("something for running").categories == ("Running",)
    # Camping holds Sleeping Bags, so "bag" does not move it to Camera Bags.
    assert demo.parse("a bag for camping").categories == ("Camping",)
    assert demo.parse("a dog leash").categories == ("Dog Leashes",)  # "leashes" -> "leash"
    # Watering holds Hose Nozzles, the one leaf ending in "nozzles": the leaf is meant.
    assert demo.parse("a nozzle for watering the plants").categories == ("Hose Nozzles",)


def test_a_group_said_after_for_is_the_use_when_a_leaf_names_the_product(demo):
    # Travel holds guides, not tripods: the tripod is wanted, travel is what it is for.
    assert demo.parse("a lightweight tripod for travel").categories == ("Tripods",)
    assert demo.parse("a camera bag for travel").categories == ("Camera Bags",)
    assert demo.parse("a guide for travel").categories == ("Travel Guides",)
    assert demo.parse("something for travel").categories == ("Travel",)
    # The dearest third is then of tripods' prices alone.
    premium = demo.parse("a lightweight tripod for travel, top of the range please")
    assert premium.min_price == demo.price_quantile(2 / 3, ("Tripods",))
    # a list names both: the group stays, and the watch is one more wish
    assert set(demo.parse("running stuff, and a watch").categories) == {"Running", "Sports Watches"}


def test_two_names_sharing_a_word_mean_the_one_said_first(demo):
    # "coffee" belongs to both names; what comes first is wanted, the other is what it is for.
    assert demo.parse("beans for my coffee maker").categories == ("Coffee Beans",)
    assert demo.parse("a grinder for coffee beans").categories == ("Coffee Grinders",)
    assert set(demo.parse("a coffee maker and some coffee beans").categories) == {
        "Coffee Makers", "Coffee Beans"}


@pytest.mark.parametrize(
    ("message", "low", "high"),
    [
        ("running socks, ballpark fifteen dollars", 12.0, 18.0),
        ("somewhere in the ballpark of $250", 200.0, 300.0),
        ("coffee beans, something like $20 a bag", 16.0, 24.0),
        ("a chew toy, five bucks or so", 4.0, 6.0),  # the vagueness after the amount
        ("a $50-ish mouse", 40.0, 60.0),
        ("a fountain pen in the $40 range", 32.0, 48.0),  # a band around one amount
        ("a laptop in the 1200 to 1500 range", 1200.0, 1500.0),  # a band between two
        ("a tent for car camping, my budget's $300", None, 300.0),  # a budget with an amount
        ("on a 300 dollar budget", None, 300.0),
        ("a headlamp, fifty tops", None, 50.0),
        ("a tent for two or three people", None, None),
        ("shampoo, nothing fancy, maybe ten bucks", 8.0, 12.0),  # "maybe" with an amount
        ("a proper DSLR, somewhere near 1000 dollars", 800.0, 1200.0),
        ("a mouse close to $40", 32.0, 48.0),
        ("under $30, well maybe 40", None, 30.0),  # a stated bound beats a "maybe"
        ("a tent that sleeps maybe 4 people", None, None),  # a count, not money
    ],
)
def test_ballpark_range_and_budget_amounts(demo, message, low, high):
    c = demo.parse(message)
    assert (c.min_price, c.max_price) == (low, high)
    assert not any(w in c.query.split() for w in ("ballpark", "range", "budget", "budget's", "so"))


def test_price_tails_and_ballpark_spell_amounts_in_words():
    from recagent.agent.price_words import spell_prices

    assert spell_prices("in the ballpark of seventy") == "in the ballpark of 70"
    assert spell_prices("fifty tops") == "50 tops"
    assert spell_prices("forty-ish") == "40-ish"
    assert spell_prices("two or three tents") == "two or three tents"


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("a notebook for journaling, nothing pricey", "cheap"),  # a negated dear word is cheap
        ("a tent, I don't want anything too expensive", "cheap"),
        ("a tent, nothing fancy", "cheap"),
        ("show me good deals on tents", "cheap"),
        ("top-shelf tents", "premium"),
        ("a fancy tent", "premium"),
        ("the priciest tent you've got", "premium"),
        ("a tent, money's not an issue", "premium"),
        ("a tent that won't cost much", "cheap"),
        ("a tent, I'll pay for quality", "premium"),
        ("a tent, happy to spend more", "premium"),
        ("a tent that's on the pricey side", "premium"),
        ("a tent on the cheaper side", "cheap"),
        ("a tent that costs next to nothing", "cheap"),
        ("a tent, top end", "premium"),
        ("a super bright tent, money no object", "premium"),
        ("a tent, not the expensive ones", "cheap"),
        ("the best tent you've got for winter", "premium"),
        ("the best tent they make", "premium"),
    ],
)
def test_more_price_level_words(demo, message, level):
    c = demo.parse(message)
    cheap, premium = demo.price_quantile(1 / 3, ("Tents",)), demo.price_quantile(2 / 3, ("Tents",))
    if "tent" in message:
        assert c.categories == ("Tents",)
        assert (c.min_price, c.max_price) == ((None, cheap) if level == "cheap" else (premium, None))
    else:
        assert (c.min_price is None) == (level == "cheap") and (c.max_price is None) == (level == "premium")
    assert not {"pricey", "expensive", "fancy", "top-shelf", "priciest"} & set(c.query.split())


def test_every_price_level_phrase_leaves_the_query(demo):
    c = demo.parse("a luxury sleeping bag for winter camping, money is no object")
    assert c.query == "sleeping bag for winter camping"
    # "the best ... you've got": the product said between stays
    assert "sleeping bag" in demo.parse("the best sleeping bag you've got").query


def test_a_head_noun_of_one_leaf_names_it_when_no_category_is_named(demo):
    # "grinder" ends only Coffee Grinders' name; "watch" only Sports Watches'.
    assert demo.parse("I'm looking for a cheap but decent burr grinder").categories == ("Coffee Grinders",)
    assert demo.parse("a waterproof watch").categories == ("Sports Watches",)
    assert demo.parse("I'm looking for a cheap but decent burr grinder").query == "decent burr grinder"
    # A named category wins; a noun that ends two leaves' names ("bags") names neither.
    assert demo.parse("a grinder and some pens").categories == ("Pens",)
    assert demo.parse("a bag").categories == ()


def test_a_title_searched_catalog_searches_for_the_product_not_its_use(demo):
    from recagent.catalog.model import Dataset, Item

    # Amazon-like: too many category paths to name, searched by product titles.
    items = [Item(f"P{n}", f"Part {n}", category=(f"Industrial Path {n}",)) for n in range(90)]
    parts = ConstraintParser(Dataset("parts", items, []))
    assert parts.parse("lubricant for squeaky hinges").query == "lubricant"
    assert parts.parse("microscope slides for looking at pond water").query == "microscope slides"
    assert parts.parse("something for squeaky hinges").query == "squeaky hinges"
    # an infinitive "to" says what it is for too; a "to" that is no verb's is kept
    assert parts.parse("foam tape to seal a drafty door").query == "foam tape"
    assert parts.parse("a length of chain to hang a light fixture").query == "length of chain"
    assert parts.parse("a kitchen scale that measures to the gram").query == "kitchen scale that measures to the gram"
    assert parts.parse("M3 screws, 6 to 12 mm").query == "M3 screws 6 to 12 mm"
    # A catalog whose categories are named keeps what the product is for.
    assert demo.parse("a sleeping bag for winter camping").query == "sleeping bag for winter camping"


def test_a_brand_excluded_before_its_product_leaves_the_product_wanted(demo):
    got = demo.parse("I'm done with Pacer watches, show me something else")
    assert got.exclude_brands == ("Pacer",)
    assert got.categories == ("Sports Watches",) and got.exclude_categories == ()
    # A negated product alone is still excluded.
    assert demo.parse("I'm done with watches, show me something else").exclude_categories == ("Sports Watches",)


def test_an_irregular_plural_names_its_category(demo):
    assert demo.parse("a computer mouse").categories == ("Computer Mice",)
    # the head noun of the leaf, said in the singular, beats the group it is for
    assert demo.parse("a quiet mouse for a shared office, less than 30").categories == ("Computer Mice",)


def test_a_limit_with_an_amount_is_a_ceiling(demo):
    got = demo.parse("road running shoes, my limit is 120")
    assert (got.min_price, got.max_price) == (None, 120.0)
    assert got.categories == ("Running Shoes",)


def test_no_less_than_is_a_floor(demo):
    got = demo.parse("a GPS sports watch for triathlon training, no less than 300")
    assert (got.min_price, got.max_price) == (300.0, None)
    assert demo.parse("a tent not cheaper than 100 dollars").min_price == 100.0
    assert demo.parse("a watch not under $300").min_price == 300.0
    # the plain ceilings stay ceilings
    assert demo.parse("a watch, less than 300").max_price == 300.0
    assert demo.parse("a tent no more than 200").max_price == 200.0


def test_a_brand_ruled_out_after_its_name_or_by_being_over_it(demo):
    got = demo.parse("an expandable hose for the balcony, Aquaflow isn't an option")
    assert got.exclude_brands == ("Aquaflow",) and got.brands == ()
    assert got.categories == ("Garden Hoses",)
    assert got.query == "expandable hose for the balcony"  # nor are the words against it searched
    assert demo.parse("a tent, Wildhaven is out").exclude_brands == ("Wildhaven",)
    assert demo.parse("Pacer is a no-go, running shoes please").exclude_brands == ("Pacer",)
    got = demo.parse("trail shoes for muddy hills, I'm over Stridelite")
    assert got.exclude_brands == ("Stridelite",) and got.query == "trail shoes for muddy hills"
    assert demo.parse("tents are out, a sleeping bag").exclude_categories == ("Tents",)
    # "over" an age, or a brand praised, is no exclusion
    assert demo.parse("I'm over 60 and need Pinecrest tents").brands == ("Pinecrest",)
    assert demo.parse("a Pacer watch, Pacer is a favourite").brands == ("Pacer",)
    assert demo.parse("a Kestrel camera bag, is Kestrel out of stock?").brands == ("Kestrel",)


def test_a_price_level_is_reread_over_the_categories_the_llm_adds(demo):
    from recagent.agent.constraints import combine

    rules = demo.parse("a squeaky ball for fetch that won't cost much")
    assert rules.categories == ()  # "cheap" over the whole shop
    toys = combine(rules, Constraints(categories=("Dog Toys",)), demo)
    assert toys.categories == ("Dog Toys",)
    assert (toys.min_price, toys.max_price) == demo.price_bounds({"kind": "cheap"}, "", ("Dog Toys",))
    assert toys.max_price < rules.max_price
    # an amount said is kept as said
    said = combine(demo.parse("a squeaky ball for fetch under 20"), Constraints(categories=("Dog Toys",)), demo)
    assert said.max_price == 20.0


def test_mid_range_words_are_the_middle_third(demo):
    for message in ("cushioned running shoes for a heavier runner, mid-priced",
                    "running shoes, mid-range please", "moderately priced running shoes",
                    "running shoes, somewhere in the middle price-wise"):
        got = demo.parse(message)
        assert got.categories == ("Running Shoes",), message
        assert (got.min_price, got.max_price) == demo.price_bounds({"kind": "mid-range"}, "", got.categories)
        assert got.min_price is not None and got.max_price is not None


def test_a_category_said_after_for_is_what_the_product_is_for(demo):
    got = demo.parse("a spray nozzle with several patterns for the garden hose, Spraymaster")
    assert got.categories == ("Hose Nozzles",) and got.brands == ("Spraymaster",)
    assert demo.parse("a mouse for my laptop, wireless").categories == ("Computer Mice",)
    assert demo.parse("a tripod for my camera").categories == ("Tripods",)
    assert demo.parse("a headlamp for my tent").categories == ("Headlamps",)
    # a product named plainly, or two named with "and", stay
    assert demo.parse("a sleeve for my laptop").categories == ("Laptop Sleeves",)
    assert set(demo.parse("cameras and tents for a trip").categories) == {"DSLR Cameras", "Tents"}
    # a product no category names, for one a category names: not that category
    assert demo.parse("a bag for my tent").categories == ()  # "bags": two leaves, neither meant
    assert demo.parse("batteries for my headlamp").categories == ()
    assert demo.parse("something for my tent").categories == ("Tents",)
    assert demo.parse("a cheap one for my laptop").categories == ("Laptops",)


def test_nothing_that_costs_more_than_is_a_ceiling(demo):
    got = demo.parse("a basic fitness watch, nothing that costs more than 100")
    assert (got.min_price, got.max_price) == (None, 100.0)
    assert demo.parse("a tent, nothing priced over $200").max_price == 200.0
    got = demo.parse("earphones for the gym that won't hurt my wallet")
    assert got.max_price is not None and got.min_price is None
    got = demo.parse("decaf beans that are easy on the wallet")
    assert got.max_price is not None and got.min_price is None and got.query == "decaf beans"


def test_the_llms_price_level_is_reread_over_the_categories_that_stand(demo):
    from recagent.agent.constraints import combine

    rules = demo.parse("the nicest camera Halcyon makes")  # no price word the rules know
    assert rules.categories == ("DSLR Cameras",) and rules.min_price is None
    bags_premium = demo.price_bounds({"kind": "premium"}, "", ("Camera Bags",))
    llm = Constraints(categories=("Camera Bags",), min_price=bags_premium[0], max_price=bags_premium[1])
    got = combine(rules, llm, demo)
    assert got.categories == ("DSLR Cameras",)
    assert (got.min_price, got.max_price) == demo.price_bounds({"kind": "premium"}, "", ("DSLR Cameras",))
    # an amount the LLM read stays as read
    assert combine(rules, Constraints(categories=("Camera Bags",), max_price=500.0), demo).max_price == 500.0


def _titled_shop(encoder):
    """A shop whose titles name products in words no category has ("machine", "backpack")."""
    from recagent.catalog.model import Dataset, Item

    titles = {
        ("Kitchen", "Coffee Makers"): ["{b} Espresso Machine with Milk Frother", "{b} Drip Coffee Maker"],
        ("Kitchen", "Coffee Beans"): ["{b} Dark Roast Whole Bean Coffee"],
        ("Photo", "Camera Bags"): ["{b} Camera Backpack", "{b} Camera Sling"],
        ("Photo", "DSLR Cameras"): ["{b} 24MP DSLR Camera with Kit Lens"],
        ("Photo", "Tripods"): ["{b} Carbon Tripod with Ball Head"],
        ("Toys", "Building Sets"): ["{b} Castle Building Set"],
        ("Outdoors", "Headlamps"): ["{b} Rechargeable Headlamp"],
        ("Outdoors", "Tents"): ["{b} 2-Person Dome Tent"],
    }
    items = []
    for path, names in titles.items():
        for n in range(10):
            brand = f"{path[1].split()[0]}co{n % 2}"
            items.append(Item(f"{path[1].replace(' ', '')}{n}", names[n % len(names)].format(b=brand), category=path,
                              brand=brand, price=10.0 + n))
    return ConstraintParser(Dataset("titled", items, []), encoder=encoder)


def test_a_word_only_one_categorys_titles_use_names_it(encoder):
    shop = _titled_shop(encoder)
    assert shop._title_words["machine"] == "Coffee Makers"
    assert shop._title_words["roast"] == "Coffee Beans"
    # what comes "with" the product names none: "... with Kit Lens", "... with Ball Head"
    assert not {"kit", "head", "frother"} & set(shop._title_words)
    assert shop.parse("a capsule coffee machine").categories == ("Coffee Makers",)
    assert shop.parse("a premium roast as a present for a coffee snob").categories == ("Coffee Beans",)
    assert shop.parse("espresso machines, any").categories == ("Coffee Makers",)  # plural
    # said before "for", it is the product; the category after "for" is what it is for
    assert shop.parse("a backpack for my camera gear").categories == ("Camera Bags",)
    # a category's own name still wins over a title word
    assert shop.parse("a tent for my backpack trip").categories == ("Tents",)
    # without the encoder (no meaning to check the word against) the rules read no such word
    assert ConstraintParser(shop.dataset).parse("a capsule coffee machine").categories == ()


def test_a_title_word_names_no_category_far_in_meaning_or_without_the_brands_asked(encoder):
    shop = _titled_shop(encoder)
    shop._title_words["torch"] = "Tripods"  # as if tripod titles alone said "torch"
    assert shop.named_by_titles("a bright torch to strap on, Headlampsco1", brands=["Headlampsco1"]) == {}
    assert "Tripods" in shop.named_by_titles("a bright torch to strap on")
    shop._leaf_brands.pop("Tripods")  # as if its items had no brand: no brand asked is sold
    assert shop.named_by_titles("a bright torch to strap on, Headlampsco1", brands=["Headlampsco1"]) == {}
    shop._title_words["castle"] = "DSLR Cameras"  # a word far from cameras in meaning
    nearest = [leaf for leaf, _ in shop.nearest_leaves("a castle", 3)]
    assert "DSLR Cameras" not in nearest
    assert shop.named_by_titles("a castle") == {}


@pytest.fixture(scope="module")
def demo_with_meaning(encoder):
    from recagent.catalog.demo_shop import generate_demo_shop

    return ConstraintParser(generate_demo_shop(), encoder=encoder)


@pytest.mark.parametrize(
    ("message", "categories"),
    [
        # a word of one leaf's name alone ("DSLR"); the group after "for" is what it is for
        ("a DSLR for travel photos, Halcyon, under 1200", ("DSLR Cameras",)),
        ("a DSLR under 1000", ("DSLR Cameras",)),
        # of two words side by side the second names the product: a sling, not a camera
        ("a camera sling that's cheap and cheerful", ("Camera Bags",)),
        ("a camera under 500", ("DSLR Cameras",)),
        # a group right before a leaf's name says what kind: no second wish
        ("a travel tripod that packs small", ("Tripods",)),
        ("a tripod for travel", ("Tripods",)),
        # a group named alone, a title word its leaf's items use ("kibble")
        ("grain-free kibble for a senior dog", ("Dog Food",)),
        ("a squeaky toy for a puppy", ("Dog Toys",)),
        ("a sleeping bag for camping", ("Sleeping Bags",)),
        ("a running watch", ("Sports Watches",)),
    ],
)
def test_groups_give_way_to_the_leaf_the_product_words_name(demo_with_meaning, message, categories):
    assert demo_with_meaning.parse(message).categories == categories


def _family_shop():
    """Makers the catalog spells in several ways ("Arrow" and "ARROW FASTENER"), a product line
    after its maker's name ("3M Littmann"), and a generic word two makers' names end in."""
    from recagent.catalog.model import Dataset, Item

    rows = [("ARROW FASTENER", "Arrow Fastener T50 Staples"), ("ARROW FASTENER", "Arrow Fastener JT21 Staples"),
            ("Arrow", "Arrow Staple Gun"), ("Stanley", "Stanley Heavy Duty Staples"),
            ("3M", "3M Duct Tape"), ("3M", "3M Painter's Tape"), ("3M Littmann", "3M Littmann Classic III Stethoscope"),
            ("Prestige", "Prestige Dual Head Stethoscope"), ("National Hardware", "National Hardware Gate Hinge"),
            ("National Hardware", "National Hardware Door Hinge"), ("Shepherd Hardware", "Shepherd Hardware Gate Latch"),
            ("National", "National Hinge Pins")]
    items = [Item(f"I{n}", title, category=("Tools",), brand=brand) for n, (brand, title) in enumerate(rows)]
    return ConstraintParser(Dataset("families", items, []))


@pytest.mark.parametrize(
    ("message", "brands", "excluded"),
    [
        ("staples for my Arrow staple gun", ("Arrow", "ARROW FASTENER"), ()),
        ("staples from Arrow", ("Arrow", "ARROW FASTENER"), ()),
        ("a stethoscope for nursing school, Littmann if possible", ("3M Littmann",), ()),
        ("a stethoscope, anything but Littmann", (), ("3M Littmann",)),
        # a plain brand keeps its own name: 3M's titles are 3M's
        ("3M tape for the garage", ("3M",), ()),
        # a family's name is a name only written as one: capitalised, not first
        ("a hinge for my gate, National", ("National", "National Hardware"), ()),
        ("hardware for a gate", (), ()),
        ("a national park map", (), ()),
    ],
)
def test_a_name_the_catalog_spells_several_ways_names_every_spelling(message, brands, excluded):
    got = _family_shop().parse(message)
    assert (got.brands, got.exclude_brands) == (brands, excluded)


@pytest.mark.parametrize(
    ("message", "brands", "excluded"),
    [
        ("headphones that aren't from Sonara, Auralis or Quietude", (), ("Sonara", "Auralis", "Quietude")),
        ("no Sonara, Auralis or Quietude headphones", (), ("Sonara", "Auralis", "Quietude")),
        ("no Optivo nor Vantara", (), ("Optivo", "Vantara")),
        # a list must end in "or", "nor" or "and": a comma alone may start a new wish
        ("not Pacer, Velocita is great", ("Velocita",), ("Pacer",)),
        ("a DSLR, not Optivo, Vantara only", ("Vantara",), ("Optivo",)),
        ("headphones from Auralis or Quietude, not Sonara", ("Auralis", "Quietude"), ("Sonara",)),
    ],
)
def test_brands_listed_after_one_ruled_out_are_ruled_out(demo, message, brands, excluded):
    got = demo.parse(message)
    assert (set(got.brands), set(got.exclude_brands)) == (set(brands), set(excluded))


def test_comparatives_bound_the_price(demo):
    got = demo.parse("a retractable leash, nothing pricier than 30")
    assert (got.min_price, got.max_price) == (None, 30.0)
    assert demo.parse("a tent that's pricier than 300").min_price == 300.0
    assert demo.parse("a tent, nothing more expensive than $250").max_price == 250.0
    assert demo.parse("a tent less expensive than 200").max_price == 200.0


def test_a_name_followed_by_excluded_is_ruled_out(demo):
    got = demo.parse("a gaming mouse, Vertex excluded")
    assert got.exclude_brands == ("Vertex",) and got.brands == ()
    got = demo.parse("headphones, Zentrix and Beatline are excluded")
    assert set(got.exclude_brands) == {"Zentrix", "Beatline"} and got.brands == ()
    got = demo.parse("a Velocita watch, and Pacer is out")  # a list ends in "or", "nor" or "and"
    assert got.brands == ("Velocita",) and got.exclude_brands == ("Pacer",)


def test_nothing_about_a_category_excludes_it(demo):
    got = demo.parse("a sleeping bag, nothing about tents")
    assert got.categories == ("Sleeping Bags",) and got.exclude_categories == ("Tents",)
    # "nothing but" is "only"; "nothing beats" is praise
    assert demo.parse("running shoes, nothing but Pacer").exclude_brands == ()
    assert demo.parse("running shoes, nothing beats Velocita").brands == ("Velocita",)


def test_an_llm_category_the_named_brands_leave_empty_is_dropped(demo):
    from recagent.agent.constraints import parse_with_llm

    message = "my wife shoots landscapes, she'd like a Halcyon or Optivo body"
    got = parse_with_llm(JsonLLM(_reply(product="camera bag", brands=["Halcyon", "Optivo"])), demo, message)
    assert set(got.brands) == {"Halcyon", "Optivo"} and got.categories == ()
    # a category the brands make stays
    got = parse_with_llm(JsonLLM(_reply(product="dslr camera", brands=["Halcyon"])), demo,
                         "a Halcyon camera for landscapes")
    assert got.categories == ("DSLR Cameras",)


def test_thousands_separators_are_part_of_the_amount(demo):
    got = demo.parse("do you have any Kestrel cameras under $1,000?")
    assert (got.min_price, got.max_price, got.brands) == (None, 1000.0, ("Kestrel",))
    assert demo.parse("a laptop between $1,200 and $1,500.50").max_price == 1500.5
    assert demo.parse("a laptop under 1,5 thousand").max_price != 1500.0  # a decimal comma


def test_a_hyphenated_no_is_part_of_a_word_not_a_negation(demo):
    got = demo.parse("no-show running socks that aren't Pacer or Velocita")
    assert got.categories == ("Running Socks",) and got.exclude_categories == ()
    assert set(got.exclude_brands) == {"Pacer", "Velocita"}
    assert got.query == "no-show running socks"  # "that aren't" is no product word
    assert demo.parse("a no-fuss tent, no Wildhaven").exclude_brands == ("Wildhaven",)


def test_a_wish_is_not_searched_for(demo):
    assert demo.parse("I'd love a sleeping bag for winter").query == "sleeping bag for winter"
    assert demo.parse("we would like a tent").query == "tent"


def test_a_group_said_after_for_a_product_no_category_names_is_no_wish(demo):
    # "earbuds" names no category: "running" is what they are for, not the Running group
    got = demo.parse("earbuds for running that won't fall out, under 60")
    assert got.categories == () and got.max_price == 60.0
    # no product named, things in general, or a word of a category's name: the group stays
    assert demo.parse("something for running").categories == ("Running",)
    assert demo.parse("gear for running").categories == ("Running",)
    assert demo.parse("a bag for camping").categories == ("Camping",)


def test_what_the_product_is_for_may_be_described(demo):
    # words between "my" and the thing it is for still make it the use, not a wish
    assert demo.parse("a tripod for my action camera").categories == ("Tripods",)
    assert demo.parse("a microSD card for my action camera, Flashpoint").categories == ("Memory Cards",)
    assert demo.parse("a memory card for my new camera").categories == ("Memory Cards",)
    # the "for" of a wish is no use
    assert demo.parse("looking for a cheap DSLR camera").categories == ("DSLR Cameras",)
    assert demo.parse("in the mood for a good board game").categories == ("Board Games",)


def test_a_set_or_kit_says_how_things_come_not_what_they_are(demo):
    assert demo.parse("a padded harness and leash set, not Happy Tails").categories == ("Dog Leashes",)
    assert demo.parse("a leash set").categories == ("Dog Leashes",)
    assert demo.parse("a building set").categories == ("Building Sets",)


def test_a_price_level_with_a_brand_but_no_category_is_relative_to_what_the_brand_sells(demo):
    from recagent.agent.constraints import combine

    scriptura = ("Notebooks", "Pens")  # the demo shop's Scriptura items
    got = demo.parse("a leather journal, Scriptura, on the pricier side")
    assert got.categories == () and got.min_price == demo.price_quantile(2 / 3, scriptura)
    assert demo.price_quantile(2 / 3, scriptura) < demo.price_quantile(2 / 3)  # not the whole shop's
    # once a category is known (here from an LLM), the level is re-read over it
    both = combine(got, Constraints(categories=("Notebooks",)), demo)
    assert both.categories == ("Notebooks",) and both.min_price == demo.price_quantile(2 / 3, ("Notebooks",))


def test_a_brand_listed_with_a_wanted_one_is_wanted_though_its_name_describes_other_things(demo):
    # "Lumen" also describes headlamps ("800 Lumen"), so alone it needs "from"
    assert "Lumen" not in demo.plain_brands
    for message in ("a budget laptop for browsing, Lumen or Aperion", "Aperion or Lumen laptops"):
        got = demo.parse(message)
        assert set(got.brands) == {"Lumen", "Aperion"} and "Lumen" not in got.query, message
    assert demo.parse("a laptop from Aperion, not Lumen").exclude_brands == ("Lumen",)
