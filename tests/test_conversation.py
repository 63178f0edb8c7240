"""The conversation evaluation: the simulated shopper, its leak guard, the metrics, a real run."""

from __future__ import annotations

import json
import re

import pytest
from agent_support import make_toolbox
from fake_llm import ScriptedLLM
from typer.testing import CliRunner

from recagent.agent.agents import plan_agent
from recagent.agent.constraints import ConstraintParser
from recagent.catalog.model import Item
from recagent.cli import app
from recagent.evals.conversation import (
    Conversation,
    Turn,
    converse,
    held_out_cases,
    run_conversations,
    summarize,
    without_held_out,
)
from recagent.evals.simulator import (
    LeakGuard,
    LLMSimulator,
    RuleSimulator,
    TargetFacts,
    keyword_stats,
)

SHOE = Item("P02491", "Stridelite S-180 Men's Trail Running Shoes, blue", "Grippy lugs for muddy trails.",
            ("Sports", "Running", "Running Shoes"), "Stridelite", 45.99)


def test_leak_guard_refuses_the_id_the_title_and_runs_of_title_words():
    guard = LeakGuard(SHOE)
    assert guard.leaks("I need running shoes between $30 and $60 from Stridelite.") is None
    assert guard.leaks("something like p02491 please") == "names the item id"
    assert guard.leaks("the STRIDELITE S-180 MEN'S TRAIL RUNNING SHOES, BLUE") == "names the title"
    assert "repeats the title words" in guard.leaks("I want trail running shoes")
    assert "repeats the title words" in guard.leaks("the S 180 men's model")
    assert guard.leaks("P024910 is a different id") is None


def _title_leak(item: Item, text: str) -> bool:
    """An independent check: the whole title, the id, or any 4 consecutive title words."""
    words = re.findall(r"\w+", item.title.casefold())
    said = " ".join(re.findall(r"\w+", text.casefold()))
    runs = [" ".join(words[i:i + 4]) for i in range(max(1, len(words) - 3))]
    return item.item_id.casefold() in text.casefold() or any(f" {r} " in f" {said} " for r in runs)


def test_the_rule_simulator_never_names_its_target_and_the_parser_reads_it(tiny_shop):
    df = keyword_stats(tiny_shop)
    parser = ConstraintParser(tiny_shop)
    for item in tiny_shop.items.values():
        sim = RuleSimulator(TargetFacts(item, tiny_shop, df), reaction="Not these.")
        opening = sim.next()
        assert opening.text == "Can you recommend something for me?" and opening.stated.is_empty()
        for _ in range(5):
            said = sim.next([item])
            assert not _title_leak(item, said.text), (item.title, said.text)
            parsed = parser.parse(said.text)
            stated = said.stated
            assert (parsed.min_price, parsed.max_price) == (stated.min_price, stated.max_price), said.text
            assert set(stated.categories) <= set(parsed.categories), said.text
            assert set(stated.brands) <= set(parsed.brands), said.text
        assert len(sim.revealed) == min(5, len(sim.plan)) and len(said.facts) >= 3  # category, price, brand
        assert said.text.startswith("Not these. I need ")


def test_a_fact_that_would_leak_is_dropped_and_counted(tiny_shop):
    facts = TargetFacts(SHOE, tiny_shop, keyword_stats(tiny_shop))
    facts.keywords = ["trail running shoes"]  # as if a keyword repeated the title
    sim = RuleSimulator(facts)
    said = [sim.next([SHOE] if i else []).text for i in range(5)]
    assert all("trail running shoes" not in s.casefold() for s in said)
    assert sim.blocked >= 1
    assert said[-1] == "I need running shoes between $30 and $60 from Stridelite."


