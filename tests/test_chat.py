"""``recagent chat``: the chat's logic on the tiny shop, the command through CliRunner, and the
real installed program driven through a pseudo-terminal."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from fake_llm import ScriptedLLM, names_a_purchase
from typer.testing import CliRunner

from recagent.agent.turn import AgentAnswer
from recagent.app.assistant import Assistant
from recagent.app.chat import Chat, HelpView, HistoryView, Notice, Quit, TraceView, Why
from recagent.app.chat_input import (
    ChatInputError,
    Command,
    apply_filter,
    owned_phrases,
    parse_line,
    shown_number,
)
from recagent.app.runtime import Runtime
from recagent.app.settings import Settings
from recagent.cli import app
from recagent.tools.filter_items import Constraints

runner = CliRunner(env={"COLUMNS": "200"})
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x01\x02\r]")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The same RECAGENT_HOME the autouse fixture gives every test (one index per session)."""
    return tmp_path_factory.getbasetemp() / "recagent-home"


def make_assistant(home, data, llm=None, k=5) -> Assistant:
    assistant = Assistant(Runtime(Settings(home=home, data=data, llm="none")), k=k)
    if llm is not None:
        assistant.llm = llm  # before the agent and tools are built from it
    assistant.prepare(show_progress=False)
    return assistant


@pytest.fixture(scope="module")
def assistant(home, tiny_shop_dir) -> Assistant:
    return make_assistant(home, tiny_shop_dir)


def answers(outputs) -> list[AgentAnswer]:
    return [o for o in outputs if isinstance(o, AgentAnswer)]


def ids(answer: AgentAnswer) -> list[str]:
    return [r.item.item_id for r in answer.recommendations]


def the_error(outputs) -> str:
    assert len(outputs) == 1 and isinstance(outputs[0], Notice), outputs
    assert outputs[0].kind == "error"
    return outputs[0].text


# ---------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("line, command", [
    ("running shoes under $60", Command("say", "running shoes under $60")),
    ("  /why 2 ", Command("why", number=2)),
    ("/LIKE #3", Command("like", number=3)),
    ("/dislike 1", Command("dislike", number=1)),
    ("/forget 4", Command("forget", number=4)),
    ("/more", Command("more")),
    ("/filter price<30, brand!=Nikon", Command("filter", "price<30, brand!=Nikon")),
    ("/filter", Command("filter", "")),
    ("/history", Command("history")),
    ("/reset", Command("reset")),
    ("/trace", Command("trace")),
    ("/help", Command("help")),
    ("/?", Command("help")),
    ("/quit", Command("quit")),
    ("/exit", Command("quit")),
])
def test_parse_line(line, command):
    assert parse_line(line) == command


@pytest.mark.parametrize("line, message", [
    ("", "empty line"),
    ("   ", "empty line"),
    ("/dance", "unknown command /dance"),
    ("/why", "usage: /why N"),
    ("/like one", "usage: /like N"),
    ("/dislike 1 2", "usage: /dislike N"),
    ("/more please", "/more takes no argument"),
])
def test_parse_line_rejects_bad_input(line, message):
    with pytest.raises(ChatInputError, match=re.escape(message)):
        parse_line(line)


BRANDS = {"nikon": "Nikon", "sony": "Sony", "inkwell & co.": "Inkwell & Co."}
CATEGORIES = {"pens": "Pens", "running shoes": "Running Shoes", "office": "Office"}


def test_apply_filter_edits_the_constraints():
    def f(c, text):
        return apply_filter(c, text, brands=BRANDS, categories=CATEGORIES)

    c = f(Constraints(query="pens"), "price<30")
    assert c.max_price == 30 and c.query == "pens"
    c = f(c, "price>=$12.5, brand!=nikon category=pen")
    assert (c.min_price, c.exclude_brands, c.categories) == (12.5, ("Nikon",), ("Pens",))
    c = f(c, "brand=Nikon, brand=Inkwell & Co., in-stock")  # the newer wish wins over "not Nikon"
    assert c.brands == ("Nikon", "Inkwell & Co.") and c.exclude_brands == () and c.in_stock_only
    c = f(c, "category!=Pens")
    assert c.categories == () and c.exclude_categories == ("Pens",)


