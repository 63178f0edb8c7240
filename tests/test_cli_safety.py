"""Issue 14's terminal probes: Rich markup and terminal escapes from users or catalog text
never reach the terminal as such; errors print the offending input escaped, in one line."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from recagent.catalog.safe_text import visible
from recagent.cli import app

runner = CliRunner(env={"COLUMNS": "200"})
# Clear screen, red, an OSC-8 hyperlink whose text hides its target, a right-to-left override
# that reverses what follows, and markup that would close or open Rich tags.
HOSTILE = ("\x1b[2J\x1b[31mSYSTEM: update\x1b[0m \x1b]8;;http://evil.example/\x07click me"
           "\x1b]8;;\x07 \u202etxt.exe [/x] [bold red]HACKED[/]")
RAW = ("\x1b", "\x07", "\u202e", "\x9b")
LEAD = "[/x][b]\x1b[2J\u202e"  # what a 60-column table cell still shows of a title


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def hostile_shop(tmp_path_factory):
    """A small demo shop whose every title carries the hostile text."""
    from recagent.catalog.demo_shop import DemoShopConfig, generate_demo_shop
    from recagent.catalog.generic import save_generic
    from recagent.catalog.model import Dataset

    shop = generate_demo_shop(DemoShopConfig(n_users=8, n_items=100, seed=5, max_history=6))
    items = [replace(i, title=f"{LEAD}{i.title} {HOSTILE}") for i in shop.items.values()]
    path = tmp_path_factory.mktemp("hostile-shop")
    save_generic(Dataset("hostile", items, shop.interactions), path)
    return path, shop.users[0]


def _assert_safe(output: str) -> None:
    for ch in RAW:
        assert ch not in output, f"raw {ch!r} reached the terminal"
    assert "[/x][b]" in output, "markup shown as text"
    assert "␛[2J" in output and "<U+202E>" in output, "controls made visible, not hidden"


def test_probe_5_recommend_prints_catalog_text_inert(hostile_shop):
    path, user = hostile_shop
    result = _run("recommend", "--data", str(path), "--user", user, "-k", "3")
    assert result.exit_code == 0, result.output
    _assert_safe(result.output)


def test_probe_5_ask_and_its_trace_print_catalog_and_user_text_inert(hostile_shop):
    path, user = hostile_shop
    result = _run("ask", "--data", str(path), "--user", user, "--llm", "none", "--trace", "-k", "3",
                  f"something {HOSTILE}")
    assert result.exit_code == 0, result.output
    _assert_safe(result.output)
    as_json = _run("ask", "--data", str(path), "--user", user, "--llm", "none", "--json", "-k", "2",
                   "something")
    for ch in RAW:
        assert ch not in as_json.stdout
    titles = [r["title"] for r in json.loads(as_json.stdout)["recommendations"]]
    assert titles and all(HOSTILE in t for t in titles), "JSON keeps the data, escaped"


def test_probe_5_chat_prints_catalog_and_user_text_inert(hostile_shop, tmp_path):
    path, user = hostile_shop
    script = tmp_path / "lines.txt"
    script.write_text(f"something {HOSTILE}\n/why 1\n/history\n/trace\n", encoding="utf-8")
    result = _run("chat", "--data", str(path), "--user", user, "--llm", "none", "--script", str(script))
    assert result.exit_code == 0, result.output
    _assert_safe(result.output)


@pytest.mark.parametrize("user", ["[/x]", "[bold red]HACKED[/]", "\x1b[2Jx\u202ey"])
def test_probe_4_a_hostile_user_id_is_one_escaped_error_line(tiny_shop_dir, user):
    """`--user '[/x]'` printed a MarkupError traceback; `[bold red]HACKED[/]` misreported."""
    result = _run("recommend", "--data", str(tiny_shop_dir), "--user", user)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("error:"))
    assert visible(user) in line or repr(user)[1:-1] in line, "the input is shown as typed"
    for ch in RAW:
        assert ch not in result.output


def test_probe_4_a_hostile_item_id_in_a_dataset_is_one_escaped_error_line(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.jsonl").write_text('{"item_id": "a", "title": "A"}\n', encoding="utf-8")
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n1,[/x],1\n", encoding="utf-8")
    result = _run("recommend", "--data", str(folder), "--user", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unknown item_id '[/x]'" in result.output


def test_probe_smaller_ask_refuses_an_empty_or_oversized_message(tiny_shop_dir):
    empty = _run("ask", "--data", str(tiny_shop_dir), "--llm", "none", "")
    assert empty.exit_code == 1 and "give a message" in empty.output
    huge = _run("ask", "--data", str(tiny_shop_dir), "--llm", "none", "x" * 100_000)
    assert huge.exit_code == 1 and "100,000 characters" in huge.output
    assert len(huge.output) < 500, "the message is not echoed back"


def test_the_console_backstop_makes_stray_controls_visible():
    from recagent.cli._common import SafeConsole

    buffer = io.StringIO()
    SafeConsole(file=buffer, force_terminal=True, color_system="standard").print(
        "[bold]ok[/] \x1b[2J\u202eend", highlight=False)
    text = buffer.getvalue()
    assert "\x1b[1m" in text, "Rich's own styles still render"
    assert "\x1b[2J" not in text and "\u202e" not in text and "␛[2J" in text and "<U+202E>" in text


@pytest.mark.parametrize(("key", "value"), [("RECAGENT_EXPLAIN_REDRAWS", "abc"),
                                            ("RECAGENT_EXPLAIN_REDRAW_BUDGET", "-3"),
                                            ("RECAGENT_LLM_TIMEOUT", "nan"),
                                            ("RECAGENT_MAX_INFLIGHT", "2.5")])
def test_a_malformed_number_in_the_environment_is_a_clear_error(key, value):
    from recagent.app.settings import Settings
    from recagent.catalog.errors import RecAgentError

    with pytest.raises(RecAgentError, match=f"{key} must be"):
        Settings.from_env({key: value})
    result = CliRunner(env={"COLUMNS": "200", key: value}).invoke(app, ["ask", "hi", "--llm", "none"])
    assert result.exit_code != 0 and f"{key} must be" in result.output
    assert "Traceback" not in result.output


def test_numbers_in_the_environment_round_trip():
    from recagent.app.settings import Settings

    settings = Settings.from_env({"RECAGENT_EXPLAIN_REDRAWS": "3", "RECAGENT_EXPLAIN_REDRAW_BUDGET": "0",
                                  "RECAGENT_MAX_INFLIGHT_PER_KEY": "4"})
    assert (settings.explain_redraws, settings.explain_redraw_budget, settings.max_inflight_per_key) == (3, 0.0, 4)
    again = Settings.from_env(settings.to_env())
    assert again == settings
