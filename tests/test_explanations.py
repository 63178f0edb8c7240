"""The faithfulness check: prose may name only what the evidence holds."""

import pytest

from recagent.agent.explanations import (
    Explanation,
    ExplanationWriter,
    Redraws,
    faithfulness_problems,
    names_a_fact,
    spoken_title,
)
from recagent.catalog import Dataset, Item
from recagent.llm.base import LLMUnavailable, draw_in_two_batches
from recagent.retrieval.base import Evidence
from recagent.tools.explain import ItemEvidence

EVIDENCE = ItemEvidence(
    item_id="P1",
    title="Stridelite S-180 Trail Running Shoes",
    price=45.99,
    related=(Evidence("H1", "Pacer P-500 Trail Running Shoes", 0.8),),
    shared={"category": "Running Shoes", "brand": "Stridelite"},
    satisfies=("price $60 or less",),
)


def problems(text, **kw):
    return faithfulness_problems(text, EVIDENCE, **kw)


def test_faithful_sentence_passes():
    text = 'You bought the "Pacer P-500 Trail Running Shoes", so the Stridelite S-180 Trail Running Shoes at $45.99 suit your runs.'
    assert problems(text, brands={"Stridelite", "Pacer", "Nikon"}, price_bounds=[60.0]) == []


def test_invented_title_price_brand_and_id_fail():
    base = "You will love the Stridelite S-180 Trail Running Shoes"
    assert any("quotes" in p for p in problems(base + ' like "Moon Boots 3000".'))
    assert any("price" in p for p in problems(base + " for only $9.99 today."))
    assert any("brand Nikon" in p for p in problems(base + " from Nikon.", brands={"Nikon"}))
    assert any("item id" in p for p in problems(base + " and P0042 too.", item_ids={"P0042", "P1"}))
    assert any("item id HEX-CATALOG" in p for p in problems(base + ", buy HEX-CATALOG now.",
                                                            item_ids={"HEX-CATALOG", "P1"}))
    other = "Glidewrite G-540 Gel Pen, Fine Nib"
    assert any("names" in p for p in problems(base + f" and the {other}.", other_titles=[other]))


def test_empty_short_or_off_item_prose_fails():
    assert problems("") == ["empty"]
    assert "not a sentence (only titles)" in problems('"Stridelite S-180 Trail Running Shoes"')
    assert "not a sentence (only titles)" in problems("Stridelite S-180 Trail Running Shoes, yes.")
    assert "does not name the item" in problems("These are great shoes for you and your running.")


class _Reply:
    serves_chat = False
    stops_at_deadline = False
    can_call_tools = False
    adapters: frozenset[str] = frozenset()
    name = "reply"

    def __init__(self, text):
        self.text = text
        self.batches: list[list[str]] = []

    def generate_batch(self, prompts, *, max_tokens=96, stop=(), starts=None, adapter=None):
        self.batches.append(list(prompts))
        self.adapter = adapter
        self.starts = list(starts or [])
        return [self.text for _ in prompts]

    def draw_batch(self, prompts, redraws, **kwargs):
        return draw_in_two_batches(self, prompts, redraws, **kwargs)

    def score(self, prompt, continuations):
        raise AssertionError("not used")


def test_writer_replaces_unfaithful_prose_with_evidence(tiny_shop):
    bad = ExplanationWriter(tiny_shop, _Reply("Buy item X, it is the best, trust me now."))
    out = bad.write(EVIDENCE)
    assert out.source == "evidence" and out.problems
    assert '"Pacer P-500 Trail Running Shoes"' in out.text and "Running Shoes" in out.text
    good_text = "Since you liked the Pacer P-500 Trail Running Shoes, the Stridelite S-180 Trail Running Shoes fit."
    good = ExplanationWriter(tiny_shop, _Reply(good_text)).write(EVIDENCE)
    assert good.source == "llm" and good.text == good_text
    assert ExplanationWriter(tiny_shop, None).write(EVIDENCE).source == "evidence"


def test_a_sentence_that_names_no_fact_fails():
    vague = "The Stridelite S-180 Trail Running Shoes are a great choice for you today."
    assert any("names no fact" in p for p in problems(vague))
    # The words that say how a bound binds ("price $60 or less") are not a fact either.
    assert any("names no fact" in p for p in problems(
        "The Stridelite S-180 Trail Running Shoes cost less than most, a great choice."))
    # A word of the request that says nothing ("for", "who") is not a fact.
    asked = ItemEvidence("P9", "Carryall C-250 10L Camera Shoulder Bag", 30.0,
                         satisfies=('about "present for someone who loves to cook"',))
    text = '"Carryall C-250 10L Camera Shoulder Bag" is another nice pick for you.'
    assert any("names no fact" in p for p in faithfulness_problems(text, asked))
    # Each kind of fact makes it specific: a history item, a shared value, a met request.
    assert problems('The Stridelite S-180 Trail Running Shoes go well with your "Pacer P-500 Trail Running Shoes".') == []
    assert problems("The Stridelite S-180 Trail Running Shoes are from Stridelite, a brand you know.") == []
    assert problems("The Stridelite S-180 Trail Running Shoes cost $45.99, within your budget.",
                    price_bounds=[60.0]) == []


