"""Versioned prompt and text templates, loaded as package data and rendered strictly.

Each template is a YAML file in this package: ``name``, ``version`` (an integer bumped on
every change of wording), ``description`` and ``template`` (Jinja2). Rendering uses
``StrictUndefined``: a missing variable is an error, never a silent blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import jinja2
import jinja2.meta
import yaml

__all__ = ["PromptTemplate", "load_template", "one_line", "quoted", "render", "template_names",
           "template_variables"]


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    description: str
    source: str

    def render(self, **variables: object) -> str:
        return _compile(self.source).render(**variables).strip()


_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def one_line(value: object) -> str:
    """``value`` on one line: text from data or users cannot start a line of its own in a
    prompt (a title ending in "\nSentence: ..." would pose as the prompt's own line)."""
    return " ".join(str(value).split())


def quoted(value: object) -> str:
    """``value`` for use inside a prompt's double quotes: on one line, and with its own
    double quotes made single, so it cannot close the quote and go on as instructions."""
    return one_line(value).replace('"', "'")


_ENV.filters["one_line"] = one_line
_ENV.filters["quoted"] = quoted


def template_variables(source: str) -> set[str]:
    """The variables a template's ``source`` uses (with this package's filters known)."""
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(source)))


@cache
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def template_names() -> list[str]:
    """Names of all templates shipped in this package."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


@cache
def load_template(name: str) -> PromptTemplate:
    path = resources.files(__name__).joinpath(f"{name}.yaml")
    if not path.is_file():
        raise KeyError(f"no prompt template named {name!r} (have: {', '.join(template_names())})")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = {"name", "version", "template"} - set(data)
    if missing or data["name"] != name:
        raise ValueError(f"prompt template {name}.yaml is malformed (missing {sorted(missing)})")
    return PromptTemplate(
        name=name,
        version=int(data["version"]),
        description=str(data.get("description", "")),
        source=str(data["template"]),
    )


def render(name: str, **variables: object) -> str:
    """Render template ``name`` with ``variables``; missing variables raise."""
    return load_template(name).render(**variables)