@pytest.mark.parametrize("text, message", [
    ("", "needs a filter"),
    ("price<cheap", "price needs a number"),
    ("price=30", "price takes < or >"),
    ("brand<Sony", "brand takes = or !="),
    ("brand=Canon", "no brand 'Canon' in this catalog"),
    ("category=Tents", "no category 'Tents'"),
    ("colour=red", "cannot read 'colour=red'"),
    ("price<30 nonsense", "price needs a number, not '30 nonsense'"),
])
def test_apply_filter_rejects_malformed_filters(text, message):
    with pytest.raises(ChatInputError, match=re.escape(message)):
        apply_filter(Constraints(), text, brands=BRANDS, categories=CATEGORIES)


@pytest.mark.parametrize("message, owned, rest", [
    ("I just bought a DSLR", ["DSLR"], ""),
    ("I just bought a DSLR, what lens under $300?", ["DSLR"], "what lens under $300?"),
    ("I own a tripod and a camera bag", ["tripod", "camera bag"], ""),
    ("I got a DSLR and need a bag", ["DSLR"], "need a bag"),
    ("I've got a pair of running shoes yesterday. Socks?", ["running shoes"], "Socks?"),
    ("I already have the Halcyon H-920 so what next", ["Halcyon H-920"], "what next"),
    ("I bought #2", ["#2"], ""),
    ("I have a budget of $30", [], "I have a budget of $30"),
    ("I have no idea", [], "I have no idea"),
    ("I have to buy a gift", [], "I have to buy a gift"),
    ("running shoes under $60", [], "running shoes under $60"),
])
def test_owned_phrases(message, owned, rest):
    assert owned_phrases(message) == (owned, rest)


def test_shown_number():
    assert [shown_number(p) for p in ("#2", "number 3", "item 4", "DSLR", "2")] == [2, 3, 4, None, None]


# ------------------------------------------------------------------------ conversation

def test_like_and_dislike_change_the_next_answer_at_once(assistant, tiny_shop):
    user = tiny_shop.users[0]
    chat = Chat(assistant, user)
    before = len(chat.session.history)
    first = ids(answers(chat.handle("something to buy"))[0])
    out = chat.handle("/dislike 2")
    assert isinstance(out[0], Notice) and out[0].kind == "ok" and first[1] in out[0].text
    after_dislike = ids(answers(out)[0])
    assert first[1] not in after_dislike and chat.session.disliked == [first[1]]
    out = chat.handle("/like 1")
    liked = after_dislike[0]
    assert f"({liked})" in out[0].text
    again = answers(out)[0]
    assert liked not in ids(again) and first[1] not in ids(again)
    assert chat.session.history[-1].item_id == liked and len(chat.session.history) == before + 1
    call = next(c for c in again.trace if c.tool == "recommend_for_user")
    assert call.arguments["history"] == before + 1  # the like reached retrieval in this answer


def test_more_never_repeats_an_item(assistant, tiny_shop):
    chat = Chat(assistant, tiny_shop.users[1])
    the_error(chat.handle("/more"))  # nothing to add to yet
    shown = set(ids(answers(chat.handle("gift ideas"))[0]))
    for _ in range(3):
        more = answers(chat.handle("/more"))[0]
        assert len(more.recommendations) == 5 and not shown & set(ids(more))
        shown |= set(ids(more))
        # /more keeps searching the same request
        assert any(c.tool == "search_items" and c.arguments == {"query": "gift ideas"}
                   for c in more.trace)


