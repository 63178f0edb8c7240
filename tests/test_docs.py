"""The docs cover what the code has: every CLI command and option, every HTTP route, every
``RECAGENT_*`` variable; the site's generated pages come from the build hooks; the README is a
front page whose links resolve. (``make test`` also builds the site with ``--strict``.)"""

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_text(hooks):
    return hooks.cli_reference()


@pytest.fixture(scope="module")
def spec(hooks):
    return hooks.openapi_schema()


def _commands():
    import typer

    from recagent.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="recagent")
    found = []

    def walk(cmd, path):
        if path:
            found.append((path, cmd))
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), path + (name,))

    walk(root, ())
    return found


def test_every_cli_command_has_a_section(hooks, cli_text):
    commands = [path for path, _ in _commands()]
    assert len(commands) >= 15 and ("eval", "prompts") in commands and ("validate",) in commands
    assert hooks.cli_commands() == commands
    headings = set(re.findall(r"^#{2,4} `(recagent [^`]+)`$", cli_text, flags=re.MULTILINE))
    for path in commands:
        assert "recagent " + " ".join(path) in headings, path


def test_every_cli_option_is_in_its_commands_section(cli_text):
    sections = re.split(r"^#{2,4} `(recagent [^`]+)`$", cli_text, flags=re.MULTILINE)
    by_name = dict(zip(sections[1::2], sections[2::2], strict=True))
    checked = 0
    for path, cmd in _commands():
        body = by_name["recagent " + " ".join(path)]
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            for opt in param.opts if param.param_type_name == "option" else []:
                assert f"`{opt}" in body or f", {opt}" in body, (path, opt)
                checked += 1
    assert checked > 50
    assert "--cold-start" in by_name["recagent eval"] and "--rerank-top" in by_name["recagent eval"]


def test_every_http_route_is_in_the_reference(hooks, spec):
    from fastapi.routing import APIRoute

    from recagent.app.settings import Settings
    from recagent.server.app import create_app
    from recagent.server.store import SessionStore

    app = create_app(Settings(home=ROOT / "nonexistent-home", llm="none"),
                     store=SessionStore("sqlite://"), prepare=False)

    def api_routes(routes):
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            # an included router: FastAPI keeps it whole (``original_router``) in newer versions
            inner = getattr(r, "original_router", None) or r
            if inner is not r or hasattr(r, "routes") and not isinstance(r, APIRoute):
                yield from api_routes(getattr(inner, "routes", []))

    routes = {(method, r.path) for r in api_routes(app.routes) if r.include_in_schema
              for method in r.methods}
    assert ("POST", "/v1/sessions/{session_id}/messages") in routes and len(routes) >= 9
    text = hooks.http_reference(spec)
    assert set(hooks.http_routes(spec)) == routes
    for method, path in routes:
        assert f"### {method} `{path}`" in text, (method, path)


def test_every_request_and_response_schema_has_its_fields(hooks, spec):
    text = hooks.http_reference(spec)
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        assert f"### {name} {{#schema-{name.lower()}}}" in text, name
        for field in schema.get("properties", {}):
            assert f"| `{field}` |" in text, (name, field)
    assert "[MessageIn](#schema-messagein)" in text and "[AnswerOut](#schema-answerout)" in text


def test_building_the_schema_loads_no_model(hooks):
    import subprocess
    import sys

    code = ("import importlib.util, sys; "
            f"s = importlib.util.spec_from_file_location('h', {str(DOCS / '_hooks' / 'reference.py')!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); m.openapi_schema(); "
            "print(sorted({'torch', 'chromadb', 'transformers', 'sentence_transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_hook_fills_the_reference_pages(hooks):
    for page, marker, expect in (("reference/cli.md", hooks.CLI_MARKER, "## `recagent eval`"),
                                 ("reference/http.md", hooks.HTTP_MARKER, "### MessageIn")):
        source = (DOCS / page).read_text(encoding="utf-8")
        assert marker in source
        fake = SimpleNamespace(file=SimpleNamespace(src_uri=page))
        rendered = hooks.on_page_markdown(source, fake, None, None)
        assert marker not in rendered and expect in rendered


def test_report_links_point_into_the_site(hooks):
    fake = SimpleNamespace(file=SimpleNamespace(src_uri="evaluation.md"))
    out = hooks.on_page_markdown("[r](../evals/reports/compare-ml-100k.md)", fake, None, None)
    assert out == "[r](reports/compare-ml-100k.md)"
    readme = hooks.readme_as_index("![s](docs/http-chat.png) [e](docs/evaluation.md#results)")
    assert readme == "![s](http-chat.png) [e](evaluation.md#results)"


def test_mkdocs_config_uses_the_hook_and_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["hooks"] == ["docs/_hooks/reference.py"] and config["strict"] is True
    assert config["theme"]["font"] is False  # no web fonts: the site builds and reads offline

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(config["nav"]))
    assert {"reference/cli.md", "reference/http.md", "index.md", "data.md"} <= listed
    for page in listed - {"index.md", "reports/index.md"}:
        assert (DOCS / page).is_file(), page


def test_every_recagent_variable_is_documented():
    documented = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    folders = ("catalog", "protocol", "retrieval", "llm", "tools", "agent", "app", "server",
               "evals", "cli", "prompts", "tests")
    used: set[str] = set(re.findall(r"RECAGENT_[A-Z][A-Z_]*[A-Z]",
                                    (ROOT / "Makefile").read_text(encoding="utf-8")))
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"RECAGENT_[A-Z][A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    assert "RECAGENT_HOME" in used and len(used) > 15
    missing = sorted(v for v in used if f"`{v}`" not in documented)
    assert not missing, missing


def test_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 300
    assert not re.search(r"\bissue \d", text, flags=re.IGNORECASE)
    assert "make demo" in text and "make test" in text
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert "docs/data.md" in local and "docs/reference/cli.md" in local
    for link in local:
        assert (ROOT / link).exists(), link


def test_route_and_schema_descriptions_are_rendered_escaped(hooks):
    spec = {"info": {"title": "t", "version": "1"},
            "paths": {"/x": {"get": {"summary": "Get x", "description": "First <b>.\n\nSecond | part.",
                                     "responses": {"200": {"description": "OK"}}}}},
            "components": {"schemas": {"A": {"description": "An A.", "properties": {
                "f": {"type": "string", "maxLength": 5, "description": "The f."}}, "required": ["f"]}}}}
    text = hooks.http_reference(spec)
    assert "### GET `/x` {#get-x}" in text and "First &lt;b&gt;.\n\nSecond &#124; part." in text
    assert "| `f` | string (length ≤ 5) | yes | The f. |" in text


def test_make_test_builds_the_site_strictly():
    """`mkdocs build --strict --quiet` passes with broken links: --quiet drops the warnings
    that --strict counts. The test target must build without it."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(MKDOCS) build --strict" in target and "--quiet" not in target
    assert "$(DOCS_STAMP)" in target.splitlines()[0]
