"""Outside libraries (implicit, RecTools) wrapped as Scorers for our harness."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from co_bought import ITEM_IDS, co_bought_dataset

from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Dataset, Interaction
from recagent.evals import peers
from recagent.evals.peers import PEERS, peer_scorer


def _dataset() -> Dataset:
    return co_bought_dataset()


def _best(scores: np.ndarray, dataset: Dataset, history: list[str]) -> str:
    row = scores.copy()
    row[[dataset.item_index[i] for i in history]] = -np.inf
    return dataset.item_ids[int(np.argmax(row))]


def test_peer_scorer_knows_the_peers_and_nothing_else():
    assert peer_scorer("itemknn", _dataset()) is None
    assert peer_scorer("no-such-model", _dataset()) is None
    assert set(PEERS) == {"als", "implicit-itemknn", "sasrec", "bert4rec"}


def test_missing_library_says_how_to_install(monkeypatch):
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name.split(".")[0] in ("implicit", "rectools"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(peers.importlib, "import_module", fake)
    for name in PEERS:
        with pytest.raises(RecAgentError, match=r"pip install -e '\.\[peers\]'"):
            peer_scorer(name, _dataset())


@pytest.mark.parametrize("name", ["als", "implicit-itemknn"])
def test_implicit_peers_rank_the_co_bought_item_first(name):
    pytest.importorskip("implicit")
    dataset = _dataset()
    histories = dataset.histories
    scorer = peer_scorer(
        name, dataset, **({"factors": 4, "iterations": 10} if name == "als" else {})
    )
    scorer.fit([seq[:-1] for seq in histories.values()])
    query = [
        [Interaction("q0", "alpha", 0.0)],
        [Interaction("q1", "beta", 0.0)],
        [Interaction("q2", "mu", 0.0), Interaction("q2", "alpha", 1.0)],
    ]
    scores = scorer.score(query)
    assert scores.shape == (3, len(ITEM_IDS))
    assert np.isfinite(scores).all()
    assert _best(scores[0], dataset, ["alpha"]) == "beta"
    assert _best(scores[1], dataset, ["beta"]) == "alpha"
    assert _best(scores[2], dataset, ["mu", "alpha"]) == "beta"
    # Column order = Dataset.item_ids: "beta" sits in column 1, not where sorted ids put it.
    assert int(np.argmax(scores[0] - np.where(np.arange(8) == 2, np.inf, 0))) == 1
    assert scorer.score([]).shape == (0, len(ITEM_IDS))


def test_als_uses_items_it_was_not_fit_on():
    """The test input holds the validation item; fold-in must see it (recalculate_user)."""
    pytest.importorskip("implicit")
    dataset = _dataset()
    als = peer_scorer("als", dataset, factors=4, iterations=10)
    als.fit([seq[:-1] for seq in dataset.histories.values()])
    empty = als.score([[Interaction("q", "zeta", 0.0)]])
    with_alpha = als.score([[Interaction("q", "zeta", 0.0), Interaction("q", "alpha", 1.0)]])
    assert not np.allclose(empty, with_alpha)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_rectools_transformers_score_the_given_sequences(name):
    pytest.importorskip("rectools")
    import torch

    torch.set_num_threads(1)
    dataset = _dataset()
    scorer = peer_scorer(
        name,
        dataset,
        epochs=100,
        n_factors=16,
        n_heads=1,
        n_blocks=1,
        session_max_len=5,
        batch_size=16,
        lr=1e-2,
    )
    # "zeta" is never in training: the model does not know it.
    train = [[x for x in seq if x.item_id != "zeta"] for seq in dataset.histories.values()]
    scorer.fit(train)
    assert scorer.fit_seconds_detail["train"] > 0
    query = [
        [Interaction("a", "alpha", 0.0)],
        [Interaction("b", "zeta", 0.0)],  # only an unknown item: a cold row
        [Interaction("c", "mu", 0.0), Interaction("c", "zeta", 1.0), Interaction("c", "beta", 2.0)],
    ]
    scores = scorer.score(query)
    assert scores.shape == (3, len(ITEM_IDS))
    assert np.isfinite(scores).all()
    zeta = dataset.item_index["zeta"]
    known = np.delete(np.arange(len(ITEM_IDS)), zeta)
    assert scores[0, zeta] == pytest.approx(scores[0, known].min() - 1.0)
    assert np.all(scores[1] == scores[1, 0])  # cold row: a constant, ties by catalog order
    if name == "sasrec":  # next item after "alpha" is "beta" for most users
        # (BERT4Rec's inverse positions learn "the last slot is noise" on data this tiny)
        assert _best(scores[0], dataset, ["alpha"]) == "beta"
    # The same model, fit once, scores different sequences differently.
    assert not np.allclose(scores[0], scores[2])
    again = scorer.score(query[:1])
    np.testing.assert_allclose(again[0], scores[0], rtol=1e-5, atol=1e-5)


@pytest.mark.realdata
def test_als_on_ml100k_beats_our_itemknn(real_data_dir):
    pytest.importorskip("implicit")
    from recagent.catalog.load import load_dataset
    from recagent.protocol.ranking import evaluate_scorer
    from recagent.protocol.split import leave_one_out

    split = leave_one_out(load_dataset(real_data_dir / "ml-100k"))
    als = peer_scorer("als", split.dataset, **peers.TUNED["ml-100k"]["als"])
    result = evaluate_scorer(als, split)
    assert result.metrics["recall@10"] > 0.12  # our itemknn: 0.1166; popularity: 0.0859
    assert result.metrics["ndcg@10"] > 0.06