def test_filter_is_respected_and_can_be_cleared(assistant, tiny_shop):
    chat = Chat(assistant, tiny_shop.users[2])
    first = answers(chat.handle("gift ideas"))[0]  # a request with a topic, searched each time
    brand = first.recommendations[0].item.brand
    out = chat.handle(f"/filter price<30, brand!={brand}")
    assert "price <= $30" in out[0].text and f"not brand {brand}" in out[0].text
    filtered = answers(out)[0]
    assert filtered.recommendations
    for r in filtered.recommendations:
        assert r.item.price is not None and r.item.price <= 30 and r.item.brand != brand
    items = tiny_shop.items
    category = items[filtered.recommendations[0].item.item_id].category[-1]
    # /dislike before /more: /more may leave nothing in a small category (the tiny shop has
    # five "gift ideas" memory cards), and /dislike needs something shown.
    for line in (f"/filter category={category}", "/dislike 1", "/more"):
        answer = answers(chat.handle(line))[0]
        assert answer.constraints.categories == (category,), line  # kept, not a new topic
        assert answer.constraints.query == "gift ideas", line
        assert any(c.tool == "search_items" for c in answer.trace), line
        for r in answer.recommendations:
            assert items[r.item.item_id].category[-1] == category and r.item.price <= 30
    assert "Filters:" in chat.handle("/filter")[0].text
    cleared = chat.handle("/filter clear")
    assert cleared[0].text.startswith("Filters cleared")
    assert chat.session.constraints.max_price is None and not chat.session.constraints.exclude_brands
    assert "no brand 'Nosuchbrand'" in the_error(chat.handle("/filter brand=Nosuchbrand"))


def test_more_like_n_stays_in_force_after_feedback(assistant, tiny_shop):
    chat = Chat(assistant, tiny_shop.users[4])
    target = ids(answers(chat.handle("gift ideas"))[0])[1]
    assert answers(chat.handle("more like #2"))[0].constraints.like_item == target
    for line in ("/dislike 1", "/more", "/filter price<100"):
        answer = answers(chat.handle(line))[0]
        assert answer.constraints.like_item == target, line
        assert any(c.tool == "search_items" and c.arguments.get("like") == target
                   for c in answer.trace), line


def test_why_shows_the_evidence_of_the_last_answer(assistant, tiny_shop):
    user = tiny_shop.users[0]
    chat = Chat(assistant, user)
    assert "nothing is shown yet" in the_error(chat.handle("/why 1"))
    answer = answers(chat.handle("what should I buy next?"))[0]
    [why] = chat.handle("/why 2")
    assert isinstance(why, Why) and why.recommendation == answer.recommendations[1]
    history = {x.item_id for x in tiny_shop.histories[user]}
    assert why.recommendation.evidence.related
    assert {e.item_id for e in why.recommendation.evidence.related} <= history
    assert "no item 9 in the last answer (it has 5)" in the_error(chat.handle("/why 9"))


def test_new_user_builds_a_history_in_the_chat(assistant, tiny_shop):
    chat = Chat(assistant, None)
    assert "New user" in chat.greeting().text and chat.session.history == []
    out = chat.handle("I just bought a DSLR camera and a tripod")
    notes = [o for o in out if isinstance(o, Notice)]
    assert [n.kind for n in notes] == ["ok", "ok"]
    added = [x.item_id for x in chat.session.history]
    assert len(added) == 2
    assert tiny_shop.items[added[0]].category[-1] == "DSLR Cameras"
    assert tiny_shop.items[added[1]].category[-1] == "Tripods"
    assert "/forget 2" in notes[0].text and "/forget 1" in notes[1].text
    answer = answers(out)[0]
    call = next(c for c in answer.trace if c.tool == "recommend_for_user")
    assert call.arguments["history"] == 2 and not set(added) & set(ids(answer))
    [view] = chat.handle("/history")
    assert isinstance(view, HistoryView)
    assert [(e.number, e.item_id, e.added_in_chat) for e in view.entries] == \
        [(1, added[1], True), (2, added[0], True)]
    # "I bought #1" takes item 1 of the answer; /forget undoes an addition.
    chat.handle("I bought #1")
    assert chat.session.history[-1].item_id == ids(answer)[0]
    assert "Forgot" in chat.handle("/forget 3")[0].text
    assert [x.item_id for x in chat.session.history] == [added[1], ids(answer)[0]]
    # Nothing that sounds like an item, or no catalog match: the history is unchanged.
    chat.handle("I have no idea")
    unmatched = chat.handle("I bought a zzzxq")
    assert "could not find 'zzzxq'" in unmatched[0].text and len(chat.session.history) == 2
    assert "no entry 7 in /history (it has 2)" in the_error(chat.handle("/forget 7"))


