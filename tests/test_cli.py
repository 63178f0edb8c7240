"""The recagent command line, driven through typer's CliRunner on the tiny demo shop."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from recagent.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_index_then_incremental_reindex(tiny_shop_dir, tiny_shop):
    first = _run("index", "--data", str(tiny_shop_dir))
    assert first.exit_code == 0, first.output
    second = _run("index", "--data", str(tiny_shop_dir))
    assert second.exit_code == 0
    assert f"{len(tiny_shop.items)} items (0 encoded, {len(tiny_shop.items)} unchanged" in second.output


def test_recommend_json(tiny_shop_dir, tiny_shop):
    user = tiny_shop.users[0]
    result = _run("recommend", "--data", str(tiny_shop_dir), "--user", user, "--json", "-k", "7")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["user"] == user
    recs = payload["recommendations"]
    assert len(recs) == 7
    seen = {x.item_id for x in tiny_shop.histories[user]}
    for rec in recs:
        assert set(rec) == {"item_id", "title", "score", "explanation", "evidence"}
        assert rec["item_id"] in tiny_shop.items and rec["item_id"] not in seen
        assert rec["evidence"] and all(e["item_id"] in seen for e in rec["evidence"])


def test_recommend_table_shows_history_and_evidence(tiny_shop_dir, tiny_shop):
    user = tiny_shop.users[1]
    result = _run("recommend", "--data", str(tiny_shop_dir), "--user", user)
    assert result.exit_code == 0, result.output
    assert f"Recommendations for user {user}" in result.output
    assert "Recent history" in result.output
    newest = tiny_shop.items[tiny_shop.histories[user][-1].item_id].title
    assert newest[:30] in result.output


def test_unknown_user_is_one_clear_line(tiny_shop_dir):
    result = _run("recommend", "--data", str(tiny_shop_dir), "--user", "no-such-user")
    assert result.exit_code == 1
    assert "unknown user 'no-such-user'" in result.output
    assert "Traceback" not in result.output


def test_missing_or_malformed_data_is_a_clear_error(tmp_path):
    result = _run("recommend", "--data", str(tmp_path / "nowhere"), "--user", "1")
    assert result.exit_code == 1 and "error:" in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.jsonl").write_text('{"item_id": "a", "title": "A"}\n{broken\n')
    (bad / "interactions.csv").write_text("user_id,item_id,timestamp\n1,a,0\n")
    result = _run("index", "--data", str(bad))
    assert result.exit_code == 1
    assert "items.jsonl, line 2" in result.output


def test_eval_writes_the_standard_report(tiny_shop_dir, tmp_path):
    out = tmp_path / "report.json"
    result = _run("eval", "--data", str(tiny_shop_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report) >= {"dataset", "protocol", "n_users", "models"}
    assert report["n_users"] == 80
    assert set(report["models"]) == {"popularity", "itemknn", "text"}
    for metrics in report["models"].values():
        for key in ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "recall@50", "ndcg@50",
                    "mrr", "precision@10", "coverage@10", "seconds"]:
            assert 0 <= metrics[key] and (key == "seconds" or metrics[key] <= 1)
        assert metrics["recall@10"] <= metrics["recall@20"] <= metrics["recall@50"]
    assert "popularity" in result.output and "recall@10" in result.output


def test_eval_rejects_unknown_model_and_stage(tiny_shop_dir):
    result = _run("eval", "--data", str(tiny_shop_dir), "--models", "popularity,bogus")
    assert result.exit_code == 1 and "unknown model 'bogus'" in result.output
    result = _run("eval", "--data", str(tiny_shop_dir), "--stage", "train")
    assert result.exit_code == 1 and "--stage must be test or valid" in result.output


def test_importing_the_cli_loads_no_model_or_database():
    code = (
        "import sys, recagent.cli, recagent.retrieval.index, recagent.retrieval.retriever\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'chromadb', 'transformers')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_default_demo_shop_recommend():
    result = _run("recommend", "--user", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"] == "demo-shop"


def test_export_round_trips_through_the_generic_loader(tiny_shop_dir, tiny_shop, tmp_path):
    from recagent.catalog.load import load_dataset

    result = _run("export", str(tmp_path / "copy"), "--data", str(tiny_shop_dir))
    assert result.exit_code == 0, result.output
    copy = load_dataset(tmp_path / "copy")
    assert copy.name == tiny_shop.name
    assert list(copy.items.values()) == list(tiny_shop.items.values())
    assert copy.interactions == tiny_shop.interactions


def test_train_retriever_then_eval_seqrec(tiny_shop_dir, tmp_path):
    result = _run("train-retriever", "--data", str(tiny_shop_dir), "--epochs", "2", "--patience", "7",
                  "--out", str(tmp_path / "ck"))
    assert result.exit_code == 0, result.output
    assert "trained seqrec" in result.output and "best epoch" in result.output
    assert json.loads((tmp_path / "ck" / "metadata.json").read_text())["train_config"]["patience"] == 7
    result = _run("train-retriever", "--data", str(tiny_shop_dir), "--epochs", "2")
    assert result.exit_code == 0, result.output
    out = tmp_path / "seq.json"
    result = _run("eval", "--data", str(tiny_shop_dir), "--models", "seqrec", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert set(json.loads(out.read_text())["models"]) == {"seqrec"}


def test_eval_seqrec_without_training_says_what_to_do(tmp_path, tiny_shop):
    from recagent.catalog.generic import save_generic

    save_generic(tiny_shop, tmp_path / "shop")
    # A fresh RECAGENT_HOME has no trained model.
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "shop"), "--models", "seqrec"],
                           env={"RECAGENT_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    assert result.exit_code == 1
    assert "run `recagent train-retriever`" in result.output


def test_ask_json_respects_constraints_without_llm(tiny_shop_dir, tiny_shop):
    user = tiny_shop.users[0]
    result = _run("ask", "something under $40", "--data", str(tiny_shop_dir), "--user", user,
                  "--llm", "none", "--json", "-k", "4")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["constraints"] == ["price <= $40"]
    recs = payload["recommendations"]
    assert 0 < len(recs) <= 4
    seen = {x.item_id for x in tiny_shop.histories[user]}
    for rec in recs:
        assert rec["item_id"] in tiny_shop.items and rec["item_id"] not in seen
        assert rec["price"] <= 40 and rec["explanation_source"] == "evidence"
    assert payload["trace"][0]["tool"] == "parse_constraints"


def test_ask_with_a_vllm_server_that_is_down_degrades(tiny_shop_dir, tiny_shop):
    result = _run("ask", "--data", str(tiny_shop_dir), "--user", tiny_shop.users[0], "--json",
                  "--llm", "vllm", "--llm-url", "http://127.0.0.1:9/v1", "--rerank", "llm")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["recommendations"] and payload["degraded"]
    assert "cannot reach the vLLM server" in payload["degraded"][0]


def test_ask_unknown_user_is_one_line(tiny_shop_dir):
    result = _run("ask", "hi", "--data", str(tiny_shop_dir), "--user", "nobody", "--llm", "none")
    assert result.exit_code == 1
    assert "unknown user 'nobody'" in result.output and "Traceback" not in result.output


def test_eval_rerank_compares_with_no_reranking(tiny_shop_dir, tmp_path):
    out = tmp_path / "rerank.json"
    result = _run("eval", "--data", str(tiny_shop_dir), "--models", "itemknn", "--rerank",
                  "cooccurrence", "--rerank-top", "10", "--llm", "none", "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"none", "cooccurrence"}
    none, knn = report["results"]["none"]["metrics"], report["results"]["cooccurrence"]["metrics"]
    # Re-ranking reorders the top 10 only: the top-10 recall is the same, the order may differ.
    assert none["recall@10"] == knn["recall@10"] and none["recall@50"] == knn["recall@50"]


def test_recommend_table_reads_at_80_columns(tiny_shop_dir, tiny_shop):
    """Each recommendation is two lines at 80 columns: title; id, category and price (the
    closest history item beside it), and no line is wider than the terminal."""
    from rich.cells import cell_len

    user = tiny_shop.users[1]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(
        app, ["recommend", "--data", str(tiny_shop_dir), "--user", user, "-k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2 * 5  # two lines an item
    assert all("·" in rows[i] for i in range(1, 10, 2))  # the facts line
