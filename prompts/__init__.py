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
import yaml

__all__ = ["PromptTemplate", "load_template", "render", "template_names"]


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
