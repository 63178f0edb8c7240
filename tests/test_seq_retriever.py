"""The trained sequence retriever: no leakage, loss behaviour, checkpoints, resume, cold start."""

import json
import math

import numpy as np
import pytest
import torch

from recagent.catalog import Dataset, Interaction, Item
from recagent.protocol.split import leave_one_out
from recagent.retrieval.seq_model import SeqConfig, SequenceRetriever
from recagent.retrieval.seq_train import (
    SeqScorer,
    TrainConfig,
    _loss,
    train_seq_retriever,
    train_sequences,
)

SMALL = SeqConfig(max_len=8, dim=16, layers=1, heads=2, dropout=0.0)


def _chain_dataset(n_users=40, n_items=12, seed=0):
    """Users walk a fixed cycle i0 -> i1 -> ... : the next item is fully predictable."""
    rng = np.random.default_rng(seed)
    items = [Item(f"i{k}", f"Item {k}") for k in range(n_items)]
    inters = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for t in range(6):
            inters.append(Interaction(f"u{u}", f"i{(start + t) % n_items}", t))
    return Dataset("chain", items, inters)


def _text(n_items, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n_items, dim)).astype(np.float32)


def test_training_sequences_hold_no_validation_or_test_item():
    ds = _chain_dataset()
    split = leave_one_out(ds)
    seqs = train_sequences(split)
    index = ds.item_index
    assert len(seqs) == len(split.users)
    for user, seq in zip(split.sequences, seqs):
        full = [index[x.item_id] for x in split.sequences[user]]
        assert list(seq) == full[:-2]  # the training prefix: validation and test items cut


def test_loss_of_a_tiny_example_matches_the_formula():
    torch.manual_seed(0)
    text = torch.from_numpy(_text(5))
    model = SequenceRetriever(SMALL, text, torch.ones(5, dtype=torch.bool)).eval()
    inputs, targets = [np.array([0, 1])], [np.array([1, 2])]
    loss = _loss(model, inputs, targets, "cpu").detach()
    table = model.item_vectors()
    items = torch.tensor([[0, 1]])
    hidden = model.encode(items, items < 0, table)[0]
    logits = model.logits(hidden, table)
    expected = -(torch.log_softmax(logits[0], -1)[1] + torch.log_softmax(logits[1], -1)[2]) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) > 0 and math.isfinite(float(loss))


def test_padding_never_changes_a_sequence_score():
    torch.manual_seed(0)
    model = SequenceRetriever(SMALL, torch.from_numpy(_text(6)), torch.ones(6, dtype=torch.bool)).eval()
    short = model.score_last(torch.tensor([[2, 3]]), torch.tensor([[False, False]]))
    padded = model.score_last(torch.tensor([[-1, -1, 2, 3]]), torch.tensor([[True, True, False, False]]))
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)


def test_cold_items_are_represented_by_text_alone():
    text = torch.from_numpy(_text(4))
    seen = torch.tensor([True, True, True, False])
    model = SequenceRetriever(SMALL, text, seen)
    with torch.no_grad():
        model.item_ids.weight.fill_(5.0)
        vectors = model.item_vectors()
        torch.testing.assert_close(vectors[3], model.adapter(text[3]))
        assert not torch.allclose(vectors[0], model.adapter(text[0]))


def test_training_learns_the_chain_and_checkpoints_round_trip(tmp_path):
    ds = _chain_dataset()
    split = leave_one_out(ds)
    result = train_seq_retriever(
        split, _text(len(ds.items)), tmp_path, seq_config=SMALL,
        config=TrainConfig(epochs=40, batch_size=16, lr=5e-3, patience=40, mask_prob=0.0),
    )
    assert result.best_valid["recall@10"] > 0.9  # a deterministic chain is learnable
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["dataset"] == "chain" and meta["best_epoch"] == result.best_epoch
    assert "no validation/test items" in meta["split"]
    loaded = SeqScorer.load(tmp_path, ds)
    histories = [ds.histories[u][:-1] for u in ds.users[:5]]
    scores = loaded.score(histories)
    assert scores.shape == (5, len(ds.items))
    nxt = [ds.item_index[ds.histories[u][-1].item_id] for u in ds.users[:5]]
    assert list(scores.argmax(axis=1)) == nxt