class _Redrawing(_Reply):
    """A greedy sentence per prompt from ``first``; ``drawn`` answers a redraw, per start."""

    def __init__(self, first, drawn):
        super().__init__("")
        self.first, self.drawn, self.sampled = first, drawn, []

    def generate_batch(self, prompts, *, max_tokens=96, stop=(), starts=None, adapter=None):
        super().generate_batch(prompts, starts=starts, adapter=adapter)
        return [self.first[s] for s in starts]

    def sample_batch(self, prompts, n, *, max_tokens=48, stop=(), starts=None, adapter=None, **kw):
        self.sampled.append((list(starts), n, adapter))
        return [self.drawn[s][:n] for s in starts]


def test_a_rejected_sentence_is_drawn_again_and_the_first_passing_draw_shown(tiny_shop):
    other = ItemEvidence("P2", "Penmark P-280 Gel Pen, Fine Nib, 3-Pack", 6.5,
                         satisfies=("category Pens",))
    third = ItemEvidence("P3", "Glidewrite G-540 Gel Pen, Fine Nib", 4.0, satisfies=("category Pens",))
    fine = "Penmark P-280 Gel Pen, Fine Nib, 3-Pack is a fine-nib pen, in Pens as you asked."
    shoes = EVIDENCE.title
    passing = f"{shoes} fit your runs like your Pacer P-500 Trail Running Shoes."
    llm = _Redrawing(
        first={shoes: f"{shoes} for only $9.99 today.", other.title: fine,
               third.title: f"{third.title} from P0042."},
        drawn={shoes: [f"{shoes} like \"Moon Boots 3000\".", passing, "never reached"],
               third.title: [f"{third.title} by Nikon.", f"{third.title} is item P0042."]})
    kwargs = {"price_bounds": [60.0]}
    writer = ExplanationWriter(tiny_shop, llm, redraws=Redraws(2))
    writer.brands.add("Nikon")
    writer.letter_ids.add("P0042")
    seen = []
    out = writer.write_all([EVIDENCE, other, third], on_prose=lambda n, t: seen.append((n, t)), **kwargs)
    # One more batch, for the two rejected sentences only, two draws each.
    assert llm.sampled == [([shoes, third.title], 2, None)]
    assert out[0] == Explanation(passing, "llm", draws=3)  # the greedy one, a rejected draw, this
    assert out[1] == Explanation(fine, "llm")
    assert out[2].source == "evidence" and out[2].draws == 3 and out[2].problems  # the first's
    assert (0, passing) in seen
    # Without redraws nothing is sampled.
    plain = _Redrawing(llm.first, llm.drawn)
    ExplanationWriter(tiny_shop, plain).write_all([EVIDENCE, other, third], **kwargs)
    assert plain.sampled == []
    # A server lost during the redraw keeps what passed and the evidence of the rest.
    down = _Redrawing(llm.first, llm.drawn)
    down.sample_batch = lambda *a, **k: (_ for _ in ()).throw(LLMUnavailable("down"))
    kept = ExplanationWriter(tiny_shop, down, redraws=Redraws(2)).write_all(
        [EVIDENCE, other, third], **kwargs)
    assert [e.source for e in kept] == ["evidence", "llm", "evidence"] and kept[0].problems


def test_a_redraw_runs_only_when_it_fits_in_the_turn_budget(tiny_shop):
    import time

    shoes = EVIDENCE.title
    passing = f"{shoes} fit your runs like your Pacer P-500 Trail Running Shoes."

    class Slow(_Redrawing):
        def generate_batch(self, prompts, **kw):
            time.sleep(0.2)  # the first batch takes 0.2 s: a redraw is expected to take twice that
            return super().generate_batch(prompts, **kw)

    def write(budget_s: float | None):
        llm = Slow({shoes: f"{shoes} for only $9.99 today."}, {shoes: [passing]})
        writer = ExplanationWriter(tiny_shop, llm, redraws=Redraws(1, budget_s=budget_s))
        return llm, writer.write_all([EVIDENCE], price_bounds=[60.0], turn_started=time.monotonic())[0]

    llm, late = write(0.5)  # 0.2 s spent, 0.3 s left: a redraw, estimated at 0.4 s, would overrun
    assert llm.sampled == [] and late.source == "evidence" and late.draws == 1
    llm, on_time = write(5.0)
    assert len(llm.sampled) == 1 and on_time == Explanation(passing, "llm", draws=2)
    llm, unbounded = write(None)
    assert unbounded.source == "llm"


