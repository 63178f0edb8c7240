"""The fast serving path: concurrent recommendations computed in one model pass give every
request exactly what it gets alone (the trained fusion, cooc-text and item-kNN), and the
HTTP route batches requests that wait beside each other."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from http_support import LOOPBACK, tiny_app, tiny_assistant

from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.catalog.model import Interaction
from recagent.protocol.split import leave_one_out
from recagent.retrieval.base import RecommendRequest
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.fusion import FusionRetriever
from recagent.retrieval.registry import RETRIEVERS
from recagent.retrieval.seq_model import SeqConfig
from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever
from recagent.server.batching import RecommendBatcher
from recagent.server.slots import ComputeSlots


@pytest.fixture(scope="module")
def fusion_home(tiny_shop, tiny_shop_dir, built_index, tmp_path_factory):
    """A RECAGENT_HOME with a 2-epoch seqrec of the tiny shop and its tuned fusion, where
    ``recommend`` and ``serve`` look for them."""
    home = tmp_path_factory.mktemp("fusion-home")
    rt = Runtime(Settings(home=home, data=tiny_shop_dir, llm="none"))
    train_seq_retriever(leave_one_out(tiny_shop), built_index.embeddings(), rt.model_dir("seqrec"),
                        seq_config=SeqConfig(max_len=10, dim=32, layers=1),
                        config=TrainConfig(epochs=2, batch_size=32))
    RETRIEVERS.create("fusion", rt.context())  # tunes the choice, writes fusion.json
    return home


def _same(batched, alone) -> None:
    assert [r.item_id for r in batched] == [r.item_id for r in alone]
    np.testing.assert_allclose([r.score for r in batched], [r.score for r in alone], rtol=1e-5,
                               atol=1e-5)
    assert [r.evidence for r in batched] == [r.evidence for r in alone]
    assert [r.explanation for r in batched] == [r.explanation for r in alone]


def _wait_until(done, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.01)


def _requests(shop, n: int = 24) -> list[RecommendRequest]:
    users = shop.users[:n]
    out = [RecommendRequest(shop.histories[u], k=5 + i % 7) for i, u in enumerate(users)]
    out[3] = RecommendRequest([], k=4)  # empty history: popular items, in the same batch
    out[5] = RecommendRequest(shop.histories[users[5]][:1], k=10,  # one item, and exclusions
                              exclude=frozenset(shop.item_ids[:40]))
    return out


@pytest.mark.parametrize("kind", ["fusion", "cooc-text"])
def test_a_batch_gives_every_request_what_it_gets_alone(kind, tiny_shop, tiny_shop_dir, fusion_home,
                                                        encoder):
    rt = Runtime(Settings(home=fusion_home, data=tiny_shop_dir, llm="none"))
    rt.__dict__["encoder"] = encoder
    model = rt.recommender(kind)
    model.prepare()
    if kind == "fusion":  # the trained model, cold items (in no history) scored by text too
        assert isinstance(model, FusionRetriever) and model.scorer.cold.any()
        model.scorer.cold_offset = 1.0
    requests = _requests(tiny_shop)
    batched = model.recommend_many(requests)
    for request, got in zip(requests, batched, strict=True):
        _same(got, model.recommend(request.history, request.k, exclude=request.exclude))
        assert len(got) == request.k


def test_concurrent_requests_are_served_in_batches_with_their_own_answers(tiny_shop):
    knn = ItemKNN(tiny_shop, recency_decay=0.7)
    knn.fit(list(tiny_shop.histories.values()))
    slots = ComputeSlots()
    batcher = RecommendBatcher(slots, max_batch=8)
    requests = _requests(tiny_shop, 20)
    results: dict[int, list] = {}
    bad = RecommendRequest([Interaction("u", "no-such-item", 0.0)], k=3)  # fails alone
    errors: list[Exception] = []

    def ask(n: int) -> None:
        try:
            results[n] = batcher.recommend(knn, bad if n == 7 else requests[n])
        except KeyError as exc:
            errors.append(exc)

    with slots.acquire():  # everyone queues behind a busy slot, then goes in batches
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(requests))]
        for t in threads:
            t.start()
        _wait_until(lambda: batcher.waiting == len(requests))
    for t in threads:
        t.join(30)
    assert len(errors) == 1 and 7 not in results
    for n, got in results.items():
        _same(got, knn.recommend(requests[n].history, requests[n].k, exclude=requests[n].exclude))
    assert batcher.served == len(requests) and batcher.batches <= 4  # 20 requests, 8 a batch


def test_the_recommend_route_batches_the_trained_fusion_exactly(tiny_shop, tiny_shop_dir, fusion_home,
                                                                encoder, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(fusion_home, home)
    assistant = tiny_assistant(home, tiny_shop_dir, encoder)
    model = assistant.recommender
    assert model.name == "fusion"
    app = tiny_app(assistant, tmp_path / "sessions.db")
    users = tiny_shop.users[:8]  # the per-client limit of requests in flight
    answers: dict[str, dict] = {}
    with TestClient(app, client=LOOPBACK) as client:
        conversations = app.state.conversations

        def ask(user: str) -> None:
            answers[user] = client.post("/v1/recommend", json={"user_id": user, "k": 10}).json()

        with conversations.slots.acquire():
            threads = [threading.Thread(target=ask, args=(u,)) for u in users]
            for t in threads:
                t.start()
            _wait_until(lambda: conversations.batcher.waiting == len(users))
        for t in threads:
            t.join(30)
    assert conversations.batcher.batches < len(users)
    for user in users:
        alone = model.recommend(tiny_shop.histories[user], 10)
        assert answers[user]["retriever"] == "fusion"
        assert [r["item_id"] for r in answers[user]["recommendations"]] == [r.item_id for r in alone]


def test_a_loaded_checkpoint_keeps_its_item_vectors_and_scores_as_before(tiny_shop, fusion_home,
                                                                        tiny_shop_dir):
    """A loaded (frozen) seqrec computes every item's vector once; its scores are the ones
    recomputing them per call gives, before and after items are forgotten."""
    from recagent.retrieval.seq_retriever import load_seq_scorer
    from recagent.retrieval.seq_train import SeqScorer

    frozen = load_seq_scorer(Runtime(Settings(home=fusion_home, data=tiny_shop_dir)).model_dir(),
                             tiny_shop)
    per_call = SeqScorer(frozen.model, tiny_shop)
    histories = [tiny_shop.histories[u] for u in tiny_shop.users[:6]]
    assert frozen.frozen and not per_call.frozen
    np.testing.assert_array_equal(frozen.score(histories), per_call.score(histories))
    table = frozen._table
    np.testing.assert_array_equal(frozen.query_vectors(histories), per_call.query_vectors(histories))
    assert frozen._table is table  # kept, not recomputed
    frozen.forget(tiny_shop.item_ids[:30])  # ID embeddings dropped: the kept vectors go too
    np.testing.assert_array_equal(frozen.score(histories), per_call.score(histories))
    np.testing.assert_array_equal(frozen.item_vectors(), per_call.item_vectors())
