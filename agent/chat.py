"""The chat's logic, with no terminal in it: each line is a slash command or a message.

:class:`Chat` holds one conversation (a :class:`~recagent.agent.session.Session` and the
:class:`~recagent.agent.assistant.Assistant` that answers in it). :meth:`Chat.handle` applies a
line and returns what happened as plain objects (:class:`Notice`, an
:class:`~recagent.agent.pipeline.AgentAnswer`, :class:`Why`, :class:`HistoryView`,
:class:`TraceView`, :class:`HelpView`, :class:`Quit`); a front end decides how they look.

- Feedback and filters act at once: ``/like N``, ``/dislike N``, ``/filter ...`` and
  ``/forget N`` change the session and answer again, so the change shows in the next picks.
- Answers after a command keep the conversation's request: the last topic the user asked
  for (``session.constraints.query``) is searched again, with the filters as they are now.
- A message that says the user bought, owns or has something ("I just bought a DSLR") adds
  the closest catalog item to the history (``search_items``) before it is answered, which
  is how a new user with no history builds one.
- Bad input never raises: it comes back as one ``Notice(kind="error")`` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from recagent.agent.events import EventSink
from recagent.agent.pipeline import AgentAnswer, AgentRecommendation, ToolCall
from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Interaction
from recagent.tools.filter_items import Constraints

__all__ = [
    "COMMANDS", "Chat", "ChatInputError", "Command", "HelpView", "HistoryEntry", "HistoryView",
    "Notice", "Quit", "TraceView", "Why", "apply_filter", "owned_phrases", "parse_line",
]

# name -> (usage, what it does); aliases below. The order is the order /help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "why": ("/why N", "why item N of the last answer: its evidence and explanation"),
    "more": ("/more", "more picks for the same request, none shown before"),
    "like": ("/like N", "like item N: it joins your history, and the picks change at once"),
    "dislike": ("/dislike N", "never show item N again, and answer again at once"),
    "filter": ("/filter F, ...", ("price<30, price>20, brand=Sony, brand!=Nikon, category=Pens, "
                                  "category!=Pens, in-stock; /filter alone lists them, "
                                  "/filter clear drops them")),
    "history": ("/history", "the history the picks build on, newest first"),
    "forget": ("/forget N", "drop entry N of /history"),
    "reset": ("/reset", "start over: your own history, no filters"),
    "trace": ("/trace", "the tool calls of the last answer"),
    "help": ("/help", "this list"),
    "quit": ("/quit", "leave (also /exit, Ctrl-D)"),
}
_ALIASES = {"exit": "quit", "q": "quit", "bye": "quit", "?": "help", "h": "help"}
_NUMBERED = {"why", "like", "dislike", "forget"}


class ChatInputError(RecAgentError):
    """A line the chat cannot act on; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    name: str  # a key of COMMANDS, or "say" for a message
    text: str = ""  # the message, or the argument of /filter
    number: int | None = None  # N of /why, /like, /dislike, /forget


def parse_line(line: str) -> Command:
    """A typed line as a command or a message; :class:`ChatInputError` says what is wrong."""
    line = line.strip()
    if not line:
        raise ChatInputError('empty line: say what you are looking for ("recommend something"), '
                             'or type /help')
    if not line.startswith("/"):
        return Command("say", line)
    head, _, arg = line[1:].partition(" ")
    name = _ALIASES.get(head.casefold(), head.casefold())
    arg = arg.strip()
    if name not in COMMANDS:
        raise ChatInputError(f"unknown command /{head}; /help lists the commands")
    usage = COMMANDS[name][0]
    if name in _NUMBERED:
        if not re.fullmatch(r"#?\d+", arg):
            raise ChatInputError(f"usage: {usage} (N is a number, e.g. {usage.replace('N', '1')})")
        return Command(name, number=int(arg.lstrip("#")))
    if name == "filter":
        return Command(name, arg)
    if arg:
        raise ChatInputError(f"/{name} takes no argument (usage: {usage})")
    return Command(name)


# ----------------------------------------------------------------------------- /filter

_OPS = r"<=|>=|!=|=|<|>"
_CLAUSE = re.compile(
    rf"(?P<key>price|brand|category|cat)\s*(?P<op>{_OPS})\s*"
    rf"(?P<value>.*?)\s*(?=,|\s(?:price|brand|category|cat)\s*(?:{_OPS})|$)",
    re.IGNORECASE,
)
_STOCK = re.compile(r"in[- ]?stock\b", re.IGNORECASE)
_FILTER_HINT = "try price<30, price>20, brand!=Nikon, brand=Sony, category=Pens or in-stock"


