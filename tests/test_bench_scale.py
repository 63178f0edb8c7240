"""The scale benchmark's own parts: a stage in-process, the sizes, the report table."""

import pytest

from recagent.catalog.columnar import load_columns
from recagent.evals.bench_scale import _sizes, run_stage, to_markdown


def test_generate_stage_saves_the_shop_and_reports_its_size_and_memory(tmp_path):
    result = run_stage("generate", tmp_path, users=120, items=150)
    dataset = load_columns(tmp_path / "dataset")
    assert (result["users"], result["items"]) == (len(dataset.histories), len(dataset.items))
    assert result["interactions"] == len(dataset.interactions) >= 120 * 5
    assert result["seconds"] > 0 and result["maxrss_mb"] > 10


def test_sizes_parse_users_by_items_and_reject_anything_else():
    assert _sizes("3000x3000, 100000x3000") == [(3000, 3000), (100000, 3000)]
    with pytest.raises(SystemExit, match="USERSxITEMS"):
        _sizes("3000*3000")


def test_markdown_shows_each_stage_or_its_failure():
    report = {"timestamp": "t", "machine": "m", "command": "c", "stages": ["generate", "index"],
              "runs": [{"name": "10x100", "users": 10, "items": 100, "stages": {
                  "generate": {"users": 10, "items": 101, "interactions": 55,
                               "seconds": 1.25, "maxrss_mb": 1234.0},
                  "index": {"error": ["boom"]}}}]}
    table = to_markdown(report)
    assert "| 10x100 | 10 | 101 | 55 | 1.2 s / 1,234 MB | failed |" in table