def test_the_llm_simulator_falls_back_when_its_reply_leaks(tiny_shop):
    facts = TargetFacts(SHOE, tiny_shop, keyword_stats(tiny_shop))
    leaky = LLMSimulator(facts, ScriptedLLM(reply=lambda p: f'I want the "{SHOE.title}"'))
    other = next(i for i in tiny_shop.items.values() if i.category[-1:] == ("Running Shoes",))
    leaky.next()
    said = leaky.next([other])
    assert said.text == "I need running shoes." and leaky.fallbacks == 1 and leaky.blocked == 1
    polite = LLMSimulator(facts, ScriptedLLM(reply=lambda p: "running shoes for muddy trails?"))
    polite.next()
    said = polite.next([other])
    # The reply opens as the shopper's message (given to the model), then the model's words.
    assert said.text == "I'm looking for running shoes for muddy trails?" and polite.fallbacks == 0
    vague = LLMSimulator(facts, ScriptedLLM(reply=lambda p: "something nice for the weekend."))
    vague.next()
    said = vague.next([other])  # the category it should state is missing: the rule sentence
    assert said.text == "I need running shoes." and vague.fallbacks == 1 and vague.blocked == 0
    prompt = polite.llm.prompts[-1]
    assert "category: Running Shoes" in prompt and other.title in prompt
    assert SHOE.title not in prompt  # it never sees its target's title


def test_held_out_cases_hide_the_test_item_from_the_session_and_the_models(tiny_shop):
    cases = held_out_cases(tiny_shop, 10, seed=1)
    assert cases == held_out_cases(tiny_shop, 10, seed=1) and len(cases) == 10
    for user, history, target in cases:
        full = tiny_shop.histories[user]
        assert list(history) == list(full[:-1]) and target == full[-1].item_id
    # What the agent's models are built from: no test interaction of any test user.
    seen = without_held_out(tiny_shop)
    assert seen.name == tiny_shop.name and seen.items == tiny_shop.items
    for user, history, _ in held_out_cases(tiny_shop, None):
        assert list(seen.histories[user]) == list(history)
    assert len(seen.interactions) == len(tiny_shop.interactions) - len(held_out_cases(tiny_shop, None))


