"""Cold-start report: held-out items never reach what models fit on; cold cases only."""

import numpy as np
import pytest
import torch

from recagent.evals.coldstart import run_cold_start
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import cold_start_split, hold_out_items, leave_one_out
from recagent.retrieval.cooccurrence import ItemKNN
from recagent.retrieval.seq_model import SeqConfig
from recagent.retrieval.seq_train import TrainConfig, train_seq_retriever, train_sequences


def test_held_out_items_are_a_seeded_tenth_of_the_catalog(tiny_shop):
    cold = hold_out_items(tiny_shop, 0.1, seed=0)
    assert len(cold) == round(0.1 * len(tiny_shop.items))
    assert cold <= set(tiny_shop.item_ids)
    assert hold_out_items(tiny_shop, 0.1, seed=0) == cold
    assert hold_out_items(tiny_shop, 0.1, seed=1) != cold
    with pytest.raises(ValueError):
        hold_out_items(tiny_shop, 1.0)


def test_no_held_out_item_reaches_training(tiny_shop):
    split = cold_start_split(tiny_shop, 0.1, seed=0)
    base = leave_one_out(tiny_shop)
    assert split.cases("test") == base.cases("test")  # same cases, only fitting changes
    trained_on = {x.item_id for h in split.train for x in h}
    assert trained_on and not trained_on & split.cold_items
    index = tiny_shop.item_index
    cold_idx = {index[i] for i in split.cold_items}
    assert not any(cold_idx & set(seq.tolist()) for seq in train_sequences(split))
    # The cold targets exist in this fixture, and they are what the report evaluates.
    assert split.cold_targets("test") and set(split.cold_targets("test")) <= split.cold_items


def test_seqrec_on_the_cold_split_sees_no_cold_item(tiny_shop, tmp_path):
    split = cold_start_split(tiny_shop, 0.1, seed=0)
    text = np.random.default_rng(0).normal(size=(len(tiny_shop.items), 8)).astype(np.float32)
    train_seq_retriever(split, text, tmp_path, seq_config=SeqConfig(max_len=8, dim=16, layers=1),
                        config=TrainConfig(epochs=1, id_dropout=0.3))
    seen = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]["seen"]
    index = tiny_shop.item_index
    assert not any(bool(seen[index[i]]) for i in split.cold_items)
    assert int(seen.sum()) > 0


def test_item_knn_fit_on_the_cold_split_puts_cold_items_at_its_floor(tiny_shop):
    split = cold_start_split(tiny_shop, 0.1, seed=0)
    knn = ItemKNN(tiny_shop)
    knn.fit(split.train)
    _, histories, _ = split.cases("test")
    scores = knn.score(histories[:20])
    cold_cols = [tiny_shop.item_index[i] for i in split.cold_items]
    assert (scores[:, cold_cols] == 0).all() and scores.max() > 0
    result = evaluate_scorer(knn, split, targets_in=split.cold_items, fit=False)
    assert result.metrics["recall@10"] == 0.0  # zero scores lose every tie to warm items


def test_run_cold_start_reports_only_cold_cases(tiny_shop_dir, tmp_path):
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings

    rt = Runtime(Settings(home=tmp_path, data=tiny_shop_dir))
    report = run_cold_start(rt, ["popularity", "itemknn"], fraction=0.1, seed=0)
    split = cold_start_split(rt.dataset, 0.1, seed=0)
    assert report["n_cold_test_cases"] == len(split.cold_targets("test"))
    assert report["n_cold_items"] == len(split.cold_items)
    assert set(report["models"]) == {"popularity", "itemknn"}
    for metrics in report["models"].values():
        assert 0 <= metrics["recall@50"] <= 1


def test_a_forgotten_item_is_scored_like_one_never_seen(tiny_shop, tmp_path):
    from recagent.retrieval.seq_train import SeqScorer

    split = leave_one_out(tiny_shop)
    text = np.random.default_rng(0).normal(size=(len(tiny_shop.items), 8)).astype(np.float32)
    train_seq_retriever(split, text, tmp_path, seq_config=SeqConfig(max_len=8, dim=16, layers=1),
                        config=TrainConfig(epochs=1))
    scorer = SeqScorer.load(tmp_path, tiny_shop)
    index = tiny_shop.item_index
    known = [i for i in tiny_shop.item_ids if bool(scorer.model.seen[index[i]])][:3]
    before = scorer.item_vectors()
    scorer.forget(known)
    after = scorer.item_vectors()
    rows = [index[i] for i in known]
    assert not scorer.model.seen[rows].any()
    with torch.no_grad():  # their vectors are now the text adapter's alone
        text_only = scorer.model.adapter(scorer.model.text).numpy()
    np.testing.assert_allclose(after[rows], text_only[rows], rtol=1e-5, atol=1e-6)
    assert not np.allclose(before[rows], after[rows])
    others = [r for r in range(len(index)) if r not in rows]
    np.testing.assert_array_equal(before[others], after[others])