def test_an_in_process_model_redraws_until_the_deadline(tiny_shop):
    """A model that stops decoding at the deadline starts a redraw with half the first
    batch's time left, and is given the turn's deadline and the check as ``until``."""
    import time

    shoes = EVIDENCE.title
    passing = f"{shoes} fit your runs like your Pacer P-500 Trail Running Shoes."

    class Stoppable(_Redrawing):
        stops_at_deadline = True

        def generate_batch(self, prompts, **kw):
            time.sleep(0.2)
            return super().generate_batch(prompts, **kw)

        def sample_batch(self, prompts, n, *, until=None, deadline=None, **kw):
            self.given = (until, deadline)
            return super().sample_batch(prompts, n, **kw)

    llm = Stoppable({shoes: f"{shoes} for only $9.99 today."}, {shoes: ["never reached", passing]})
    writer = ExplanationWriter(tiny_shop, llm, redraws=Redraws(2, budget_s=0.5))
    started = time.monotonic()
    out = writer.write_all([EVIDENCE], price_bounds=[60.0], turn_started=started)[0]
    # 0.3 s left of 0.5: a server's redraw (estimated at 0.4 s) would not start; this one does.
    assert out == Explanation(passing, "llm", draws=3)
    until, deadline = llm.given
    assert deadline == pytest.approx(started + 0.5)
    assert until(0, passing) and not until(0, f"{shoes} for only $9.99 today.")


def test_all_sentences_of_a_turn_are_one_batch_and_new_users_get_prose_too(tiny_shop):
    new_user = ItemEvidence("P2", "Penmark P-280 Gel Pen, Fine Nib, 3-Pack", 6.5,
                            satisfies=("category Pens", "price $10 or less"))
    nothing = ItemEvidence("P3", "Glidewrite G-540 Gel Pen", 4.0)  # no history, no request
    llm = _Reply("The Penmark P-280 Gel Pen, Fine Nib, 3-Pack is a pen within your $10 budget.")
    seen = []
    out = ExplanationWriter(tiny_shop, llm).write_all(
        [new_user, EVIDENCE, nothing], price_bounds=[10.0], on_prose=lambda n, t: seen.append(n))
    assert len(llm.batches) == 1 and len(llm.batches[0]) == 2  # nothing to say about P3
    # each answer opens with its item's name
    assert llm.starts == [new_user.title, EVIDENCE.title]
    assert "They asked for: category Pens; price $10 or less" in llm.batches[0][0]
    assert "They bought:" in llm.batches[0][1]
    assert seen == [0]  # on_prose gets a sentence once it passed the check, never one that failed
    assert out[0].source == "llm"
    assert out[1].source == "evidence" and "does not name the item" in out[1].problems
    assert out[2] == ExplanationWriter(tiny_shop, None).write(nothing)


def _evidence(title, related, shared=None, satisfies=()):
    return ItemEvidence("X1", title, None, tuple(Evidence(f"H{n}", t, 0.5) for n, t in enumerate(related)),
                        shared or {}, tuple(satisfies))


# Sentences the base Gemma wrote in this project's runs, each of which the older check passed.
def test_invented_content_fails():
    being_there = _evidence("Being There (1979)", ["Batman Forever (1995)"], {"category": "Comedy"})
    text = '"Being There (1979)" is a comedy film about a group of people who are in a movie.'
    assert faithfulness_problems(text, being_there) == ["says what the evidence does not: group, people"]
    shampoo = _evidence("Repairing Shampoo with Biotin, 12oz", ["Repairing Conditioner, 12oz"])
    text = "The Repairing Shampoo with Biotin, 12oz goes with your conditioner, like the one with Keratin, 16oz."
    # One unknown word ("keratin") is tolerated; the size of another variant is not.
    assert faithfulness_problems(text, shampoo) == ["states 16oz, which is not in the evidence"]


def test_a_number_said_with_a_hyphen_or_a_space_is_the_same_fact():
    transistors = _evidence("Uxcell 2N3906 General Purpose 3 Terminals PNP Transistors, 100 Piece",
                            ["uxcell 20 Pcs 3 Terminals 5.0mm Pitch PCB Mount Screw Terminal Block"])
    text = ("Uxcell 2N3906 General Purpose 3 Terminals PNP Transistors is a 3-terminals PNP transistor "
            "for your uxcell 20 Pcs 3 Terminals 5.0mm Pitch PCB Mount Screw Terminal Block.")
    assert faithfulness_problems(text, transistors) == []
    # Another count is still not in the evidence, however it is written.
    assert "states 4-terminals, which is not in the evidence" in faithfulness_problems(
        text.replace("3-terminals", "4-terminals"), transistors)
    assert "states 2-pack, which is not in the evidence" in faithfulness_problems(
        text.replace("3-terminals", "2-pack"), transistors)


