"""The trained seqrec in the product: its Chroma index, recommend with evidence, the default."""

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.cli import app
from recagent.protocol.split import leave_one_out
from recagent.retrieval.diversity import spread_categories
from recagent.retrieval.fusion_choice import fusion_is_tuned
from recagent.retrieval.index import open_chroma
from recagent.retrieval.registry import RETRIEVERS
from recagent.retrieval.retriever import HistoryRetriever
from recagent.retrieval.seq_model import SeqConfig
from recagent.retrieval.seq_retriever import SeqIndex, SeqRetriever, checkpoint_hash
from recagent.retrieval.seq_train import SeqScorer, TrainConfig, train_seq_retriever

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def seq_home(tiny_shop, tiny_shop_dir, built_index, tmp_path_factory):
    """A RECAGENT_HOME holding a 2-epoch seqrec checkpoint of the tiny shop, where
    ``recommend`` looks for one."""
    home = tmp_path_factory.mktemp("seq-home")
    target = Runtime(Settings(home=home, data=tiny_shop_dir)).model_dir("seqrec")
    train_seq_retriever(leave_one_out(tiny_shop), built_index.embeddings(), target,
                        seq_config=SeqConfig(max_len=10, dim=32, layers=1),
                        config=TrainConfig(epochs=2, batch_size=32))
    return home, target


def test_seq_index_holds_the_model_item_vectors_and_rebuilds_incrementally(tiny_shop, seq_home, tmp_path):
    _, ckpt = seq_home
    scorer = SeqScorer.load(ckpt, tiny_shop)
    index = SeqIndex(open_chroma(tmp_path / "chroma"), tiny_shop, scorer, ckpt)
    first = index.build()
    assert first.encoded == len(tiny_shop.items) and index.is_current()
    assert index.build().encoded == 0
    stored = index.collection.get(ids=tiny_shop.item_ids[:5], include=["embeddings"])
    expected = scorer.item_vectors()[[tiny_shop.item_index[i] for i in stored["ids"]]]
    np.testing.assert_allclose(np.asarray(stored["embeddings"])[:, :-1] * index._max_norm, expected,
                               rtol=1e-4, atol=1e-5)
    assert "seqrec" in index.name


def test_seq_retriever_ranks_like_the_model_and_gives_evidence(tiny_shop, seq_home, tmp_path):
    _, ckpt = seq_home
    scorer = SeqScorer.load(ckpt, tiny_shop)
    index = SeqIndex(open_chroma(tmp_path / "chroma"), tiny_shop, scorer, ckpt)
    index.build()
    retriever = SeqRetriever(tiny_shop, scorer, index)
    user = tiny_shop.users[0]
    history = tiny_shop.histories[user]
    recs = retriever.recommend(history, 5)
    seen = {x.item_id for x in history}
    assert len(recs) == 5 and not {r.item_id for r in recs} & seen
    scores = scorer.score([history])[0]
    scores[[tiny_shop.item_index[i] for i in seen]] = -np.inf
    exact = [tiny_shop.item_ids[i] for i in np.argsort(-scores, kind="stable")[:5]]
    assert recs[0].item_id == exact[0]  # HNSW on 300 items finds the exact best
    assert [r.item_id for r in recs] == exact
    assert recs[0].score == pytest.approx(float(scores[tiny_shop.item_index[exact[0]]]), rel=1e-3)
    for r in recs:
        assert r.evidence and all(e.item_id in seen for e in r.evidence)
        assert r.explanation
    assert [r.item_id for r in retriever.recommend([], 3)]  # empty history: popular items


def test_runtime_default_is_seqrec_only_with_a_checkpoint(tiny_shop_dir, seq_home, tmp_path):
    home, _ = seq_home
    assert isinstance(Runtime(Settings(home=home, data=tiny_shop_dir)).recommender(), SeqRetriever)
    with_ckpt = Runtime(Settings(home=home, data=tiny_shop_dir))
    assert isinstance(with_ckpt.recommender("text"), HistoryRetriever)
    empty = Runtime(Settings(home=tmp_path / "empty", data=tiny_shop_dir))
    assert empty.recommender().name == "cooc-text"  # no checkpoint: item-kNN fused with text
    from recagent.catalog import RecAgentError

    with pytest.raises(RecAgentError, match="no trained seqrec"):
        empty.recommender("seqrec")


