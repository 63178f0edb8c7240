"""History retrieval: excludes what the user has, explains with history items, falls back."""

import numpy as np

from recagent.retrieval.retriever import HistoryRetriever


def test_recommend_excludes_seen_and_grounds_evidence_in_history(retriever, tiny_shop):
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    seen = {x.item_id for x in history}
    recs = retriever.recommend(history, k=8)
    assert len(recs) == 8
    assert len({r.item_id for r in recs}) == 8
    assert not seen & {r.item_id for r in recs}
    assert all(r.item_id in tiny_shop.items for r in recs)
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    for r in recs:
        assert r.title == tiny_shop.items[r.item_id].title
        assert 1 <= len(r.evidence) <= 3
        assert {e.item_id for e in r.evidence} <= seen
        assert r.evidence[0].title in r.explanation
        sims = [e.similarity for e in r.evidence]
        assert sims == sorted(sims, reverse=True)


def test_empty_history_gets_popular_items(retriever, tiny_shop):
    recs = retriever.recommend([], k=5)
    assert len(recs) == 5 and all(not r.evidence for r in recs)
    assert "Popular" in recs[0].explanation
    counts = {}
    for x in tiny_shop.interactions:
        counts[x.item_id] = counts.get(x.item_id, 0) + 1
    assert counts[recs[0].item_id] == max(counts.values())


def test_full_ranking_scores_match_the_query_and_item_vectors(retriever, tiny_shop):
    histories = [tiny_shop.histories[u] for u in tiny_shop.users[:3]]
    scores = retriever.score(histories)
    assert scores.shape == (3, len(tiny_shop.items))
    expected = retriever.query_vectors(histories) @ retriever.index.embeddings().T
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_history_text_respects_the_encoder_budget(tiny_shop, encoder, built_index):
    r = HistoryRetriever(tiny_shop, encoder, built_index, token_budget=64)
    longest = max(tiny_shop.histories.values(), key=len)
    text = r.history_texts([longest])[0]
    assert encoder.count_tokens(text) <= 64
    assert tiny_shop.items[longest[-1].item_id].title in text
