"""MkDocs hooks: the pages that are generated when the site builds, so they cannot drift.

* ``<!-- recagent:cli-reference -->`` in a page becomes the reference of every ``recagent``
  command: typer's own Markdown docs of the app (usage, arguments, every option with its
  type, default and help).
* ``<!-- recagent:http-reference -->`` becomes the HTTP reference, rendered from the FastAPI
  app's OpenAPI schema (routes, parameters, bodies, responses, every schema's fields). The app
  is built with ``prepare=False`` on an in-memory database: no model, index or dataset loads.
* ``index.md`` is the README (the front page), with its ``docs/`` links made site-relative.
* ``reports/`` holds the evaluation reports from ``evals/reports/`` and an index of them; a
  page's ``../evals/reports/X`` link (right on GitHub) points there in the site.

``tests/test_docs.py`` imports this file to check that the references cover every command
and route.
"""

from __future__ import annotations

import html
import re
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLI_MARKER = "<!-- recagent:cli-reference -->"
HTTP_MARKER = "<!-- recagent:http-reference -->"
REPORTS = ROOT / "evals" / "reports"

_generated: dict[str, str] = {}


# --- text helpers -------------------------------------------------------------------------

def _md(text: str | None) -> str:
    """Text as Markdown in a table cell: one line, HTML-escaped outside `code`, and no bare
    pipe (Python-Markdown's tables leave pipes inside backticks alone)."""
    if not text:
        return ""
    parts = " ".join(text.split()).split("`")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            parts[i] = html.escape(part, quote=False).replace("|", "&#124;")
    return "`".join(parts)


def _code(text: str) -> str:
    return f"``{text}``" if "`" in text else f"`{text}`"


def _paragraphs(text: str) -> str:
    blocks = [" ".join(b.split()) for b in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(_md(b) for b in blocks if b)


def _anchor(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-")


# --- the CLI reference ----------------------------------------------------------------------

def _root_command():
    import typer

    from recagent.cli import app

    root = typer.main.get_command(app)
    return root, root.context_class(root, info_name="recagent")


def cli_commands() -> list[tuple[str, ...]]:
    """Every command path of the ``recagent`` app, e.g. ("eval", "prompts"), in ``--help``
    order. Typer may bring its own copy of click: its objects are used by interface only."""
    root, ctx = _root_command()
    found: list[tuple[str, ...]] = []

    def walk(cmd, path):
        if path:
            found.append(path)
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, path + (name,))

    walk(root, ())
    return found


def cli_reference() -> str:
    """Typer's own Markdown docs of the app (what ``typer recagent.cli utils docs`` writes),
    one heading per command, under the page's title."""
    from typer.cli import get_docs_for_click

    root, ctx = _root_command()
    text = get_docs_for_click(obj=root, ctx=ctx, name="recagent")
    body = text.split("\n", 1)[1]  # the page has its own title
    return ("Generated from the typer app when the site builds; `recagent COMMAND --help` "
            "prints the same.\n" + body)


# --- the HTTP reference ---------------------------------------------------------------------

def openapi_schema() -> dict[str, Any]:
    """The HTTP app's OpenAPI schema, from an app that loads nothing (in-memory database)."""
    from recagent.app.settings import Settings
    from recagent.server.app import create_app
    from recagent.server.store import SessionStore

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), llm="none")
        app = create_app(settings, store=SessionStore("sqlite://"), prepare=False)
        return app.openapi()


_METHODS = ("get", "post", "put", "patch", "delete")


