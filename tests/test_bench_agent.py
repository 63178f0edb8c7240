"""The agent benchmark's measurements, on the tiny shop without an LLM (the real run is
`python -m recagent.evals.bench_agent`)."""

import math

import pytest

from recagent.evals.bench_agent import time_turns, to_markdown
from recagent.evals.report import percentile


def test_percentile_interpolates_between_ranks():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile(values, 0) == 10.0 and percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_time_turns_runs_the_scripted_conversations(tiny_shop_dir, tmp_path):
    from recagent.app.assistant import Assistant
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings

    assistant = Assistant(Runtime(Settings(home=tmp_path, data=tiny_shop_dir, llm="none")), k=3)
    assistant.prepare(show_progress=False)
    row = time_turns(assistant, 4)
    assert row["turns"] == 4 and 0 < row["p50_ms"] <= row["p95_ms"]
    assert row["items_shown"] == 12 and row["llm_prose_checked"] == 0
    report = {"timestamp": "t", "command": "c", "skipped": {}, "maxrss_mb": 1.0,
              "machine": {"cpu_count": 2, "torch": "x", "torch_threads": 1, "python": "3.11"},
              "rows": {"no LLM (plan)": row}}
    assert "| no LLM (plan) | 4 |" in to_markdown(report)