def test_reset_trace_help_quit_and_bad_lines(assistant, tiny_shop):
    user = tiny_shop.users[3]
    chat = Chat(assistant, user)
    assert "no answer yet" in the_error(chat.handle("/trace"))
    chat.handle("under $50")
    [trace] = chat.handle("/trace")
    assert isinstance(trace, TraceView) and trace.calls[0].tool == "parse_constraints"
    chat.handle("/like 1")
    chat.handle("/dislike 1")
    assert chat.session.constraints.max_price == 50 and chat.session.liked
    [note] = chat.handle("/reset")
    assert note.kind == "ok" and "Started over" in note.text
    assert chat.session.constraints.is_empty() and not chat.session.liked
    assert not chat.session.disliked and chat.last is None
    assert [x.item_id for x in chat.session.history] == [x.item_id for x in tiny_shop.histories[user]]
    assert isinstance(chat.handle("/help")[0], HelpView)
    assert chat.handle("/quit") == [Quit()]
    for line, message in [("", "empty line"), ("/dance", "unknown command"),
                          ("/like 99", "nothing is shown yet"), ("/filter price<", "cannot read")]:
        assert message in the_error(chat.handle(line))


def test_unknown_user_is_an_error(assistant):
    from recagent.catalog.errors import RecAgentError

    with pytest.raises(RecAgentError, match="unknown user"):
        Chat(assistant, "nobody")


# ----------------------------------------------------------------------------- streaming

def test_live_view_shows_only_checked_prose(home, tiny_shop_dir, tiny_shop):
    """The terminal view shows each LLM sentence once it passed the faithfulness check; a
    sentence that fails it never reaches the screen: the evidence stands in its place."""
    from rich.console import Console

    from recagent.cli.chat import _LiveTurn, _render

    def frames_of(llm):
        chat = Chat(make_assistant(home, tiny_shop_dir, llm, k=2), tiny_shop.users[0])
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=150)
        frames = []
        view = _LiveTurn(console)

        def watch(event):
            view(event)
            frames.append(ANSI.sub("", screen.getvalue()))

        outputs = chat.handle("recommend something", on_event=watch)
        view.close()
        final = io.StringIO()
        _render(Console(file=final, width=150), outputs)
        return frames, answers(outputs)[0], final.getvalue()

    frames, answer, final = frames_of(ScriptedLLM(reply=lambda p: "You will love this one, it is great."))
    assert not any("You will love this one" in f for f in frames)
    assert all(r.explanation.source == "evidence" for r in answer.recommendations)
    assert "You will love" not in final and "Close to your" in final
    frames, answer, final = frames_of(ScriptedLLM(reply=names_a_purchase))
    assert answer.recommendations[0].explanation.source == "llm"
    assert any("goes well with your" in f for f in frames)  # shown while the turn ran
    assert "goes well with your" in final


def test_real_embedded_llm_streams_checked_explanations(home, tiny_shop_dir, tiny_shop, gemma):
    from recagent.agent.events import Explained, ProseDelta

    chat = Chat(make_assistant(home, tiny_shop_dir, gemma, k=2), tiny_shop.users[0])
    events = []
    answer = answers(chat.handle("something under $40", on_event=events.append))[0]
    assert answer.llm == gemma.name and len(answer.recommendations) == 2
    assert all(r.item.price <= 40 for r in answer.recommendations)
    prose = {e.rank: e.text for e in events if isinstance(e, ProseDelta)}  # checked sentences only
    assert prose == {r.rank: r.explanation.text for r in answer.recommendations
                     if r.explanation.source == "llm"}
    final = {e.rank: e.explanation for e in events if isinstance(e, Explained)}
    assert final == {r.rank: r.explanation for r in answer.recommendations}
    out = chat.handle("/like 1")
    assert answers(out)[0].recommendations


