"""Prompt regression: every template's renderings for fixed inputs match its golden files.

A wording change shows here as a unified diff. To accept it on purpose: bump the template's
``version:``, then run ``recagent prompts update-golden`` (or this file with
``RECAGENT_UPDATE_GOLDEN=1``) and commit the goldens with the template.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recagent.cli import app
from recagent.evals.prompt_golden import (
    CASES,
    Template,
    check,
    golden_path,
    load_templates,
    render_case,
    update,
)

GOLDEN = Path(__file__).parent / "golden" / "prompts"
TEMPLATES = load_templates()


@pytest.fixture(scope="module")
def problems():
    if os.environ.get("RECAGENT_UPDATE_GOLDEN") == "1":
        changes = update(GOLDEN)
        # A run that rewrote the goldens compared nothing: it must not report a pass.
        pytest.fail("RECAGENT_UPDATE_GOLDEN=1: goldens rewritten ("
                    + (", ".join(changes) or "no changes")
                    + "); review `git diff tests/golden` and run again without it to check")
    return check(GOLDEN, TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_template_matches_its_goldens(template, problems):
    mine = [str(p) for p in problems if p.template == template.name]
    assert not mine, "\n\n".join(mine)


def test_no_stale_golden_files(problems):
    stale = [str(p) for p in problems if p.template == "*"]
    assert not stale, "\n".join(stale)


def test_every_file_in_prompts_is_a_checked_template():
    files = {e.name for e in resources.files("recagent.prompts").iterdir()
             if e.name.endswith((".yaml", ".jinja"))}
    assert files == {t.file for t in TEMPLATES}
    assert {"explain_prose", "agent_reply", "chat_template"} <= {t.name for t in TEMPLATES}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_hostile_text_is_rendered_as_data(template):
    text = render_case(template, "hostile")
    assert "49" not in text and "admin" not in text.replace("{% if true %}admin{% endif %}", "")
    if template.variables & {"item", "title", "titles", "entries", "related", "evidence",
                             "message", "history"}:
        assert "{{ 7*7 }}" in text  # the item's text arrived verbatim, not evaluated


# --- The mechanism itself, on a throwaway template ---------------------------------------

def _fake(version: int = 1, source: str = 'Product: "{{ title }}"\nSentence:') -> Template:
    return Template("fake_prompt", version, source, "yaml", "fake_prompt.yaml")


def test_a_template_without_goldens_fails_with_the_update_command(tmp_path):
    found = check(tmp_path, [_fake()])
    assert len(found) == 1
    assert "no golden renderings for template fake_prompt" in found[0].message
    assert "recagent prompts update-golden" in found[0].message


def test_update_then_check_is_clean_and_files_are_readable(tmp_path):
    written = update(tmp_path, [_fake()])
    assert "wrote fake_prompt.json" in written and len(written) == len(CASES) + 1
    assert check(tmp_path, [_fake()]) == []
    assert golden_path(tmp_path, _fake(), "short").read_text() == 'Product: "Trailhead 2-Person Dome Tent"\nSentence:'
    assert json.loads((tmp_path / "fake_prompt.json").read_text())["version"] == 1
    assert update(tmp_path, [_fake()]) == []  # nothing to do


def test_wording_change_without_version_bump_fails(tmp_path):
    update(tmp_path, [_fake()])
    changed = _fake(source='Item: "{{ title }}"\nSentence:')
    found = check(tmp_path, [changed])
    assert len(found) == 1 and "changed but its version is still 1: bump the version" in found[0].message
    with pytest.raises(ValueError, match="changed without a version bump"):
        update(tmp_path, [changed])
    assert check(tmp_path, [_fake()]) == []  # the refused update wrote nothing
    assert update(tmp_path, [changed], allow_same_version=True)
    assert check(tmp_path, [changed]) == []


def test_version_bump_without_golden_update_fails_then_update_replaces_files(tmp_path):
    update(tmp_path, [_fake()])
    bumped = _fake(version=2, source='Item: "{{ title }}"\nSentence:')
    found = check(tmp_path, [bumped])
    assert any("is version 2 but its goldens are for version 1" in p.message for p in found)
    changes = update(tmp_path, [bumped])
    assert "removed fake_prompt.v1.short.txt" in changes and "wrote fake_prompt.v2.short.txt" in changes
    assert check(tmp_path, [bumped]) == []


def test_a_changed_rendering_shows_a_unified_diff(tmp_path):
    update(tmp_path, [_fake()])
    golden_path(tmp_path, _fake(), "long").write_text('Product: "Something else"\nSentence:')
    found = check(tmp_path, [_fake()])
    assert [p.case for p in found] == ["long"]
    message = found[0].message
    assert "--- golden/fake_prompt.v1.long.txt" in message
    assert '-Product: "Something else"' in message and '+Product: "Item 00: Summit' in message


def test_stale_goldens_and_unknown_variables_are_reported(tmp_path):
    update(tmp_path, [_fake()])
    (tmp_path / "gone.v3.short.txt").write_text("x")
    assert any("stale golden files ['gone.v3.short.txt']" in p.message for p in check(tmp_path, [_fake()]))
    odd = replace(_fake(), source="{{ no_such_variable }}")
    with pytest.raises(KeyError, match="no_such_variable.*INPUTS in evals/prompt_golden.py"):
        render_case(odd, "short")


def test_cli_update_check_and_show(tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["prompts", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "recagent prompts update-golden" in result.output
    result = runner.invoke(app, ["prompts", "update-golden", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "explain_prose.json").is_file()
    result = runner.invoke(app, ["prompts", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 0 and "all prompt goldens match" in result.output
    result = runner.invoke(app, ["prompts", "show", "explain_prose", "--case", "hostile"])
    assert result.exit_code == 0 and "{{ 7*7 }}" in result.output
    result = runner.invoke(app, ["prompts", "show", "nope"])
    assert result.exit_code == 1 and "no template 'nope'" in result.output