def _lookup(value: str, names: dict[str, str], what: str) -> str:
    key = " ".join(value.casefold().split())
    for candidate in (key, key + "s", key[:-1] if key.endswith("s") else None):
        if candidate and candidate in names:
            return names[candidate]
    raise ChatInputError(f"no {what} {value!r} in this catalog")


def _without(names: tuple[str, ...], name: str) -> tuple[str, ...]:
    return tuple(n for n in names if n.casefold() != name.casefold())


def apply_filter(constraints: Constraints, text: str, *, brands: dict[str, str],
                 categories: dict[str, str]) -> Constraints:
    """``constraints`` changed by a ``/filter`` argument such as ``price<30, brand!=Nikon``.

    ``brands`` and ``categories`` map lower-cased names to the catalog's spelling; a name the
    catalog lacks is an error, not a filter that silently removes everything.
    """
    c = constraints
    at, text = 0, text.strip()
    if not text:
        raise ChatInputError(f"/filter needs a filter: {_FILTER_HINT}")
    while at < len(text):
        if text[at] in ", ":
            at += 1
            continue
        if m := _STOCK.match(text, at):
            c = replace(c, in_stock_only=True)
        elif (m := _CLAUSE.match(text, at)) and m.group("value"):
            c = _apply_clause(c, m.group("key").casefold(), m.group("op"), m.group("value"),
                              brands, categories)
        else:
            raise ChatInputError(f"cannot read {text[at:]!r} as a filter: {_FILTER_HINT}")
        at = m.end()
    return c


def _apply_clause(c: Constraints, key: str, op: str, value: str, brands, categories) -> Constraints:
    if key == "price":
        amount = re.fullmatch(r"\$?\s*(\d+(?:\.\d+)?)\s*\$?", value)
        if amount is None:
            raise ChatInputError(f"price needs a number, not {value!r} (e.g. price<30)")
        if op in ("<", "<="):
            return replace(c, max_price=float(amount.group(1)))
        if op in (">", ">="):
            return replace(c, min_price=float(amount.group(1)))
        raise ChatInputError("price takes < or > (e.g. price<30, price>20)")
    if op not in ("=", "!="):
        raise ChatInputError(f"{key} takes = or != (e.g. {key}!={value})")
    if key == "brand":
        name = _lookup(value, brands, "brand")
        if op == "=":
            return replace(c, brands=(*_without(c.brands, name), name),
                           exclude_brands=_without(c.exclude_brands, name))
        return replace(c, exclude_brands=(*_without(c.exclude_brands, name), name),
                       brands=_without(c.brands, name))
    name = _lookup(value, categories, "category")
    if op == "=":
        return replace(c, categories=(*_without(c.categories, name), name),
                       exclude_categories=_without(c.exclude_categories, name))
    return replace(c, exclude_categories=(*_without(c.exclude_categories, name), name),
                   categories=_without(c.categories, name))


def _cleared(c: Constraints) -> Constraints:
    """No filters; the topic (what the user asked about, "more like #2") stays."""
    return Constraints(query=c.query, like_item=c.like_item)


# ------------------------------------------------------------------ "I just bought a DSLR"

_OWNED = re.compile(
    r"\bI(?:'ve|\s+have)?\s+(?:just\s+|recently\s+|already\s+|finally\s+|also\s+)?"
    r"(?P<verb>bought|purchased|ordered|got|own|have|picked up)\s+"
    r"(?P<what>(?:(?!\s(?:so|but|because|what|which|now|can|could|should|any)\b)[^.!?;,])+)",
    re.IGNORECASE,
)
_DETERMINER = re.compile(
    r"^(?:(?:a|an|the|some|my|this|these|that|one|two|three|new|brand[- ]new|pair of|couple of)\s+)+",
    re.IGNORECASE,
)
_WHEN = re.compile(r"\s+(?:yesterday|today|last\s+\w+|recently|just now|a while ago)\s*$", re.IGNORECASE)
_NOT_AN_ITEM = {"been", "to", "no", "not", "never", "nothing", "none", "had", "a", "an", "the",
                "it", "them", "one", "some", "any", "budget", "money", "question", "questions",
                "idea", "time", "enough", "plenty", "lots", "more", "few", "many"}
_SHOWN_REF = re.compile(r"^(?:#|number\s+|item\s+|no\.\s*)(\d+)$", re.IGNORECASE)