# -------------------------------------------------------------------------------- CLI

def test_script_through_clirunner(tiny_shop_dir, tiny_shop, tmp_path):
    user = tiny_shop.users[0]
    script = tmp_path / "chat.txt"
    script.write_text("# a comment line is skipped\nsomething under $40\n\n/why 1\n/more\n"
                      "/like 1\n/filter price<20\n/history\n/trace\n/dance\n/quit\nnot reached\n")
    result = runner.invoke(app, ["chat", "--data", str(tiny_shop_dir), "--user", user,
                                 "--llm", "none", "-k", "3", "--script", str(script)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    echoed = [line for line in text.splitlines() if line.startswith("you> ")]
    assert echoed == ["you> something under $40", "you> /why 1", "you> /more", "you> /like 1",
                      "you> /filter price<20", "you> /history", "you> /trace", "you> /dance",
                      "you> /quit"]
    assert f"User {user}:" in text and "Here are 3 picks" in text
    assert "Closest in your history:" in text and "✓ Liked" in text
    assert "Filters now: price <= $20" in text and "Tool calls" in text
    assert "error: unknown command /dance" in text and text.rstrip().endswith("Bye.")
    assert "not reached" not in text and "Traceback" not in result.output


def test_piped_stdin_and_errors(tiny_shop_dir, tiny_shop, tmp_path):
    result = runner.invoke(app, ["chat", "--data", str(tiny_shop_dir), "--llm", "none", "-k", "2"],
                           input="I just bought a DSLR camera\n/why 7\n")
    assert result.exit_code == 0, result.output  # EOF ends the chat
    assert "New user" in result.stdout and "✓ Added to your history:" in result.stdout
    assert "error: there is no item 7 in the last answer (it has 2)" in result.stdout
    bad = runner.invoke(app, ["chat", "--data", str(tiny_shop_dir), "--user", "nobody",
                              "--llm", "none", "--script", str(tmp_path / "none.txt")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "error: cannot read the script" in bad.output
    bad = runner.invoke(app, ["chat", "--data", str(tiny_shop_dir), "--user", "nobody", "--llm", "none"],
                        input="hi\n")
    assert bad.exit_code == 1 and "unknown user 'nobody'" in bad.output


@pytest.mark.integration
def test_real_program_in_a_pseudo_terminal(tiny_shop_dir, tiny_shop, home):
    """Start the installed ``recagent chat`` on a pty, type into it, read the screen."""
    pexpect = pytest.importorskip("pexpect")
    program = Path(sys.executable).with_name("recagent")
    user = tiny_shop.users[0]
    env = {"PATH": str(program.parent) + ":/usr/bin:/bin", "HOME": str(home.parent),
           "RECAGENT_HOME": str(home), "COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    child = pexpect.spawn(str(program), ["chat", "--data", str(tiny_shop_dir), "--user", user,
                                         "--llm", "none", "-k", "3"],
                          env=env, encoding="utf-8", timeout=120, dimensions=(60, 160))
    screen = io.StringIO()
    child.logfile_read = screen
    try:
        child.expect_exact("you> ")
        child.sendline("something under $40")
        child.expect_exact("you> ")
        shown = ANSI.sub("", screen.getvalue())
        assert "Here are 3 picks" in shown, shown
        # the live view drew its frames before; the final table follows the reply
        first = re.findall(r"(P\d{5}) ·", shown.split("Here are 3 picks", 1)[1])
        assert len(first) == 3, shown
        child.sendline("/like 1")
        child.expect_exact("you> ")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    text = ANSI.sub("", screen.getvalue())
    assert child.exitstatus == 0, text
    assert "✓ Liked" in text and f"({first[0]})" in text.split("✓ Liked", 1)[1], text
    assert text.count("Here are 3 picks") == 2 and "Bye." in text
    second = re.findall(r"(P\d{5}) ·", text.split("Here are 3 picks")[2])
    assert len(second) == 3 and first[0] not in second  # the liked item joined the history
    assert "Traceback" not in text
