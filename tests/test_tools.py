"""The six tools on the tiny demo shop, with the real encoder and Chroma index."""

import numpy as np
import pytest
from fake_llm import ScriptedLLM

from recagent.catalog.errors import ToolError
from recagent.catalog.model import Item
from recagent.tools import (
    Candidate,
    Constraints,
    Explain,
    FilterItems,
    GetItem,
    RecommendForUser,
    Rerank,
    SearchItems,
)


def _cands(dataset, ids):
    return [Candidate(i, getattr(dataset.items.get(i), "title", i), float(-n), {"retriever": float(-n)}) for n, i in enumerate(ids)]


def test_get_item_facts_and_unknown_id(tiny_shop):
    item_id = tiny_shop.item_ids[0]
    facts = GetItem(tiny_shop)(item_id)
    assert facts.title == tiny_shop.items[item_id].title
    with pytest.raises(ToolError, match="no item"):
        GetItem(tiny_shop)("NOPE-1")


def test_filter_items_reasons(tiny_shop):
    items = list(tiny_shop.items.values())
    priced = [i for i in items if i.price is not None]
    cheap = min(priced, key=lambda i: i.price)
    dear = max(priced, key=lambda i: i.price)
    brand = dear.brand
    result = FilterItems(tiny_shop)(
        _cands(tiny_shop, [cheap.item_id, dear.item_id, "GHOST"]),
        Constraints(max_price=cheap.price),
        exclude=[],
    )
    assert [c.item_id for c in result.kept] == [cheap.item_id]
    assert "above" in result.excluded[dear.item_id]
    assert result.excluded["GHOST"] == "not in the catalog"
    no_brand = FilterItems(tiny_shop)(_cands(tiny_shop, [dear.item_id]), Constraints(exclude_brands=(brand.upper(),)))
    assert "excluded" in no_brand.excluded[dear.item_id]
    seen = FilterItems(tiny_shop)(_cands(tiny_shop, [cheap.item_id]), Constraints(), exclude={cheap.item_id})
    assert seen.kept == []


def test_a_category_an_item_is_also_in_is_its_own(tiny_shop):
    film = Item("M1", "Platoon (1986)", category=("Movies", "Action"), also_in=("Drama", "War"))
    assert FilterItems.violation(film, Constraints(categories=("War",))) is None
    assert FilterItems.violation(film, Constraints(categories=("Movies",))) is None
    assert FilterItems.violation(film, Constraints(categories=("Comedy",))) is not None
    assert FilterItems.violation(film, Constraints(exclude_categories=("war",))) == "category war excluded"


def test_filter_unknown_price_is_excluded_under_a_price_bound(tiny_shop):
    assert FilterItems.violation(Item("X", "No price"), Constraints(max_price=10)) == "price unknown"
    assert FilterItems.violation(Item("X", "No price"), Constraints()) is None


def test_search_items_respects_constraints(tiny_shop, encoder, built_index):
    search = SearchItems(tiny_shop, encoder, built_index)
    hits = search("running shoes", 10)
    assert hits and all(h.item_id in tiny_shop.items for h in hits)
    bound = Constraints(max_price=30.0)
    for h in search("running shoes", 10, bound):
        assert tiny_shop.items[h.item_id].price <= 30.0
    with pytest.raises(ToolError):
        search("   ")


def test_recommend_for_user_carries_evidence(tiny_shop, retriever):
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    cands = RecommendForUser(retriever)(history, 10)
    assert len(cands) == 10
    assert all(c.evidence for c in cands)
    assert not {c.item_id for c in cands} & {x.item_id for x in history}


def test_rerank_strategies_only_reorder(tiny_shop):
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    ids = tiny_shop.item_ids[:20]
    cands = _cands(tiny_shop, ids)
    # The scripted LLM prefers titles in reverse alphabetical order.
    llm = ScriptedLLM(scorer=lambda p, t: -ord(t.strip()[0]))
    rerank = Rerank(tiny_shop, llm)
    for strategy in ("retriever", "cooccurrence", "llm", "fusion"):
        out = rerank(cands, history, strategy)
        assert sorted(c.item_id for c in out) == sorted(ids), strategy
        scores = [c.score for c in out]
        assert scores == sorted(scores, reverse=True)
    by_llm = rerank(cands, history, "llm")
    assert by_llm[0].title[0] == min(c.title[0] for c in cands)
    assert "Here is a shopper's history" in llm.prompts[-1]
    with pytest.raises(ToolError):
        rerank(cands, history, "magic")
    with pytest.raises(ToolError, match="needs an LLM"):
        Rerank(tiny_shop, None)(cands, history, "llm")


def test_cooccurrence_rerank_matches_itemknn(tiny_shop):
    from recagent.retrieval.cooccurrence import ItemKNN

    user = tiny_shop.users[1]
    history = tiny_shop.histories[user]
    ids = tiny_shop.item_ids[:50]
    out = Rerank(tiny_shop)(_cands(tiny_shop, ids), history, "cooccurrence")
    knn = ItemKNN(tiny_shop)
    knn.fit(list(tiny_shop.histories.values()))
    row = knn.score([history])[0]
    expected = row[[tiny_shop.item_index[i] for i in ids]]
    assert np.isclose(out[0].score, expected.max())


def test_explain_shared_attributes_and_unknown(tiny_shop, built_index):
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    explain = Explain(tiny_shop, built_index.embeddings)
    newest = history[-1].item_id
    # An item of the same leaf category as the newest history item shares that category.
    same = next(i for i in tiny_shop.item_ids
                if i != newest and tiny_shop.items[i].category == tiny_shop.items[newest].category)
    ev = explain(same, history, Constraints(max_price=1000))
    assert ev.related and all(e.item_id in {x.item_id for x in history} for e in ev.related)
    assert ev.satisfies == ("price $1000 or less",)
    if any(e.item_id == newest or tiny_shop.items[e.item_id].category == tiny_shop.items[same].category
           for e in ev.related):
        assert ev.shared.get("category") == tiny_shop.items[same].category[-1]
    with pytest.raises(ToolError):
        explain("NOPE", history)