def test_cli_index_with_a_checkpoint_then_recommend_uses_seqrec(tiny_shop, tiny_shop_dir, seq_home):
    home, ckpt = seq_home
    env = {"RECAGENT_HOME": str(home), "COLUMNS": "200"}
    result = runner.invoke(app, ["index", "--data", str(tiny_shop_dir), "--encoder", str(ckpt)],
                           env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "seqrec" in result.output and f"{len(tiny_shop.items)} items" in result.output
    user = tiny_shop.users[1]
    result = runner.invoke(app, ["recommend", "--data", str(tiny_shop_dir), "--user", user,
                                 "--json", "-k", "4"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["retriever"] == "seqrec" and len(payload["recommendations"]) == 4
    seen = {x.item_id for x in tiny_shop.histories[user]}
    for rec in payload["recommendations"]:
        assert rec["item_id"] not in seen and rec["evidence"]
        assert all(e["item_id"] in seen for e in rec["evidence"])


def test_cli_recommend_can_force_the_text_retriever(tiny_shop, tiny_shop_dir, seq_home):
    home, _ = seq_home
    env = {"RECAGENT_HOME": str(home), "COLUMNS": "200"}
    result = runner.invoke(app, ["recommend", "--data", str(tiny_shop_dir), "--user",
                                 tiny_shop.users[1], "--json", "-k", "3", "--retriever", "text"],
                           env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["retriever"] == "text"
    bad = runner.invoke(app, ["recommend", "--data", str(tiny_shop_dir), "--user",
                              tiny_shop.users[1], "--retriever", "nope"], env=env)
    assert bad.exit_code == 1 and "retriever must be one of" in bad.output


def test_fusion_is_the_default_once_tuned_and_ranks_exactly(tiny_shop, tiny_shop_dir, seq_home, tmp_path):
    import shutil

    from recagent.retrieval.fusion import FusionRetriever

    _, ckpt = seq_home
    home = tmp_path / "home"
    rt = Runtime(Settings(home=home, data=tiny_shop_dir))
    shutil.copytree(ckpt, rt.model_dir("seqrec"))  # a copy: tuning writes fusion.json next to it
    assert not fusion_is_tuned(rt.model_dir("seqrec")) and isinstance(rt.recommender(), SeqRetriever)
    scorer = RETRIEVERS.create("fusion", rt.context()).scorer  # tunes on validation, caches it
    assert fusion_is_tuned(rt.model_dir("seqrec"))
    # One checkpoint hash: the 16 hex digits fusion.json has always stored (so files written
    # by earlier versions stay valid) also name the seqrec collection.
    model_pt = (rt.model_dir("seqrec") / "model.pt").read_bytes()
    sha = hashlib.sha256(model_pt).hexdigest()[:16]
    assert json.loads((rt.model_dir("seqrec") / "fusion.json").read_text())["model_sha"] == sha
    assert checkpoint_hash(rt.model_dir("seqrec")) == sha
    assert RETRIEVERS.create("seqrec", rt.context()).prepare().collection.endswith(sha)
    model = Runtime(Settings(home=home, data=tiny_shop_dir)).recommender()
    assert isinstance(model, FusionRetriever) and model.name == "fusion"
    user = tiny_shop.users[2]
    history = tiny_shop.histories[user]
    recs = model.recommend(history, 6)
    scorer.fit(list(tiny_shop.histories.values()))  # the product's kNN side sees every history
    scores = scorer.score([history])[0]
    scores[[tiny_shop.item_index[x.item_id] for x in history]] = -np.inf
    ranking = [tiny_shop.item_ids[i] for i in np.argsort(-scores, kind="stable")]
    exact = spread_categories(ranking, lambda i: tiny_shop.items[i].category[-1], 6)
    assert [r.item_id for r in recs] == exact  # the exact ranking, categories spread
    seen = {x.item_id for x in history}
    assert all(r.evidence and {e.item_id for e in r.evidence} <= seen for r in recs)
    assert [r.item_id for r in model.recommend([], 3)]  # empty history: popular items
    result = runner.invoke(app, ["recommend", "--data", str(tiny_shop_dir), "--user", user, "--json",
                                 "-k", "3"], env={"RECAGENT_HOME": str(home)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    exact = spread_categories(ranking, lambda i: tiny_shop.items[i].category[-1], 3)
    assert payload["retriever"] == "fusion" and [r["item_id"] for r in payload["recommendations"]] == exact


def test_old_fusion_json_keeps_its_choice_and_cold_items_are_retrieved_by_text(
        tiny_shop, tiny_shop_dir, seq_home, tmp_path):
    import shutil

    from recagent.retrieval.fusion import FusionRetriever

    _, ckpt = seq_home
    home = tmp_path / "home"
    rt = Runtime(Settings(home=home, data=tiny_shop_dir))
    shutil.copytree(ckpt, rt.model_dir("seqrec"))
    RETRIEVERS.create("fusion", rt.context())
    cache = rt.model_dir("seqrec") / "fusion.json"
    tuned = json.loads(cache.read_text())
    assert "cold_offset" in tuned and tuned["cold_n_cold_cases"] > 0
    # A fusion.json from before cold items had an offset: same variant and weight, and an
    # offset tuned on validation is added.
    old = {k: v for k, v in tuned.items() if not k.startswith("cold")}
    old["weight"] = 0.35
    cache.write_text(json.dumps(old))
    scorer = RETRIEVERS.create("fusion", Runtime(Settings(home=home, data=tiny_shop_dir)).context()).scorer
    assert scorer.weights == [0.35, 0.65]
    again = json.loads(cache.read_text())
    assert {k: again[k] for k in old} == old and "cold_offset" in again
    # In the product, cold = items in no history. One whose text matches a user's history is
    # recommended; the warm picks keep their fused order.
    cache.write_text(json.dumps(again | {"cold_offset": 3.0}))
    model = Runtime(Settings(home=home, data=tiny_shop_dir)).recommender()
    assert isinstance(model, FusionRetriever) and model.scorer.cold_offset == 3.0
    bought = {x.item_id for h in tiny_shop.histories.values() for x in h}
    cold = [i for i in tiny_shop.item_ids if i not in bought]
    assert cold and model.scorer.cold.sum() == len(cold)
    user = tiny_shop.users[4]
    history = tiny_shop.histories[user]
    text = model.scorer._text_z([history])[0]  # the history's text profile, standardised
    best_cold = max(cold, key=lambda i: text[tiny_shop.item_index[i]])
    model.category_share = None  # score order, to compare with the fused scores
    recs = [r.item_id for r in model.recommend(history, 10)]
    assert best_cold in recs
    fused = model.scorer.fused([history])[0]
    warm = [i for i in recs if i in bought]
    assert warm == sorted(warm, key=lambda i: -fused[tiny_shop.item_index[i]])