def test_repetition_and_claiming_the_user_has_the_item_fail():
    withnail = _evidence("Withnail and I (1987)", ["Batman Forever (1995)"], {"category": "Comedy"})
    text = ('"Withnail and I (1987)" is a comedy film about a man who is a "comedy" and a "comedy" '
            'is a film about a man who is a "comedy".')
    assert "repeats itself" in faithfulness_problems(text, withnail)
    board = _evidence("Solderless Plug-in BreadBoard, 830 tie-points", ["Yobett 0805 SMD Resistor Kit"])
    text = 'You bought the "Solderless Plug-in BreadBoard, 830 tie-points", so it fits your kit.'
    assert "says the user already has the item" in faithfulness_problems(text, board)
    text = 'You bought the "Yobett 0805 SMD Resistor Kit", so the Solderless Plug-in BreadBoard, 830 tie-points fits.'
    assert faithfulness_problems(text, board) == []


def test_the_prompt_examples_pass():
    """The examples in prompts/explain_prose.yaml must themselves be faithful."""
    from recagent.prompts import load_template

    template = load_template("explain_prose").source
    sentences = [line.split("Sentence: ", 1)[1] for line in template.splitlines() if "Sentence: " in line]
    examples = [
        _evidence("Trailhead 2-Person Dome Tent", ["Summit 30L Hiking Backpack", "Summit Trekking Poles, Pair"],
                  {"category": "Camping"}),
        _evidence("Penmark P-280 Gel Pen, Fine Nib, 3-Pack", ["Glidewrite G-540 Gel Pen, Fine Nib, 12-Pack"],
                  {"category": "Pens"}),
        _evidence("Heat (1995)", ["Ronin (1998)", "Collateral (2004)"], {"genres": "Action"}),
    ]
    assert len(sentences) == len(examples)
    for sentence, evidence in zip(sentences, examples, strict=True):
        assert sentence.startswith(spoken_title(evidence.title))  # as the writer starts it
        assert faithfulness_problems(sentence, evidence) == [], sentence


def test_saying_the_user_liked_the_item_itself_fails():
    coffee = _evidence("Morningstar Ethiopia Yirgacheffe Medium Roast Whole Bean Coffee",
                       ["Highland Roasters House Blend Medium Roast Whole Bean Coffee"])
    text = "If you liked Morningstar Ethiopia Yirgacheffe Medium Roast Whole Bean Coffee, you will like this coffee."
    assert "says the user already has the item" in faithfulness_problems(text, coffee)


def test_a_compound_of_evidence_words_is_grounded():
    games = _evidence("Meeple Works Harbor Lights: Party Board Game", ["Dicehaven Ember Realms: Deck-Building Game"],
                      {"tier": "mid"})
    text = "The Meeple Works Harbor Lights is another mid-tier board game, like your Dicehaven Ember Realms."
    assert faithfulness_problems(text, games) == []
    text = "The Meeple Works Harbor Lights is another award-winning, top-rated board game for you."
    assert faithfulness_problems(text, games)[0].startswith("says what the evidence does not: award-winning")


def test_quoting_the_request_back_is_allowed_but_not_other_words():
    pens = _evidence("Penmark P-280 Gel Pen, Fine Nib", ["Glidewrite G-540 Gel Pen"],
                     satisfies=('about "smooth pens for note taking"',))
    ok = 'Penmark P-280 Gel Pen, Fine Nib is one of the "smooth pens for note taking" you asked for.'
    assert faithfulness_problems(ok, pens) == []
    spaced = 'Penmark P-280 Gel Pen, Fine Nib is one of the "smooth pens for note taking ." you asked for.'
    assert faithfulness_problems(spaced, pens) == []
    bad = 'Penmark P-280 Gel Pen, Fine Nib is one of the "best pens of 2024" you asked for.'
    assert any("quotes" in p for p in faithfulness_problems(bad, pens))


# Sentences the instruct model wrote in the demo-shop conversation evaluation.
def test_the_instruct_models_fair_sentences_pass():
    game = _evidence("Tabletop Foundry Nightmarket: Family Board Game for 1-4 Players",
                     ["Tabletop Foundry Ember Realms: Deck-Building Board Game for 3-6 Players"],
                     {"category": "Board Games", "brand": "Tabletop Foundry"})
    # The history title given without its brand shares "board game for" with the sentence.
    text = ("Tabletop Foundry Nightmarket: Family Board Game for 1-4 Players is another board game "
            "for you if you like Ember Realms: Deck-Building Board Game for 3-6 Players.")
    assert faithfulness_problems(text, game) == []
    food = _evidence("Kibblewell Chicken & Rice Small Breed Dry Dog Food, 30lb Bag",
                     ["Happy Tails Chicken & Rice Adult Dry Dog Food, 15lb Bag"],
                     {"category": "Dog Food", "tier": "budget"},
                     ["category Dog Food", 'about "dog food"'])
    # The request quoted back with its full stop; a budget-tier item called budget-friendly.
    text = ('Kibblewell Chicken & Rice Small Breed Dry Dog Food, 30lb Bag is a budget-friendly '
            'option that fits your budget and is about "dog food ."')
    assert faithfulness_problems(text, food) == []


