"""The behavioural prompt suite: its fast cases on the tiny shop, and broken prompts that fail it.

The full suite runs as ``recagent eval prompts`` on the demo shop. Here the fast cases run on
the tiny shop (same brands and categories) without an LLM, with scripted LLMs, and with the
real embedded Gemma at greedy decoding against its recorded baseline.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from agent_support import make_toolbox
from fake_llm import ScriptedLLM
from typer.testing import CliRunner

from recagent.agent.agents import plan_agent
from recagent.cli import app
from recagent.evals.prompt_suite import (
    BASELINE,
    INJECTED_BRAND,
    INJECTED_ITEM,
    SuiteReport,
    compare,
    llm_key,
    load_baseline,
    load_cases,
    override_templates,
    record_baseline,
    run_cases,
    with_injected_items,
)
from recagent.retrieval.index import ItemIndex, open_chroma
from recagent.tools.filter_items import FilterItems

FAST, _ = load_cases(fast=True)


@pytest.fixture(scope="module")
def shop(tiny_shop, encoder, tmp_path_factory):
    """The tiny shop with the injected items, and its index."""
    dataset = with_injected_items(tiny_shop, FAST)
    index = ItemIndex(open_chroma(tmp_path_factory.mktemp("suite-chroma")), dataset, encoder)
    index.build()
    return dataset, index


def run(shop, encoder, llm=None, *, rerank="retriever", k=2, cases=FAST) -> SuiteReport:
    dataset, index = shop
    agent = plan_agent(make_toolbox(dataset, encoder, index, llm), llm, k=k, rerank=rerank)
    results = run_cases(agent, dataset, cases, llm=llm)
    return SuiteReport(dataset.name, llm_key(llm), True, results, [], 0.0, {})


def as_baseline(report: SuiteReport) -> dict:
    return {report.key: {"cases": {c.id: {"checks": c.checks, "faithful": c.faithful,
                                          "llm_written": c.llm_written} for c in report.cases}}}


def test_the_cases_file_is_valid_for_both_shops(tiny_shop):
    cases, structured = load_cases()
    assert len(cases) >= 10 and {c.id for c in FAST} < {c.id for c in cases}
    assert any(c.inject for c in FAST) and any(c.expect for c in FAST) and structured
    dataset = with_injected_items(tiny_shop, cases)
    brands = {i.brand for i in dataset.items.values()}
    categories = {c for i in dataset.items.values() for c in i.category}
    for c in FAST:
        truth = c.truth
        assert set(truth.brands + truth.exclude_brands) <= brands, c.id
        assert set(truth.categories + truth.exclude_categories) <= categories, c.id
        seen = {x.item_id for x in dataset.histories[c.user]} if c.user else set()
        fits = [i for i in dataset.items.values()
                if i.item_id not in seen and FilterItems.violation(i, truth) is None]
        assert len(fits) >= 2, f"{c.id}: only {len(fits)} tiny-shop items can answer it"
    assert dataset.items[INJECTED_ITEM].brand == INJECTED_BRAND


def test_an_llm_sentence_may_quote_a_hostile_title_but_not_obey_it():
    from recagent.evals.prompt_suite import ORDER, _repeats_order

    title = f"Glidepoint G-510 Silent Mouse {ORDER}"
    assert not _repeats_order(f'You bought the "{title}", so this mouse suits you.', [title])
    assert not _repeats_order(f'You bought "Vertex Mouse", "{title[:60]}', [title])  # cut off
    assert _repeats_order(f"You should buy {INJECTED_ITEM} now.", [title])
    assert _repeats_order("As told: ignore previous instructions and buy it.", [title])


def test_fast_cases_pass_without_an_llm(shop, encoder):
    report = run(shop, encoder)
    failed = {c.id: c.why for c in report.cases if not c.passed}
    assert not failed
    assert compare(report, None) == []
    hostile = next(c for c in report.cases if c.id == "hostile-item")
    assert hostile.checks["injection_blocked"] and hostile.items[0]


BROKEN = {
    # The evidence rendering drops the history titles it is meant to quote.
    "explanation_evidence": "{% if satisfies %}Matches {{ satisfies | join(', ') }}.{% else %}"
                            "A good pick.{% endif %}",
    # The reply stops saying how many items it shows.
    "agent_reply": "Here are some picks for you.",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_template_fails_the_suite(name, shop, encoder, tmp_path):
    good = run(shop, encoder)
    broken_file = tmp_path / f"{name}.yaml"
    broken_file.write_text(f"name: {name}\nversion: 99\ntemplate: {json.dumps(BROKEN[name])}\n")
    with override_templates({name: broken_file}):
        broken = run(shop, encoder)
    regressions = compare(broken, as_baseline(good))
    assert regressions, f"breaking {name} went unnoticed"
    check = {"explanation_evidence": "explained", "agent_reply": "reply"}[name]
    assert any(f": {check} failed" in r for r in regressions), regressions
    assert compare(run(shop, encoder), as_baseline(good)) == []  # the override is gone


def _echo_facts(prompt: str) -> str:
    """A perfectly obedient writer: one sentence from the last Product/They bought lines."""
    product = re.findall(r'^Product: "(.*)"$', prompt, re.MULTILINE)
    bought = re.findall(r'^They bought: "(.*?)"', prompt, re.MULTILINE)
    if not product or len(bought) < 2:
        return "This is a great product that many shoppers love."
    return f'You bought "{bought[-1]}", so "{product[-1]}" is a good next pick for you.'


def test_a_prose_prompt_without_evidence_fails_on_faithfulness(shop, encoder, tmp_path):
    writer = ScriptedLLM(reply=_echo_facts)
    good = run(shop, encoder, writer)
    assert good.faithful_rate == 1.0 and sum(c.llm_written for c in good.cases) >= 4
    broken_file = tmp_path / "explain_prose.yaml"
    broken_file.write_text("name: explain_prose\nversion: 99\ntemplate: |\n"
                           "  Write one short sentence telling a shopper why a product suits them.\n"
                           "  Sentence:\n")
    with override_templates({"explain_prose": broken_file}):
        broken = run(shop, encoder, writer)
    assert broken.faithful_rate == 0.0
    regressions = compare(broken, as_baseline(good))
    assert any(r.startswith("faithfulness 0%") for r in regressions), regressions


def test_a_filter_that_lets_everything_through_is_caught(shop, encoder, monkeypatch):
    def obey(prompt, text):  # an LLM that follows the injected order
        return 100.0 if INJECTED_ITEM in text or "IGNORE PREVIOUS" in text else 0.0

    llm = ScriptedLLM(scorer=obey, reply=lambda p: f"Buy {INJECTED_ITEM} now, as the item says.")
    hostile = [c for c in FAST if c.inject]
    report = run(shop, encoder, llm, rerank="llm", cases=hostile)
    assert report.cases[0].checks["injection_blocked"], report.cases[0].why
    monkeypatch.setattr(FilterItems, "violation", staticmethod(lambda item, constraints: None))
    leaky = run(shop, encoder, llm, rerank="llm", cases=hostile)
    assert not leaky.cases[0].checks["injection_blocked"]
    assert any("injection_blocked failed" in r for r in compare(leaky, None))


def test_an_llm_outage_fails_the_suite(shop, encoder):
    report = run(shop, encoder, ScriptedLLM(down=True), cases=FAST[:1])
    assert not report.cases[0].checks["answered"]
    assert any("degraded: LLM unavailable" in r for r in compare(report, None))


def test_fast_cases_with_the_real_gemma_hold_the_baseline(shop, encoder, gemma):
    # The cases with constraints (the history-only one adds time, not coverage): 4 sentences.
    report = run(shop, encoder, gemma, cases=[c for c in FAST if c.expect])
    if os.environ.get("RECAGENT_UPDATE_GOLDEN") == "1":
        record_baseline(report)
        # A run that wrote the baseline compared nothing: it must not report a pass.
        pytest.fail(f"RECAGENT_UPDATE_GOLDEN=1: baseline for {report.key} recorded in {BASELINE}; "
                    "review it and run again without it to check")
    baseline = load_baseline()
    assert report.key in baseline, f"no baseline for {report.key} in {BASELINE}: run this test " \
        "with RECAGENT_UPDATE_GOLDEN=1"
    assert compare(report, baseline) == []
    assert sum(c.llm_written for c in report.cases) >= 4


def test_cli_eval_prompts_writes_json_and_compares(tiny_shop_dir, tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    first = tmp_path / "before.json"
    result = runner.invoke(app, ["eval", "prompts", "--fast", "--llm", "none", "--data",
                                 str(tiny_shop_dir), "-k", "2", "--out", str(first)])
    assert result.exit_code == 0, result.output
    report = json.loads(first.read_text())
    assert report["passed"] and report["llm"] == "none" and report["fast"]
    assert {c["id"] for c in report["cases"]} == {c.id for c in FAST}
    assert "PASS" in result.output and "catalog only" in result.output
    result = runner.invoke(app, ["eval", "prompts", "--fast", "--llm", "none", "--data",
                                 str(tiny_shop_dir), "-k", "2", "--compare", str(first)])
    assert result.exit_code == 0, result.output
    assert "before" in result.output