def owned_phrases(message: str) -> tuple[list[str], str]:
    """What the message says the user bought or owns, and the rest of the message.

    "I just bought a DSLR, what lens under $300?" -> (["DSLR"], "what lens under $300?").
    "I own a tripod and a camera bag" names two items; in "I got a DSLR and need a bag" only
    the first part is an item (the rest does not start like a thing: a, the, my, two, ...).
    """
    found: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in _OWNED.finditer(message):
        parts = re.split(r"\s+and\s+", m.group("what"))
        taken = [parts[0]]
        for part in parts[1:]:
            if not (_DETERMINER.match(part) or part.startswith("#")):
                break
            taken.append(part)
        items = [_WHEN.sub("", _DETERMINER.sub("", p)).strip() for p in taken]
        items = [p for p in items if p and p.split()[0].casefold() not in _NOT_AN_ITEM]
        if not items:
            continue
        found += items
        end = m.start("what") + len(" and ".join(taken))
        spans.append((m.start(), min(end, m.end())))
    rest = message
    for start, end in reversed(spans):
        rest = rest[:start] + " " + rest[end:]
    rest = re.sub(r"^[\s,;.!?]*(?:(?:and|so|but|now)\b)?[\s,;]*", "", rest.strip(), flags=re.IGNORECASE)
    return found, rest.strip()


# ------------------------------------------------------------------------------ outputs

@dataclass(frozen=True)
class Notice:
    text: str
    kind: str = "info"  # info | ok | error


@dataclass(frozen=True)
class Why:
    recommendation: AgentRecommendation


@dataclass(frozen=True)
class HistoryEntry:
    number: int  # 1 = newest, as /forget counts
    item_id: str
    title: str
    event: str | None
    added_in_chat: bool


@dataclass(frozen=True)
class HistoryView:
    entries: list[HistoryEntry]
    liked: list[str]
    disliked: list[str]
    constraints: Constraints


@dataclass(frozen=True)
class TraceView:
    calls: list[ToolCall]


@dataclass(frozen=True)
class HelpView:
    commands: list[tuple[str, str]] = field(default_factory=lambda: list(COMMANDS.values()))


@dataclass(frozen=True)
class Quit:
    pass


def _no_such_item(number: int, count: int) -> str:
    if not count:
        return "nothing is shown yet: ask for something first"
    return f"there is no item {number} in the last answer (it has {count})"


Output = Notice | AgentAnswer | Why | HistoryView | TraceView | HelpView | Quit