def test_a_compound_tail_needs_its_head_in_the_evidence():
    premium = _evidence("Vantara V-900 Carbon Tripod with Ball Head, 180cm",
                        ["Stillpod S-300 Aluminum Tripod with 3-Way Pan Head, 180cm"],
                        {"category": "Tripods", "tier": "premium"})
    text = ("Vantara V-900 Carbon Tripod with Ball Head, 180cm is a budget-friendly, lightweight "
            "tripod like your Stillpod S-300 Aluminum Tripod.")
    assert faithfulness_problems(text, premium) == [
        "says what the evidence does not: budget-friendly, lightweight"]
    budget = _evidence(premium.title, [premium.related[0].title], {"category": "Tripods", "tier": "budget"})
    assert faithfulness_problems(text, budget) == []  # "lightweight" alone is tolerated


def test_a_compound_or_a_shared_number_names_a_fact():
    machine = _evidence("Brewhaus B-630 Espresso Machine with Programmable Timer",
                        ["Brewhaus B-200 Drip Coffee Maker"], {"tier": "mid"})
    assert names_a_fact("Brewhaus B-630 Espresso Machine with Programmable Timer is a mid-tier pick.", machine)
    book = _evidence("The Complete Thai Street Food Cookbook: 75 Recipes for Weekends",
                     ["The French Pastry Kitchen: 75 Recipes for Beginners"], {"recipes": "75"})
    text = "The Complete Thai Street Food Cookbook: 75 Recipes for Weekends has 75 recipes for you."
    assert names_a_fact(text, book)
    assert not names_a_fact("The Complete Thai Street Food Cookbook: 75 Recipes for Weekends is great.", book)


def test_a_loop_is_cut_where_it_starts_and_the_rest_is_still_checked():
    from recagent.agent.explanations import cut_loop

    title = "Kibblewell Chicken & Rice Senior Dry Dog Food, 4lb Bag"
    looped = title + ' is a dog food that is about "dog food" and is about "dog food" and is about "dog'
    assert cut_loop(looped, title) == title + ' is a dog food that is about "dog food".'
    shoes = "Trailhawk T-480 Men's Cushioned Running Shoes, red"
    cut = cut_loop(shoes + " is a mid-tier mid-tier mid-tier mid-tier mid-tier mid-tier", shoes)
    assert cut == shoes + " is a mid-tier."
    evidence = _evidence(shoes, ["Pacer P-500 Trail Running Shoes"], {"tier": "mid"})
    assert "not a sentence (only titles)" in faithfulness_problems(cut, evidence)
    plain = shoes + " is a mid-tier pick like your Pacer P-500 Trail Running Shoes."
    assert cut_loop(plain, shoes) == plain


def test_a_history_title_without_its_size_is_not_a_repeat():
    food = _evidence("Kibblewell Salmon & Sweet Potato Adult Dry Dog Food, 30lb Bag",
                     ["Kibblewell Chicken & Rice Grain-Free Dry Dog Food, 30lb Bag"],
                     {"category": "Dog Food", "brand": "Kibblewell", "tier": "budget"})
    text = ("Kibblewell Salmon & Sweet Potato Adult Dry Dog Food, 30lb Bag is a budget-friendly adult "
            "dry dog food for you if you like Kibblewell Chicken & Rice Grain-Free Dry Dog Food.")
    assert faithfulness_problems(text, food) == []


def test_calling_the_item_what_a_history_item_is_fails():
    bag = ItemEvidence("S1", "Downwell D-940 Duck Down Mummy Sleeping Bag, Rated to -5C", 199.0,
                       (Evidence("H1", "Summitline S-980 1-Person 3-Season Backpacking Tent", 0.5),),
                       {"brand": "Summitline"}, (), ("Outdoors", "Camping", "Sleeping Bags"))
    text = ("Downwell D-940 Duck Down Mummy Sleeping Bag, Rated to -5C is a premium backpacking tent "
            "for you if you liked Summitline S-980 1-Person 3-Season Backpacking Tent.")
    assert 'calls the item a "tent", which its title and category do not' in faithfulness_problems(text, bag)
    fine = text.replace("a premium backpacking tent", "a warm sleeping bag to go with your tent,")
    assert not any("calls the item" in p for p in faithfulness_problems(fine, bag))
    # A word of its own category path counts ("camera bag" for a Camera Bags messenger).
    messenger = ItemEvidence("B1", "Kestrel K-460 10L Camera Messenger", 80.0,
                             (Evidence("H2", "Kestrel K-970 24L Camera Backpack, Bag", 0.8),),
                             {"category": "Camera Bags"}, (), ("Electronics", "Camera Bags"))
    text = "Kestrel K-460 10L Camera Messenger is another camera bag for you if you liked Kestrel K-970 24L Camera Backpack."
    assert not any("calls the item" in p for p in faithfulness_problems(text, messenger))