class _Recording:
    """Passes turns to the agent and keeps every message it was sent."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.messages: list[str] = []

    def turn(self, session, message, **kwargs):
        self.messages.append(message)
        return self.agent.turn(session, message, **kwargs)


def test_a_conversation_finds_an_item_the_facts_pin_down(tiny_shop, encoder, built_index):
    df = keyword_stats(tiny_shop)

    def narrowed(target: str) -> int:  # catalog items sharing the target's category, brand and price range
        facts = TargetFacts(tiny_shop.items[target], tiny_shop, df)
        sim = RuleSimulator(facts)
        for _ in range(4):
            stated = sim.next([facts.item]).stated
        from recagent.tools.filter_items import FilterItems

        return sum(FilterItems.violation(i, stated) is None for i in tiny_shop.items.values())

    user, history, target = next(c for c in held_out_cases(tiny_shop, None)
                                 if tiny_shop.items[c[2]].category and narrowed(c[2]) <= 3
                                 and c[2] not in {x.item_id for x in c[1]})
    agent = _Recording(plan_agent(make_toolbox(tiny_shop, encoder, built_index), k=5))
    sim = RuleSimulator(TargetFacts(tiny_shop.items[target], tiny_shop, df))
    conv = converse(agent, tiny_shop, user, history, target, sim, max_turns=5)
    assert conv.hit_turn is not None and conv.hit_turn <= 5, [t.said for t in conv.turns]
    assert conv.turns[0].said == "Can you recommend something for me?"
    title = tiny_shop.items[target].title
    assert all(title.casefold() not in m.casefold() and target not in m for m in agent.messages)
    shown_before = {i for t in conv.turns[:-1] for i in t.shown}
    assert not shown_before & set(conv.turns[-1].shown)  # disliked items are not shown again
    summary = summarize([conv], max_turns=5)
    assert summary["hit_rate"] == 1.0 and summary["avg_turns_to_hit"] == conv.hit_turn
    assert summary["constraint_satisfaction"] == 1.0 and summary["leaks_blocked"] == 0


def _turn(hit=None, satisfied=0, constrained=0, faithful=0, written=0, shown=("a",), seconds=0.1,
          errors=0, rejected=(), trimmed=0):
    return Turn("x", list(shown), hit, satisfied, constrained, faithful, written, seconds, errors,
                faithful_first=faithful, rejected=tuple(rejected), trimmed=trimmed)


def test_summary_metrics_by_hand():
    convs = [
        Conversation("u1", "t", [_turn(hit=2)]),  # hit at turn 1
        Conversation("u2", "t", [_turn(seconds=2.0, errors=1),
                                 _turn(satisfied=4, constrained=5, faithful=1, written=2,
                                       rejected=["repeats itself"], trimmed=1),
                                 _turn(hit=1, satisfied=5, constrained=5)]),  # hit at turn 3
        Conversation("u3", "t", [_turn(), _turn(satisfied=3, constrained=5, shown=())], leaks_blocked=2),
    ]
    m = summarize(convs, max_turns=3)
    assert m["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["hit_by_turn"] == {"1": pytest.approx(1 / 3, abs=1e-4), "2": pytest.approx(1 / 3, abs=1e-4),
                                "3": pytest.approx(2 / 3, abs=1e-4)}
    assert m["avg_turns_to_hit"] == 2.0  # (1 + 3) / 2
    assert m["constraint_satisfaction"] == 0.8  # 12 of 15
    assert m["faithfulness"] == 0.5 and m["leaks_blocked"] == 2 and m["empty_answers"] == 1
    assert m["tool_errors"] == 1 and m["turn_p50_s"] == 0.1 and m["turn_p95_s"] == pytest.approx(1.525)
    assert m["rejected_by"] == {"repeats itself": 1} and m["trimmed"] == 1
    assert summarize([], max_turns=3)["hit_rate"] is None
    from recagent.evals.conversation import _faithful_cell
    assert _faithful_cell(m) == "50.0% of 2 (1 trimmed)"


def test_rejections_are_counted_by_kind_without_their_particulars():
    from recagent.evals.conversation import markdown, rejection_kind

    assert rejection_kind("calls $15 a ceiling, but the request asked for at least $15") == \
        "calls $X a ceiling, but the request asked for at least $X"
    assert rejection_kind("names brand Nikon, which is not in the evidence") == \
        "names brand …, which is not in the evidence"
    assert rejection_kind('calls the item a "tent", which its title and category do not') == \
        'calls the item a "…", which its title and category do not'
    assert rejection_kind("says what the evidence does not: 3D, printer") == "says what the evidence does not"
    convs = [Conversation("u", "t", [_turn(written=3, rejected=[
        rejection_kind(p) for p in ("names brand Nikon, which is not in the evidence",
                                    "names brand Sony, which is not in the evidence", "repeats itself")])])]
    report = {"dataset": "d", "users": 1, "seed": 0, "max_turns": 1, "simulator": "rule", "llm": "x",
              "retriever": "r", "rerank": "retriever", "seconds": 1.0, "examples": {},
              "k": {"5": summarize(convs, max_turns=1)}}
    assert "names brand …, which is not in the evidence (2); repeats itself (1)" in markdown(report)


def test_run_conversations_on_the_tiny_shop(tiny_shop, encoder, built_index):
    agent = plan_agent(make_toolbox(tiny_shop, encoder, built_index), k=5)
    convs = run_conversations(agent, tiny_shop, held_out_cases(tiny_shop, 6, seed=2), max_turns=3)
    m = summarize(convs, max_turns=3)
    assert m["conversations"] == 6 and 0 <= m["hit_by_turn"]["1"] <= m["hit_by_turn"]["3"] <= 1
    assert m["faithfulness"] is None and m["leaks_blocked"] == 0


def test_cli_eval_conversation_writes_json_and_markdown(tiny_shop_dir, tmp_path):
    out = tmp_path / "conv.json"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, [
        "eval", "conversation", "--data", str(tiny_shop_dir), "--users", "4", "--turns", "2",
        "-k", "3,5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["users"] == 4 and set(report["k"]) == {"3", "5"} and report["simulator"] == "rule"
    assert report["llm"] is None and report["k"]["3"]["conversations"] == 4
    assert "| k | hit rate | hit by turn 1 | hit by turn 2 |" in out.with_suffix(".md").read_text()
    assert "hit rate" in result.output
    bad = CliRunner().invoke(app, ["eval", "conversation", "--data", str(tiny_shop_dir), "-k", "x"])
    assert bad.exit_code == 1 and "-k must be comma-separated" in bad.output


def test_a_fact_counts_as_stated_only_when_the_reply_says_it():
    from recagent.evals.simulator import states

    assert states("I'm looking for board games", "category: Board Games")
    assert not states("I'm looking for games", "category: Board Games")
    assert states("between $15 and $35 please", "price: between $15 and $35")
    assert not states("under $35 please", "price: between $15 and $35")
    assert states("something in merino", "keywords: wool, merino")