class Chat:
    """One conversation: a user (or a new one with ``user_id=None``) and their session.

    ``match_threshold`` is the lowest ``search_items`` score at which a named purchase
    ("I bought a tripod") is taken to be that catalog item.
    """

    def __init__(self, assistant, user_id: str | None = None, *, match_threshold: float = 0.4) -> None:
        self.assistant = assistant
        self.user_id = user_id
        self.match_threshold = match_threshold
        self._catalog_names: tuple[dict[str, str], dict[str, str]] | None = None
        self._start()

    def _start(self) -> None:
        self.session = self.assistant.session(self.user_id)
        self.last: AgentAnswer | None = None
        self._own = list(self.session.history)  # the user's history before this chat

    def greeting(self) -> Notice:
        n = len(self.session.history)
        who = (f"User {self.session.user_id}: {n} item{'' if n == 1 else 's'} in the history."
               if self.session.user_id is not None else
               "New user, no history yet (tell me what you have: \"I just bought a DSLR\").")
        return Notice(f"{who} Ask for something, or type /help.")

    def handle(self, line: str, on_event: EventSink | None = None) -> list[Output]:
        """Apply one line; ``on_event`` sees the progress of any turn it runs."""
        try:
            command = parse_line(line)
            return getattr(self, f"_do_{command.name}")(command, on_event)
        except RecAgentError as exc:
            return [Notice(str(exc), "error")]

    # -- answering

    def _answer(self, message: str, on_event, *, exclude_shown: bool = False) -> AgentAnswer:
        self.last = self.assistant.agent.turn(self.session, message, exclude_shown=exclude_shown,
                                              on_event=on_event)
        return self.last

    def _again(self, on_event, **kw) -> AgentAnswer:
        """The next answer to the conversation's request, with the session as it is now."""
        return self._answer(self.session.constraints.query, on_event, **kw)

    def _shown(self, number: int) -> str:
        item_id = self.session.shown_item(number)
        if item_id is None:
            raise ChatInputError(_no_such_item(number, len(self.session.last_shown)))
        return item_id

    def _names(self) -> tuple[dict[str, str], dict[str, str]]:
        """The catalog's brands and category names (any level), keyed by their lower case."""
        if self._catalog_names is None:
            items = self.assistant.runtime.dataset.items.values()
            brands = {i.brand for i in items if i.brand}
            categories = {c for i in items for c in i.category}
            self._catalog_names = ({b.casefold(): b for b in brands},
                                   {c.casefold(): c for c in categories})
        return self._catalog_names

    def _title(self, item_id: str) -> str:
        return self.assistant.runtime.dataset.items[item_id].title

    # -- commands

    def _do_say(self, command: Command, on_event) -> list[Output]:
        phrases, rest = owned_phrases(command.text)
        notes = [self._add_owned(p) for p in phrases]
        added = [n for n in notes if isinstance(n, str)]
        for i, note in enumerate(notes):
            if isinstance(note, str):  # an added item: its number in /history, newest is 1
                number = len(added) - added.index(note)
                notes[i] = Notice(f"Added to your history: {self._title(note)} ({note}). "
                                  f"Not it? /forget {number} removes it.", "ok")
        return [*notes, self._answer(rest if phrases else command.text, on_event)]

    def _add_owned(self, phrase: str) -> Notice | str:
        """The id of the catalog item ``phrase`` names, now in the history, or why not."""
        if ref := _SHOWN_REF.match(phrase):
            item_id = self._shown(int(ref.group(1)))
        else:
            hits = self.assistant.tools.search_items(phrase, 1)
            if not hits or hits[0].score < self.match_threshold:
                return Notice(f"I could not find {phrase!r} in the catalog; your history is unchanged.")
            item_id = hits[0].item_id
        if item_id in self.session.seen:
            return Notice(f"{self._title(item_id)} ({item_id}) is already in your history.")
        self.assistant.feedback(self.session, item_id, "purchase")
        return item_id

    def _do_more(self, command: Command, on_event) -> list[Output]:
        if self.last is None:
            raise ChatInputError("nothing is shown yet: ask for something first")
        return [self._again(on_event, exclude_shown=True)]

    def _do_like(self, command: Command, on_event) -> list[Output]:
        return self._feedback(command.number, "like", on_event)

    def _do_dislike(self, command: Command, on_event) -> list[Output]:
        return self._feedback(command.number, "dislike", on_event)

    def _feedback(self, number: int, kind: str, on_event) -> list[Output]:
        item_id = self._shown(number)
        self.assistant.feedback(self.session, item_id, kind)
        said = ("Liked" if kind == "like" else "Disliked") + f" {self._title(item_id)} ({item_id})."
        said += (" It joins your history; the picks build on it." if kind == "like"
                 else " It will not be shown again.")
        return [Notice(said, "ok"), self._again(on_event)]

    def _do_filter(self, command: Command, on_event) -> list[Output]:
        current = self.session.constraints
        if not command.text:
            listed = ", ".join(current.describe()) or "none"
            return [Notice(f"Filters: {listed}. {COMMANDS['filter'][1]}.")]
        if command.text.casefold() in ("clear", "none", "off", "reset"):
            self.session.constraints = _cleared(current)
            topic = f' (the topic "{current.query}" stays; /reset starts over)' if current.query else ""
            return [Notice(f"Filters cleared{topic}.", "ok"), self._again(on_event)]
        brands, categories = self._names()
        self.session.constraints = apply_filter(current, command.text, brands=brands,
                                                categories=categories)
        listed = ", ".join(self.session.constraints.describe()) or "none"
        return [Notice(f"Filters now: {listed}.", "ok"), self._again(on_event)]

    def _do_why(self, command: Command, on_event) -> list[Output]:
        recs = self.last.recommendations if self.last else []
        if not 1 <= command.number <= len(recs):
            raise ChatInputError(_no_such_item(command.number, len(recs)))
        return [Why(recs[command.number - 1])]

    def _do_history(self, command: Command, on_event) -> list[Output]:
        return [self.history()]

    def history(self) -> HistoryView:
        own = {id(x) for x in self._own}
        items = self.assistant.runtime.dataset.items
        newest_first = list(reversed(self.session.history))
        entries = [HistoryEntry(n, x.item_id, items[x.item_id].title, x.event, id(x) not in own)
                   for n, x in enumerate(newest_first, 1)]
        return HistoryView(entries, list(self.session.liked), list(self.session.disliked),
                           self.session.constraints)

    def _do_forget(self, command: Command, on_event) -> list[Output]:
        history = self.session.history
        if not 1 <= command.number <= len(history):
            raise ChatInputError(f"there is no entry {command.number} in /history"
                                 + (f" (it has {len(history)})" if history else ": it is empty"))
        gone: Interaction = history.pop(len(history) - command.number)
        self.session.liked = [i for i in self.session.liked if i != gone.item_id]
        said = Notice(f"Forgot {self._title(gone.item_id)} ({gone.item_id}).", "ok")
        return [said, self._again(on_event)] if self.last is not None else [said]

    def _do_reset(self, command: Command, on_event) -> list[Output]:
        self._start()
        return [Notice("Started over. " + self.greeting().text, "ok")]

    def _do_trace(self, command: Command, on_event) -> list[Output]:
        if self.last is None:
            raise ChatInputError("no answer yet, so no tool calls to show")
        return [TraceView(list(self.last.trace))]

    def _do_help(self, command: Command, on_event) -> list[Output]:
        return [HelpView()]

    def _do_quit(self, command: Command, on_event) -> list[Output]:
        return [Quit()]