def http_routes(spec: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(METHOD, path) of every route in the schema."""
    spec = spec or openapi_schema()
    return [(m.upper(), path) for path, ops in spec["paths"].items() for m in _METHODS if m in ops]


def http_reference(spec: dict[str, Any] | None = None) -> str:
    spec = spec or openapi_schema()
    info = spec.get("info", {})
    lines = [(f"Generated from the app's OpenAPI schema ({_md(info.get('title'))}, API version "
              f"{_md(str(info.get('version')))}); a running server serves the same schema at "
              "`/openapi.json` and browsable docs at `/docs`."), "",
             "## Routes", "", "| route | what it does |", "|---|---|"]
    for method, path in http_routes(spec):
        op = spec["paths"][path][method.lower()]
        lines.append(f"| [{_code(method + ' ' + path)}](#{_anchor(method, path)}) | "
                     f"{_md(op.get('summary'))} |")
    lines.append("")
    for method, path in http_routes(spec):
        lines += _operation(method, path, spec["paths"][path][method.lower()])
    lines += ["## Schemas", ""]
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        lines += _schema(name, schema)
    return "\n".join(lines)


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### {method} {_code(path)} {{#{_anchor(method, path)}}}", ""]
    if op.get("summary"):
        lines += [_md(op["summary"]) + ".", ""]
    if op.get("description"):
        lines += [_paragraphs(op["description"]), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for p in params:
            lines.append(f"| {_code(p['name'])} | {p['in']} | {_schema_type(p.get('schema', {}))}"
                         f"{_constraints(p.get('schema', {}))} | {'yes' if p.get('required') else 'no'}"
                         f" | {_md(p.get('description'))} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        for ctype, content in body.get("content", {}).items():
            required = ", required" if body.get("required") else ""
            lines += [f"Request body ({_code(ctype)}{required}): "
                      + _schema_type(content.get("schema", {})), ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, resp in op.get("responses", {}).items():
        bodies = [f"{_code(ctype)} {_schema_type(c.get('schema', {}))}".strip()
                  for ctype, c in resp.get("content", {}).items()]
        lines.append(f"| {status} | {_md(resp.get('description'))} | {'; '.join(bodies)} |")
    lines.append("")
    return lines


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name} {{#{_anchor('schema', name)}}}", ""]
    if schema.get("description"):
        lines += [_paragraphs(schema["description"]), ""]
    props = schema.get("properties", {})
    if not props:
        return lines + [f"Type: {_schema_type(schema)}.", ""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | description |", "|---|---|---|---|"]
    for field, sub in props.items():
        desc = _md(sub.get("description"))
        if "default" in sub and sub["default"] is not None:
            desc = (desc + " " if desc else "") + f"Default: {_code(repr_json(sub['default']))}."
        lines.append(f"| {_code(field)} | {_schema_type(sub)}{_constraints(sub)} | "
                     f"{'yes' if field in required else 'no'} | {desc} |")
    lines.append("")
    if schema.get("additionalProperties") is False:
        lines += ["Unknown fields are rejected (422).", ""]
    return lines


def repr_json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _schema_type(s: dict[str, Any]) -> str:
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor('schema', name)})"
    for key in ("anyOf", "oneOf"):
        if key in s:
            return " or ".join(_schema_type(x) for x in s[key])
    if "enum" in s:
        return " \\| ".join(_code(repr_json(v)) for v in s["enum"])
    if "const" in s:
        return _code(repr_json(s["const"]))
    t = s.get("type")
    if t == "array":
        return f"array of {_schema_type(s.get('items', {}))}"
    if t == "object" and isinstance(s.get("additionalProperties"), dict):
        return f"object of {_schema_type(s['additionalProperties'])}"
    return t or "any"


def _constraints(s: dict[str, Any]) -> str:
    names = {"minLength": "length ≥ {}", "maxLength": "length ≤ {}", "minimum": "≥ {}",
             "maximum": "≤ {}", "exclusiveMinimum": "> {}", "exclusiveMaximum": "< {}",
             "minItems": "≥ {} items", "maxItems": "≤ {} items", "pattern": "pattern {}"}
    found = [fmt.format(_code(str(s[k])) if k == "pattern" else s[k])
             for k, fmt in names.items() if k in s]
    return f" ({', '.join(found)})" if found else ""


# --- the reports ----------------------------------------------------------------------------

def reports_index(names: list[str]) -> str:
    lines = ["# Reports", "",
             ("Every figure in these pages comes from one of these files, written by the "
              "command named next to the figure. They live in `evals/reports/` in the repository."),
             "",
             "| report | files |", "|---|---|"]
    stems = sorted({n.rsplit(".", 1)[0] for n in names})
    for stem in stems:
        links = [f"[{ext}]({stem}.{ext})" for ext in ("md", "json") if f"{stem}.{ext}" in names]
        lines.append(f"| {_code(stem)} | {' · '.join(links)} |")
    return "\n".join(lines) + "\n"


def readme_as_index(text: str) -> str:
    """The README with its repository-relative links made relative to the docs folder."""
    text = re.sub(r"\]\(docs/", "](", text)
    return re.sub(r"\]\(evals/reports/", "](reports/", text)


# --- mkdocs hooks ---------------------------------------------------------------------------

def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, "index.md",
                                content=readme_as_index((ROOT / "README.md").read_text("utf-8"))))
    names = sorted(p.name for p in REPORTS.iterdir() if p.suffix in (".md", ".json"))
    for name in names:
        files.append(File.generated(config, f"reports/{name}",
                                    abs_src_path=str(REPORTS / name)))
    files.append(File.generated(config, "reports/index.md", content=reports_index(names)))
    return files


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        if "cli" not in _generated:
            _generated["cli"] = cli_reference()
        markdown = markdown.replace(CLI_MARKER, _generated["cli"])
    if HTTP_MARKER in markdown:
        if "http" not in _generated:
            _generated["http"] = http_reference()
        markdown = markdown.replace(HTTP_MARKER, _generated["http"])
    depth = page.file.src_uri.count("/")
    return markdown.replace("](" + "../" * (depth + 1) + "evals/reports/",
                            "](" + "../" * depth + "reports/")


def on_pre_build(config):
    _generated.clear()  # each build (and each `mkdocs serve` rebuild) renders afresh
