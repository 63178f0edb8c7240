"""Rare title words beside the dense search (retrieval/title_words.py, tools/search_items.py)."""

import pytest

from recagent.catalog.model import Dataset, Item
from recagent.retrieval.title_words import TitleWords, title_word

# Real Amazon Industrial & Scientific titles: to MiniLM, "threadlocker" sounds like lock nuts.
_TITLES = [
    ("Carbon Steel Lock Nut, Zinc Plated Finish, Right Hand Threads, Self-Locking/Nylon Insert", "Nuts"),
    ("18-8 Stainless Steel Lock Nut, Right Hand Threads, Self-Locking/Nylon Insert, Metric", "Nuts"),
    ("Steel Lock Nut, Zinc Yellow-Chromate Plated Finish, Grade 8, Right Hand Threads", "Nuts"),
    ("1/2 - 28 UNEF Right hand Thread Die", "Dies"),
    ("Loctite 243 Blue Medium Strength Threadlockers, 0.34 oz., 10 mL", "Adhesives"),
    ("Brass Hex Standoff, 6-32 Thread, 1/2 inch Length", "Spacers"),
    ("Brass Round Rod, 1/4 inch Diameter, 12 inch Length", "Rods"),
    ("Brass Round Rod, 3/8 inch Diameter, 12 inch Length", "Rods"),
    ("Aluminum Round Rod, 1/2 inch Diameter, 12 inch Length", "Rods"),
    ("Steel Hex Nut, Zinc Plated, 1/4-20", "Hex Nuts"),
]

# What the nuts' listings say of themselves, as many do: it brings them nearer "threadlocker".
_LOCKING = "Thread locking nut: the nylon insert locks the threads so bolts never loosen."


def _shop(n_leaves: int = 0) -> Dataset:
    items = [Item(f"I{n}", title, category=("Industrial & Scientific", "Hardware", leaf),
                  description=_LOCKING if leaf == "Nuts" else "")
             for n, (title, leaf) in enumerate(_TITLES)]
    items += [Item(f"F{n}", f"Filler part {n}", category=("Industrial & Scientific", f"Leaf {n}"))
              for n in range(n_leaves)]
    return Dataset("hardware", items, [])


def test_plural_endings_are_cut():
    assert [title_word(w) for w in ("standoffs", "boxes", "brass", "nuts", "bus", "rods")] == \
        ["standoff", "box", "brass", "nut", "bus", "rod"]


def test_rare_words_are_those_few_titles_hold():
    words = TitleWords(_shop(), rare_share=0.2)  # rare: in at most 2 of 10 titles
    # "brass" is in 3 titles, "rod" in 3; "standoff" (said in the plural) in one
    assert set(words.rare_words("brass standoffs")) == {"standoff"}
    assert words.rare_words("a blue threadlocker") == pytest.approx(
        {"threadlocker": words.rare_words("threadlocker")["threadlocker"],
         "blue": words.rare_words("blue")["blue"]})
    assert words.rare_words("a steel rod") == {}  # neither is rare; "a" is no word
    shares = words.scores("blue threadlocker", ["I0", "I4", "I5"])
    assert shares == {"I4": pytest.approx(1.0)}
    # the standoff's title does not say "spacer"; its leaf category does
    assert words.scores("a brass spacer", ["I5", "I6"]) == {"I5": pytest.approx(1.0)}


def test_only_a_catalog_of_many_leaf_categories_suits():
    assert not TitleWords.suits(_shop())
    assert TitleWords.suits(_shop(n_leaves=90))


def test_a_title_holding_the_rare_word_rises_above_the_alike_sounding(encoder, tmp_path):
    from recagent.retrieval.index import ItemIndex, open_chroma
    from recagent.tools.search_items import SearchItems

    shop = _shop()
    index = ItemIndex(open_chroma(tmp_path / "chroma"), shop, encoder)
    index.build()
    dense = SearchItems(shop, encoder, index)  # a small catalog: no title words by default
    lexical = SearchItems(shop, encoder, index, title_words=True)
    assert dense("threadlocker", 3)[0].item_id != "I4"  # the lock nuts sound closer
    top = lexical("threadlocker", 3)[0]
    assert top.item_id == "I4"
    assert top.score == top.scores["search"] == pytest.approx(top.scores["cosine"] + 0.2)
    # re-ranking orders found items by the search's score, so the shopper sees it first too
    from recagent.tools.rerank import Rerank
    assert Rerank(shop)(lexical("threadlocker", 3), [], "retriever")[0].item_id == "I4"