def test_training_resumes_from_last_checkpoint(tmp_path):
    ds = _chain_dataset()
    split = leave_one_out(ds)
    cfg = {"batch_size": 16, "lr": 5e-3, "patience": 40, "mask_prob": 0.0}
    train_seq_retriever(split, _text(len(ds.items)), tmp_path, seq_config=SMALL,
                        config=TrainConfig(epochs=3, **cfg))
    resumed = train_seq_retriever(split, _text(len(ds.items)), tmp_path, seq_config=SMALL,
                                  config=TrainConfig(epochs=5, **cfg))
    assert resumed.epochs_run == 5 and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]


def test_a_checkpoint_for_another_catalog_is_refused(tmp_path):
    from recagent.catalog import RecAgentError

    ds = _chain_dataset()
    train_seq_retriever(leave_one_out(ds), _text(len(ds.items)), tmp_path, seq_config=SMALL,
                        config=TrainConfig(epochs=1, batch_size=16))
    other = _chain_dataset(n_items=13)
    with pytest.raises(RecAgentError, match="another catalog"):
        SeqScorer.load(tmp_path, other)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from recagent.retrieval.seq_train import _lr_factor

    factor = _lr_factor(TrainConfig(epochs=10, schedule="cosine", warmup_epochs=2), steps_per_epoch=5)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)  # the peak right after warm-up
    assert factor(30) == pytest.approx(0.5)  # half-way through the decay
    assert factor(50) == pytest.approx(0.0, abs=1e-12) and factor(80) == pytest.approx(0.0, abs=1e-12)
    assert _lr_factor(TrainConfig(), 5)(123) == 1.0
    with pytest.raises(ValueError):
        _lr_factor(TrainConfig(schedule="linear"), 5)