def test_explain_relates_no_weak_match_of_another_category(tiny_shop, built_index):
    import numpy as np

    from recagent.catalog.model import Interaction

    explain = Explain(tiny_shop, built_index.embeddings)
    vectors = built_index.embeddings()
    ids = tiny_shop.item_ids
    # The least similar pair of items of different categories: "you bought that" would be false.
    sims = vectors @ vectors.T
    a, b = np.unravel_index(np.argmin(sims), sims.shape)
    assert tiny_shop.items[ids[a]].category != tiny_shop.items[ids[b]].category
    assert sims[a, b] < explain.min_similarity
    ev = explain(ids[a], [Interaction("u", ids[b], 1.0, 1)], Constraints(max_price=1e6))
    assert ev.related == () and ev.shared == {}
    # The same history item is evidence for an item of its own category, however far.
    same = next(i for i in ids if i != ids[b] and tiny_shop.items[i].category == tiny_shop.items[ids[b]].category)
    assert explain(same, [Interaction("u", ids[b], 1.0, 1)]).related


def test_search_finds_a_rare_brand_that_the_over_fetch_misses(tiny_shop, encoder, built_index):
    from collections import Counter

    search = SearchItems(tiny_shop, encoder, built_index, overfetch=1)
    counts = Counter(i.brand for i in tiny_shop.items.values() if i.brand)
    rare = min(counts, key=lambda b: (counts[b], b))
    other = next(i for i in tiny_shop.items.values() if i.brand and i.brand != rare)
    hits = search(other.title, 3, Constraints(brands=(rare,)))
    # The 3 nearest items to an unrelated query are not of this brand; the pre-filtered
    # second search still finds the brand's items.
    assert hits and all(tiny_shop.items[h.item_id].brand == rare for h in hits)
    assert len(hits) == min(3, counts[rare])


def test_search_excluding_what_the_query_names_still_fills_the_listing(tiny_shop, encoder,
                                                                       built_index):
    search = SearchItems(tiny_shop, encoder, built_index, overfetch=1)
    item = next(i for i in tiny_shop.items.values() if i.brand)
    top, brand = item.category[0], item.brand
    # Its own title finds the item's category and brand first: the over-fetch alone, all
    # excluded, would show almost nothing.
    for constraints in (Constraints(exclude_categories=(top,)),
                        Constraints(exclude_brands=(brand,))):
        hits = search(item.title, 5, constraints)
        assert len(hits) == 5
        assert all(FilterItems.violation(tiny_shop.items[h.item_id], constraints) is None
                   for h in hits)


def test_explain_reads_the_item_embeddings_once(tiny_shop, built_index):
    calls = []

    def embeddings():
        calls.append(1)
        return built_index.embeddings()

    explain = Explain(tiny_shop, embeddings)
    history = tiny_shop.histories[tiny_shop.users[0]]
    for item_id in tiny_shop.item_ids[:5]:
        explain(item_id, history)
    assert len(calls) == 1


def _twins_dataset():
    from recagent.catalog.model import Dataset, Interaction, Item

    items = [Item("a", "Chasing Amy (1997)"), Item("b", "chasing  AMY (1997)"),
             Item("c", "Fargo (1996)"), Item("d", "FARGO (1996)"), Item("e", "Heat (1995)")]
    return Dataset("twins", items, [Interaction("u", "a", 0.0)])


def test_filter_shows_one_item_per_title_and_none_the_user_has():
    """ML-100K lists 18 films under two ids: the user who has one is not offered the other,
    and two ids of one title are never shown side by side."""
    dataset = _twins_dataset()
    result = FilterItems(dataset)(_cands(dataset, ["b", "c", "d", "e"]), Constraints(),
                                  exclude={"a"}, owned={"a"})
    assert [c.item_id for c in result.kept] == ["c", "e"]
    assert result.excluded == {"b": "same title as an item the user has", "d": "same title as c"}
    # A twin of an item only shown or disliked stays eligible (a simulated shopper's brand
    # could otherwise run out of items).
    shown = FilterItems(dataset)(_cands(dataset, ["b", "e"]), Constraints(), exclude={"a"})
    assert [c.item_id for c in shown.kept] == ["b", "e"]
    # A search filters before it knows what was shown: it keeps every twin.
    search = FilterItems(dataset)(_cands(dataset, ["c", "d"]), Constraints(), one_per_title=False)
    assert [c.item_id for c in search.kept] == ["c", "d"]


def test_explain_shares_any_genre_a_film_is_in_not_only_its_first():
    import numpy as np

    from recagent.catalog.model import Dataset, Interaction, Item

    films = [Item("A", "Film A", category=("Comedy",), also_in=("Romance",)),
             Item("B", "Film B", category=("Drama",), also_in=("Romance",)),
             Item("C", "Film C", category=("Horror",))]
    shop = Dataset("films", films, [])
    vectors = np.array([[1.0, 0.0], [0.1, 1.0], [0.0, -1.0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    explain = Explain(shop, lambda: vectors)
    assert vectors[0] @ vectors[1] < explain.min_similarity  # a weak match ...
    ev = explain("A", [Interaction("u", "B", 1.0, 1)])
    # ... that counts, both being romances, and says so
    assert [e.item_id for e in ev.related] == ["B"] and ev.shared == {"category": "Romance"}
    assert explain("C", [Interaction("u", "B", 1.0, 1)]).related == ()
