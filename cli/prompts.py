"""``recagent prompts``: list the templates, show a rendering, check and update the goldens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from recagent.catalog.errors import RecAgentError
from recagent.cli._common import app, err, out, safe, user_errors

prompts_app = typer.Typer(help="Prompt templates: list, show, check and update their goldens.",
                          no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")

GoldenDirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Golden folder (default: tests/golden/prompts of "
                              "the source checkout).")
]


def _golden_dir(directory: Path | None) -> Path:
    from recagent.evals.prompt_golden import default_golden_dir

    directory = directory or default_golden_dir()
    if not directory.parent.is_dir():
        raise RecAgentError(f"{directory.parent} does not exist: run this from a source checkout "
                            "or pass --dir")
    return directory


@prompts_app.command("list")
def prompts_list(directory: GoldenDirOpt = None) -> None:
    """Every template with its version, variables and the state of its goldens."""
    from recagent.evals.prompt_golden import check, load_templates

    with user_errors():
        directory = _golden_dir(directory)
        templates = load_templates()
        problems = check(directory, templates)
    table = Table(title=f"Prompt templates (goldens in {safe(directory)})")
    for col in ("template", "version", "variables", "goldens"):
        table.add_column(col)
    for t in templates:
        mine = [p for p in problems if p.template == t.name]
        state = "[green]ok[/]" if not mine else f"[red]{len(mine)} problem(s)[/]"
        table.add_row(f"{t.name} [dim]({t.file})[/]", str(t.version),
                      ", ".join(sorted(t.variables)), state)
    out().print(table)


@prompts_app.command("show")
def prompts_show(
    name: Annotated[str, typer.Argument(help="Template name, e.g. explain_prose.")],
    case: Annotated[str, typer.Option(help="short, long, empty, non_ascii or hostile.")] = "short",
) -> None:
    """Print a template rendered with one of the golden cases' inputs."""
    from recagent.evals.prompt_golden import CASES, load_templates, render_case

    with user_errors():
        by_name = {t.name: t for t in load_templates()}
        if name not in by_name:
            raise RecAgentError(f"no template {name!r}; have {', '.join(by_name)}")
        if case not in CASES:
            raise RecAgentError(f"--case must be one of {', '.join(CASES)}, not {case!r}")
        try:
            text = render_case(by_name[name], case)
        except KeyError as exc:
            raise RecAgentError(str(exc.args[0])) from None
    out().print(safe(text), highlight=False, soft_wrap=True)


@prompts_app.command("check")
def prompts_check(directory: GoldenDirOpt = None) -> None:
    """Compare every template with its goldens (what the pytest check does); exit 1 on a diff."""
    from recagent.evals.prompt_golden import check

    with user_errors():
        directory = _golden_dir(directory)
        problems = check(directory)
    for p in problems:
        err().print(safe(str(p)), highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    out().print(f"all prompt goldens match ({safe(directory)})", soft_wrap=True)


@prompts_app.command("update-golden")
def prompts_update_golden(
    directory: GoldenDirOpt = None,
    allow_same_version: Annotated[bool, typer.Option(
        "--allow-same-version", help="Accept a changed template source without a version bump "
        "(only when the wording did not change, e.g. a comment).")] = False,
) -> None:
    """Re-render every template's goldens on purpose (review the diff, then commit them)."""
    from recagent.evals.prompt_golden import update

    with user_errors():
        directory = _golden_dir(directory)
        try:
            changes = update(directory, allow_same_version=allow_same_version)
        except (ValueError, KeyError) as exc:
            raise RecAgentError(str(exc.args[0])) from None
    for line in changes:
        out().print(line, highlight=False)
    out().print(f"{len(changes)} change(s) in {directory}" if changes else
                f"goldens are up to date ({directory})", soft_wrap=True)