def test_a_possessive_names_the_fact_it_possesses():
    pegs = ItemEvidence("N1", "50458A Pegboard Hooks, 50-Piece", None, (), {}, ("brand Neiko",))
    assert names_a_fact("50458A Pegboard Hooks, 50-Piece is a set of Neiko's pegboard hooks.", pegs)


def test_long_listing_titles_are_spoken_by_their_name():
    long = "Neiko 11108A Aluminum Oxide Flap Disc, 80 Grit | Flat Type #27 | 10-Pack"
    assert spoken_title(long) == "Neiko 11108A Aluminum Oxide Flap Disc"
    # A cut that would leave two words waits for the next separator.
    assert spoken_title("VELCRO Brand - Sticky Back Hook and Loop Fasteners | Pack of 4") == \
        "VELCRO Brand - Sticky Back Hook and Loop Fasteners"
    # Short titles and names of works stay whole.
    assert spoken_title("Penmark P-280 Gel Pen, 3-Pack") == "Penmark P-280 Gel Pen, 3-Pack"
    movie = "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)"
    assert spoken_title(movie) == movie
    assert len(spoken_title(" ".join(f"word{k}" for k in range(30))).split()) == 10


def test_a_long_title_is_started_and_prompted_by_its_spoken_name():
    evidence = ItemEvidence(
        item_id="A1", title="Ancor Heat Shrink Ring Terminals, Marine Grade | 25-Pack | Red | 12-10 AWG",
        price=None, related=(Evidence("H1", "Ancor Tinned Copper Lugs 8 AWG - 4/0 AWG, 25 Pack", 0.7),),
        shared={"brand": "Ancor"}, satisfies=())
    llm = _Reply("Ancor Heat Shrink Ring Terminals are ring terminals from Ancor, like your Ancor Tinned Copper Lugs.")
    [out] = ExplanationWriter(Dataset("d", [Item("A1", evidence.title)], []), llm).write_all([evidence])
    assert llm.starts == ["Ancor Heat Shrink Ring Terminals"]
    prompt = llm.batches[0][0]
    assert "Its name in the sentence: Ancor Heat Shrink Ring Terminals" in prompt
    assert '"Ancor Tinned Copper Lugs 8 AWG"' in prompt  # the history item by its name too
    assert out.source == "llm", out.problems


def test_a_long_title_s_spoken_name_is_not_a_fact_about_it():
    evidence = ItemEvidence(
        item_id="A2", title="Trailbase T-310 Rechargeable LED Headlamp with Red Night Mode, 400 Lumens",
        price=None, related=(Evidence("H1", "Summit 30L Hiking Backpack", 0.7),),
        shared={"category": "Headlamps"}, satisfies=())
    name = spoken_title(evidence.title)
    assert name == "Trailbase T-310 Rechargeable LED Headlamp"
    # "Headlamp" in its own name does not say the shared category.
    assert not names_a_fact(f"{name} is a great choice.", evidence)
    assert names_a_fact(f"{name} is a headlamp to go with your Summit 30L Hiking Backpack.", evidence)


def test_a_bound_named_as_the_other_kind_fails():
    # The request asked for at least $50: "within your $50 budget" says the opposite.
    floor = problems("Stridelite S-180 Trail Running Shoes fit within your $50 budget.",
                     price_bounds=[50.0], price_floor=50.0)
    assert floor and "ceiling" in floor[0]
    right = problems("Stridelite S-180 Trail Running Shoes cost over $50.",
                     price_bounds=[50.0], price_floor=50.0)
    assert not any("ceiling" in p or "minimum" in p for p in right)
    ceiling = problems("Stridelite S-180 Trail Running Shoes, at over $60, are premium.",
                       price_bounds=[60.0], price_ceiling=60.0)
    assert ceiling and "minimum" in ceiling[0]
    right = problems("Stridelite S-180 Trail Running Shoes fit your $60 budget.",
                     price_bounds=[60.0], price_ceiling=60.0)
    assert not any("ceiling" in p or "minimum" in p for p in right)
    # A range's first amount is not a ceiling: "within your $15 to $35 budget" is true.
    for said in ("within your $15 to $35 budget", "within your $15-$35 budget", "under $15 and $35"):
        both = problems(f"Stridelite S-180 Trail Running Shoes fit {said}.",
                        price_bounds=[15.0, 35.0], price_floor=15.0, price_ceiling=35.0)
        assert not any("ceiling" in p or "minimum" in p for p in both), said
    wrong = problems("Stridelite S-180 Trail Running Shoes cost $15 or less.",
                     price_bounds=[15.0, 35.0], price_floor=15.0, price_ceiling=35.0)
    assert wrong and "ceiling" in wrong[0]


