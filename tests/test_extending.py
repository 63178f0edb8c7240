"""Adding a retriever is one file and one registration line (docs/extending-retrievers.md):
the page's example, registered, goes through `recagent eval --models` and `recommend`."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recagent.cli import app
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import leave_one_out
from recagent.retrieval.registry import RETRIEVERS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending-retrievers.md"
EXAMPLE = Path(__file__).with_name("category_popularity.py")
runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def registered():
    # The registration line of the page, with the example's module where the tests keep it.
    RETRIEVERS.register("category-popularity", "category_popularity:CategoryPopularity.from_context",
                        help="popular items of the user's categories")
    yield
    RETRIEVERS.unregister("category-popularity")


def test_the_page_shows_the_example_file_and_its_registration_line():
    page = PAGE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert EXAMPLE.read_text() in blocks
    assert any(b.strip().startswith('RETRIEVERS.register("category-popularity",') for b in blocks)


def test_a_registered_retriever_is_evaluated_and_served(registered, tiny_shop, tiny_shop_dir,
                                                        tmp_path):
    from category_popularity import CategoryPopularity

    out = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "--data", str(tiny_shop_dir), "--models",
                                 "category-popularity,popularity", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["models"]
    assert set(report) == {"category-popularity", "popularity"}
    direct = evaluate_scorer(CategoryPopularity(tiny_shop), leave_one_out(tiny_shop)).metrics
    for metric, value in direct.items():
        assert report["category-popularity"][metric] == pytest.approx(value, abs=1e-6)
    user = tiny_shop.users[0]
    result = runner.invoke(app, ["recommend", "--data", str(tiny_shop_dir), "--user", user,
                                 "--retriever", "category-popularity", "--json", "-k", "4"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["retriever"] == "category-popularity"
    theirs = {tiny_shop.items[x.item_id].category[-1] for x in tiny_shop.histories[user]}
    picks = [r["item_id"] for r in payload["recommendations"]]
    assert len(picks) == 4 and all(tiny_shop.items[i].category[-1] in theirs for i in picks)
    assert not set(picks) & {x.item_id for x in tiny_shop.histories[user]}
    assert np.isfinite([r["score"] for r in payload["recommendations"]]).all()