def test_resuming_a_cosine_run_restores_the_schedule(tmp_path):
    ds = _chain_dataset()
    split = leave_one_out(ds)
    cfg = {"batch_size": 16, "lr": 5e-3, "patience": 40, "schedule": "cosine", "warmup_epochs": 1}
    train_seq_retriever(split, _text(len(ds.items)), tmp_path, seq_config=SMALL,
                        config=TrainConfig(epochs=1, **cfg))  # then resumed for 4
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["state"]["epoch"] == 1 and saved["sched"]["last_epoch"] == 3  # 40 users / 16
    train_seq_retriever(split, _text(len(ds.items)), tmp_path, seq_config=SMALL,
                        config=TrainConfig(epochs=4, **cfg))
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["state"]["epoch"] == 4 and saved["sched"]["last_epoch"] == 12
    assert saved["optim"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_sampled_loss_is_the_softmax_over_the_batch_items_and_the_drawn_negatives():
    torch.manual_seed(0)
    model = SequenceRetriever(SMALL, torch.from_numpy(_text(30)), torch.ones(30, dtype=torch.bool)).eval()
    inputs, targets = [np.array([0, 1]), np.array([4])], [np.array([1, 2]), np.array([5])]
    loss = _loss(model, inputs, targets, "cpu", negatives=6,
                 generator=torch.Generator().manual_seed(3)).detach()
    drawn = torch.randint(30, (6,), generator=torch.Generator().manual_seed(3))
    rows = torch.cat([torch.tensor([0, 1, 4, 1, 2, 5]), drawn]).unique()
    assert 6 <= len(rows) < 30  # a subset of the catalog
    table = model.item_vectors()
    hidden = model.encode(torch.tensor([[0, 1], [-1, 4]]), torch.tensor([[False, False], [True, False]]),
                          table)
    queries = torch.stack([hidden[0, 0], hidden[0, 1], hidden[1, 1]])
    logits = model.logits(queries, table[rows])
    labels = torch.searchsorted(rows, torch.tensor([1, 2, 5]))
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # Subsets of the catalog only: the full softmax is a harder (larger) loss.
    assert float(loss) < float(_loss(model, inputs, targets, "cpu").detach())


@pytest.mark.parametrize("kwargs", [{"negatives": 8}, {"precision": "bf16"}])
def test_sampled_negatives_and_bf16_still_learn_the_chain(tmp_path, kwargs):
    ds = _chain_dataset(n_users=60, n_items=40)
    result = train_seq_retriever(
        leave_one_out(ds), _text(len(ds.items)), tmp_path, seq_config=SMALL,
        config=TrainConfig(epochs=40, batch_size=16, lr=5e-3, patience=40, mask_prob=0.0,
                           **kwargs),
    )
    assert result.best_valid["ndcg@10"] > 0.6, result.best_valid  # chance: about 0.1
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["precision"] == kwargs.get("precision", "fp32")


def test_the_time_budget_ends_training_inside_an_epoch(tmp_path):
    ds = _chain_dataset(n_users=80)
    result = train_seq_retriever(
        leave_one_out(ds), _text(len(ds.items)), tmp_path, seq_config=SMALL,
        config=TrainConfig(epochs=10, batch_size=8, max_minutes=1e-9),
    )
    assert result.epochs_run == 1
    assert result.history[0]["steps"] == 1 < 80 // 8  # one step of a ten-step epoch


def test_precision_auto_follows_the_cpu_and_bad_names_are_refused(monkeypatch):
    from recagent.retrieval import seq_train

    monkeypatch.setattr(seq_train, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert seq_train.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(seq_train, "_cpu_flags", lambda: {"avx2"})
    assert seq_train.resolve_precision("auto", "cpu") == "fp32"
    assert seq_train.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        seq_train.resolve_precision("fp16", "cpu")


def test_the_product_samples_negatives_only_for_large_catalogs():
    from recagent.retrieval.seq_train import FULL_SOFTMAX_MAX_ITEMS, default_negatives

    assert default_negatives(3000) == default_negatives(FULL_SOFTMAX_MAX_ITEMS) == 0
    assert default_negatives(FULL_SOFTMAX_MAX_ITEMS + 1) > 0


def test_views_are_crops_of_the_sequence_with_masks_and_the_newest_item_kept():
    from recagent.retrieval.seq_train import _views

    seqs = [np.arange(10), np.array([7]), np.array([-1, 3, 4])]
    views = _views(seqs, np.random.default_rng(0))
    assert len(views) == 6
    for k, view in enumerate(views):
        source = seqs[k % 3][seqs[k % 3] >= 0]
        assert 1 <= len(view) <= len(source) and view[-1] >= 0
        kept = view[view >= 0]
        start = int(np.flatnonzero(source == view[-1])[0]) - len(view) + 1
        assert list(kept) == [x for x in source[start : start + len(view)] if x in kept]


def test_the_contrastive_term_adds_to_the_loss_and_still_learns_the_chain(tmp_path):
    from recagent.retrieval.seq_train import _views

    torch.manual_seed(0)
    model = SequenceRetriever(SMALL, torch.from_numpy(_text(30)), torch.ones(30, dtype=torch.bool)).eval()
    inputs, targets = [np.array([0, 1, 2]), np.array([4, 5])], [np.array([1, 2, 3]), np.array([5, 6])]
    views = _views(targets, np.random.default_rng(0))
    plain = float(_loss(model, inputs, targets, "cpu").detach())
    both = float(_loss(model, inputs, targets, "cpu", views=views, cl_weight=0.5).detach())
    assert both > plain  # the NT-Xent term is positive
    ds = _chain_dataset(n_users=60, n_items=40)
    result = train_seq_retriever(
        leave_one_out(ds), _text(len(ds.items)), tmp_path, seq_config=SMALL,
        config=TrainConfig(epochs=40, batch_size=16, lr=5e-3, patience=40, mask_prob=0.0,
                           cl_weight=0.1, negatives=8),
    )
    assert result.best_valid["ndcg@10"] > 0.6