def test_the_prompt_says_a_price_bound_in_words():
    from recagent.tools.constraints import Constraints

    games = Item("G1", "Dicehaven Castle Siege", category=("Toys", "Board Games"), price=20.0)
    asked = Constraints(min_price=15, max_price=35, categories=("Board Games",))
    assert asked.describe_for(games) == ["price from $15 to $35", "category Board Games"]
    assert Constraints(min_price=15).describe_for(games) == ["price $15 or more"]
    assert Constraints(max_price=9.5, exclude_brands=("Pacer",)).describe_for(games) == [
        "price $9.5 or less", "not brand Pacer"]
    assert asked.describe()[:2] == ["price >= $15", "price <= $35"]  # the API's lines stay terse
    pen = Item("P2", "Penmark P-280 Gel Pen", price=6.5)
    prompt = ExplanationWriter.prompt_for(ItemEvidence(
        "P2", pen.title, 6.5, satisfies=tuple(Constraints(max_price=10).describe_for(pen))))
    assert "price $10 or less" in prompt and "<=" not in prompt


def test_a_singular_is_grounded_by_its_plural_in_the_evidence():
    # "Headphones" stems to "headphon": "headphone" and "headphones" must meet.
    evidence = ItemEvidence("P1", "Beatline B-340 Wired Over-Ear Headphones, Hi-Res Audio", 80.0,
                            satisfies=("category Headphones",),
                            category=("Electronics", "Audio", "Headphones"))
    said = "Beatline B-340 Wired Over-Ear Headphones, Hi-Res Audio is a wired headphone, lovely design."
    assert not any("headphone" in p for p in faithfulness_problems(said, evidence))
    made_up = "Beatline B-340 Wired Over-Ear Headphones, Hi-Res Audio is a wired headset, lovely design."
    assert any("headset" in p for p in faithfulness_problems(made_up, evidence))


def test_a_sentence_is_cut_only_between_its_clauses():
    from recagent.agent.explanations import clause_cuts

    name = "Morningstar M-100 Drip Coffee Maker"
    # Before a relative clause, longest first; never before a bare "and" or "for".
    assert clause_cuts(f"{name} is a coffee maker that can be used for both morning and evening coffee.",
                       name) == [f"{name} is a coffee maker."]
    # At a comma before a clause, not between adjectives, not inside a quotation or a price range.
    text = f'{name} is a lightweight, "drip, thermal" maker priced from $15 to $35, offering a unique experience.'
    assert clause_cuts(text, name) == [f'{name} is a lightweight, "drip, thermal" maker priced from $15 to $35.']
    # A dash between two amounts is a range: "priced $15." would misstate the price.
    assert clause_cuts(f"{name} is a maker priced $15 - $35, which you wanted.", name) == [
        f"{name} is a maker priced $15 - $35."]
    assert clause_cuts(f"{name} is a drip maker - and a good one.", name) == [f"{name} is a drip maker."]
    # Never inside the item's name, never leaving fewer than three words or an open end.
    assert clause_cuts(f"{name} is great, and more.", name) == []
    assert clause_cuts(f"{name} is a gift for those who like it, and it is cheap.", name) == [
        f"{name} is a gift for those who like it."]
    assert clause_cuts(f"{name} is a pick for the, which is odd.", name) == []
    assert clause_cuts("Kettle, Steel that is good", "Kettle, Steel") == []
    # A second sentence goes first, whole.
    assert clause_cuts(f"{name} is a coffee maker that costs $4.99. They bought a variety of mugs.", name) == [
        f"{name} is a coffee maker that costs $4.99.", f"{name} is a coffee maker."]


def test_an_invented_tail_is_cut_off_and_the_rest_shown_when_it_passes(tiny_shop):
    shoes = EVIDENCE.title
    true_part = f"{shoes} fit your runs like your Pacer P-500 Trail Running Shoes"
    tailed = _Reply(f"{true_part}, offering a unique and engaging mountain experience.")
    out = ExplanationWriter(tiny_shop, tailed).write(EVIDENCE)
    assert out == Explanation(f"{true_part}.", "llm", trimmed=True)
    # A sentence that passes whole is shown whole.
    whole = ExplanationWriter(tiny_shop, _Reply(f"{true_part}.")).write(EVIDENCE)
    assert whole == Explanation(f"{true_part}.", "llm")
    # Where no part passes (the invention comes first), the evidence is shown, with the whole's problems.
    early = _Reply(f"{shoes} are waterproof hiking boots for glaciers, which you will love.")
    failed = ExplanationWriter(tiny_shop, early).write(EVIDENCE)
    assert failed.source == "evidence" and not failed.trimmed
    assert failed.problems[0].startswith("says what the evidence does not")


