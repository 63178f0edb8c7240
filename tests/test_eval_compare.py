"""The per-dataset comparison report merges harness reports and names the best peer."""

import json

from recagent.evals.compare import build_comparison, to_markdown


def _report(models):
    metrics = {"recall@10": 0.0, "ndcg@10": 0.0, "recall@50": 0.0, "ndcg@50": 0.0, "mrr": 0.0,
               "coverage@10": 0.0, "seconds": 1.0}
    return {"dataset": "ml-100k", "protocol": "p", "stage": "test", "n_users": 3, "n_items": 9,
            "models": {name: {**metrics, "recall@10": r, "ndcg@10": n} for name, (r, n) in models.items()}}


def test_comparison_merges_reports_and_picks_the_best_peer_per_metric(tmp_path):
    (tmp_path / "eval-ml-100k.json").write_text(json.dumps(_report({"itemknn": (0.1, 0.05)})))
    (tmp_path / "fusion-ml-100k.json").write_text(json.dumps(_report({"fusion": (0.3, 0.2)})))
    (tmp_path / "peers-ml-100k.json").write_text(
        json.dumps(_report({"als": (0.2, 0.09), "sasrec": (0.25, 0.08)})))
    report = build_comparison("ml-100k", tmp_path, wall_seconds={"fusion-ml-100k.json": 12.0},
                              training_seconds={"fusion": 283.0})
    assert set(report["models"]) == {"itemknn", "fusion", "als", "sasrec"}
    assert report["models"]["fusion"]["ours"] and not report["models"]["als"]["ours"]
    assert report["best_peer"]["recall@10"] == {"model": "sasrec", "value": 0.25}
    assert report["best_peer"]["ndcg@10"] == {"model": "als", "value": 0.09}
    assert "coldstart-ml-100k.json" not in report["commands"]  # no such report: no command
    md = to_markdown(report)
    rows = [line for line in md.splitlines() if line.startswith("| ") and "ours" not in line]
    assert rows[0].startswith("| fusion | yes | 0.3000 | 0.2000") and rows[0].endswith("| 283 |")
    assert "(12 s)" in md
