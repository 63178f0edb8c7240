"""`recagent validate DIR` and the dataset summary behind it."""

import json

from typer.testing import CliRunner

from recagent.catalog.model import Dataset, Interaction, Item
from recagent.catalog.summary import summarize
from recagent.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def _validate(folder):
    return runner.invoke(app, ["validate", str(folder)], catch_exceptions=False)


def test_valid_folder_prints_counts(tiny_shop_dir, tiny_shop):
    result = _validate(tiny_shop_dir)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("ok ") and "(generic format)" in first
    assert f"{len(tiny_shop.items)} items, {len(tiny_shop.histories)} users" in first
    assert "items with: description 100%" in result.output


def test_malformed_line_is_one_error_and_exit_1(tmp_path):
    (tmp_path / "items.jsonl").write_text(
        '{"item_id": "A", "title": "a"}\n{"item_id": "B" "title": "b"}\n', encoding="utf-8")
    result = _validate(tmp_path)
    assert result.exit_code == 1
    assert "items.jsonl, line 2: invalid JSON" in result.output
    assert "Traceback" not in result.output


def test_unknown_item_in_interactions_names_the_line(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"item_id": "A", "title": "a"}\n', encoding="utf-8")
    (tmp_path / "interactions.csv").write_text(
        "user_id,item_id,timestamp\nu1,A,1\nu1,Z,2\n", encoding="utf-8")
    result = _validate(tmp_path)
    assert result.exit_code == 1
    assert "interactions.csv, line 3" in result.output


def test_missing_folder_is_an_error(tmp_path):
    result = _validate(tmp_path / "nothere")
    assert result.exit_code == 1
    assert "dataset folder not found" in result.output


def test_dataset_name_markup_is_printed_verbatim(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"item_id": "A", "title": "a"}\n', encoding="utf-8")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "[red]shop[/red]"}), encoding="utf-8")
    result = _validate(tmp_path)
    assert result.exit_code == 0, result.output
    assert "[red]shop[/red]" in result.output
    assert "no interactions" in result.output


def test_summary_notes_short_histories_cold_items_shared_titles_and_no_prices():
    items = [Item("A", "Pen"), Item("B", "pen "), Item("C", "Ink"), Item("D", "Pad")]
    inters = [Interaction("u1", "A", 1), Interaction("u1", "C", 2), Interaction("u1", "B", 3),
              Interaction("u2", "A", 1)]
    summary = summarize(Dataset("s", items, inters), min_history=3)
    assert (summary.items, summary.users, summary.interactions) == (4, 2, 4)
    assert summary.coverage["price"] == 0 and summary.coverage["description"] == 0
    text = "\n".join(summary.notes)
    assert "1 of 2 users have fewer than 3 interactions" in text
    assert "1 items have no interaction" in text
    assert "2 items share a title" in text
    assert "no prices" in text


def test_summary_of_a_clean_dataset_has_no_notes():
    items = [Item("A", "Pen", price=1.0), Item("B", "Ink", price=2.0)]
    inters = [Interaction("u1", "A", 1), Interaction("u1", "B", 2), Interaction("u1", "A", 3)]
    summary = summarize(Dataset("s", items, inters), min_history=3)
    assert summary.notes == []
    assert summary.coverage["price"] == 1.0