def test_the_answer_json_says_a_sentence_was_trimmed():
    from types import SimpleNamespace

    from recagent.app.answer_json import answer_json
    from recagent.catalog.model import Item
    from recagent.tools.constraints import Constraints

    shoes = Item("P1", EVIDENCE.title, price=45.99)
    rec = SimpleNamespace(rank=1, item=shoes, score=1.0, scores={}, evidence=EVIDENCE,
                          explanation=Explanation(f"{shoes.title} fit your runs.", "llm", trimmed=True))
    answer = SimpleNamespace(text="", llm="x", degraded=[], constraints=Constraints(),
                             recommendations=[rec], trace=[])
    [out] = answer_json(answer, SimpleNamespace(user_id="u"))["recommendations"]
    assert out["explanation_source"] == "llm" and out["explanation_trimmed"] is True


def test_what_the_request_asked_for_is_named_in_any_plural_and_any_brand_spelling():
    # Sentences the Amazon adapter wrote in a conversation run, each rejected as naming no fact.
    probe = _evidence("Fluke TP1 Slim-Reach Flat Blade Test Probe", [], satisfies=('about "probes"',))
    assert faithfulness_problems("Fluke TP1 Slim-Reach Flat Blade Test Probe is a probe, as you asked.", probe) == []
    tool = _evidence("Foreasy 3D Printer Accessories 3D Print Removal Tool", [], satisfies=('about "accessories"',))
    assert names_a_fact("Foreasy 3D Printer Accessories 3D Print Removal Tool is a 3D printer accessory, "
                        "as you asked.", tool)
    tape = _evidence("3M Scotchcal Striping Tape, 1/8 inch, White", [], satisfies=("brand 3M",))
    assert names_a_fact("3M Scotchcal Striping Tape, 1/8 inch, White is a striping tape from 3M.", tape)
    assert not names_a_fact("3M Scotchcal Striping Tape, 1/8 inch, White is a striping tape.", tape)


def test_a_plural_meets_its_singular_but_a_short_word_keeps_its_letters():
    from recagent.agent.explanations import _stem

    pairs = [("probes", "probe"), ("accessories", "accessory"), ("machines", "machine"), ("taps", "tap"),
             ("boxes", "box"), ("inches", "inch"), ("brushes", "brush"), ("cameras", "camera"),
             ("running", "runn")]
    for plural, stem in pairs:
        assert _stem(plural) == stem, plural
    assert _stem("glass") == "glass" and _stem("gas") == "gas"


def test_a_word_borrowed_from_the_request_cannot_name_what_the_item_is():
    mills = _evidence("Drill America 4-Flute End Mill Set, 6 Pieces", [], satisfies=('about "taps"',))
    text = "Drill America 4-Flute End Mill Set, 6 Pieces is a tap set, as you asked."
    assert 'calls the item a "tap", which its title and category do not' in faithfulness_problems(text, mills)
    taps = _evidence("Drill America Tap Set, 6 Pieces", [], satisfies=('about "taps"',))
    assert faithfulness_problems("Drill America Tap Set, 6 Pieces is a tap set, as you asked.", taps) == []
    # The word that says what kind of request line it is ("brand 3M") is no product's.
    promoter = _evidence("3M 4298 Adhesion Promoter, Sponge Applicator", [], satisfies=("brand 3M",))
    assert faithfulness_problems("3M 4298 Adhesion Promoter, Sponge Applicator is a 3M brand product, "
                                 "specifically a sponge applicator.", promoter) == []


def test_the_item_cannot_be_said_not_to_be_from_its_own_brand():
    glue = _evidence("Rockler Cyanoacrylate Quick-Set Medium Adhesive, 4.5 oz Bottle", [],
                     satisfies=('about "adhesives"',))
    text = ("Rockler Cyanoacrylate Quick-Set Medium Adhesive, 4.5 oz Bottle is a quick-set medium adhesive, "
            "and not from Rockler.")
    assert "says the item is not from Rockler, which it is from" in faithfulness_problems(
        text, glue, brands={"Rockler", "Gorilla"})
    other = text.replace("not from Rockler", "not made by Gorilla")
    assert not any("not from" in p for p in faithfulness_problems(other, glue, brands={"Rockler", "Gorilla"}))


def test_a_gift_is_what_the_item_is_for_not_what_it_is():
    book = _evidence("Campfire Cooking Made Simple: 75 Recipes for Home Cooks", [],
                     satisfies=("category Cookbooks", 'about "present for someone who loves to cook"'))
    assert faithfulness_problems("Campfire Cooking Made Simple: 75 Recipes for Home Cooks is a present for "
                                 "someone who loves to cook.", book) == []
