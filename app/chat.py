"""The conversation service both front ends use (the terminal chat and the HTTP backend):
each line is a slash command or a message, with no terminal or HTTP in it.

:class:`Chat` holds one conversation (a :class:`~recagent.agent.session.Session` and the
:class:`~recagent.app.assistant.Assistant` that answers in it). :meth:`Chat.handle` applies a
line and returns what happened as plain objects (:class:`Notice`, an
:class:`~recagent.agent.turn.AgentAnswer`, :class:`Why`, :class:`HistoryView`,
:class:`TraceView`, :class:`HelpView`, :class:`Quit`); a front end decides how they look.
The HTTP backend resumes a stored session with :meth:`Chat.resume` and passes its own
``answer`` function (load shedding, the index-free fallback).

- Feedback and filters act at once: ``/like N``, ``/dislike N``, ``/filter ...`` and
  ``/forget N`` change the session and answer again, so the change shows in the next picks.
- Answers after a command keep the conversation's request: the last topic the user asked
  for (``session.constraints.query``) is searched again, with the filters as they are now.
- A message that says the user bought, owns or has something ("I just bought a DSLR") adds
  the closest catalog item to the history (``search_items``) before it is answered, which
  is how a new user with no history builds one.
- Bad input never raises: it comes back as one ``Notice(kind="error")`` line.

What a typed line means (commands, the ``/filter`` grammar, "I bought ...") is in
:mod:`recagent.app.chat_input`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from recagent.agent.events import EventSink
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer, AgentRecommendation, ToolCall
from recagent.app.chat_input import (
    COMMANDS,
    ChatInputError,
    Command,
    apply_filter,
    cleared,
    owned_phrases,
    parse_line,
    shown_number,
)
from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Interaction
from recagent.tools.filter_items import Constraints

__all__ = ["Chat", "HelpView", "HistoryEntry", "HistoryView", "Notice", "Output", "Quit",
           "TraceView", "Why"]


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
# How a turn is answered: (session, message, exclude_shown=, again=, on_event=) -> AgentAnswer.
Answerer = Callable[..., AgentAnswer]


class Chat:
    """One conversation: a user (or a new one with ``user_id=None``) and their session.

    ``match_threshold`` is the lowest ``search_items`` score at which a named purchase
    ("I bought a tripod") is taken to be that catalog item.
    """

    def __init__(self, assistant, user_id: str | None = None, *, match_threshold: float = 0.4,
                 answer: Answerer | None = None) -> None:
        self.assistant = assistant
        self.user_id = user_id
        self.match_threshold = match_threshold
        self._answerer = answer
        self._catalog_names: tuple[dict[str, str], dict[str, str]] | None = None
        self._start()

    @classmethod
    def resume(cls, assistant, session: Session, *, answer: Answerer | None = None,
               match_threshold: float = 0.4) -> Chat:
        """The conversation of a stored ``session`` (its last answer is not kept: ``/why`` and
        ``/trace`` then say so; the HTTP client has that answer already)."""
        chat = cls(assistant, session.user_id, match_threshold=match_threshold, answer=answer)
        chat.session = session
        return chat

    def _start(self) -> None:
        self.session = self.assistant.session(self.user_id)
        self.last: AgentAnswer | None = None

    def _own(self) -> set[tuple[str, float]]:
        """The user's history before this chat (the dataset's), as (item, time) pairs."""
        if self.session.user_id is None:
            return set()
        own = self.assistant.runtime.dataset.histories.get(self.session.user_id, [])
        return {(x.item_id, x.timestamp) for x in own}

    def greeting(self) -> Notice:
        n = len(self.session.history)
        who = (f"User {self.session.user_id}: {n} item{'' if n == 1 else 's'} in the history."
               if self.session.user_id is not None else
               "New user, no history yet (tell me what you have: \"I just bought a DSLR\").")
        return Notice(f"{who} Ask for something, or type /help.")

    def handle(self, line: str, on_event: EventSink | None = None, *,
               exclude_shown: bool = False) -> list[Output]:
        """Apply one line; ``on_event`` sees the progress of any turn it runs, and
        ``exclude_shown`` makes a message's answer leave out what was shown (as /more does)."""
        try:
            command = parse_line(line)
            if command.name == "say":
                return self._do_say(command, on_event, exclude_shown=exclude_shown)
            return getattr(self, f"_do_{command.name}")(command, on_event)
        except RecAgentError as exc:
            return [Notice(str(exc), "error")]

    # -- answering

    def _answer(self, message: str, on_event, *, exclude_shown: bool = False,
                again: bool = False) -> AgentAnswer:
        answer = self._answerer or self.assistant.agent.turn
        self.last = answer(self.session, message, exclude_shown=exclude_shown, again=again,
                           on_event=on_event)
        self.session = self.last.session
        return self.last

    def _again(self, on_event, **kw) -> AgentAnswer:
        """The next answer to the conversation's request, with the session as it is now (its
        constraints and query, after feedback or a ``/filter``)."""
        return self._answer(self.session.constraints.query, on_event, again=True, **kw)

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

    def _do_say(self, command: Command, on_event, *, exclude_shown: bool = False) -> list[Output]:
        phrases, rest = owned_phrases(command.text)
        notes = [self._add_owned(p) for p in phrases]
        added = [n for n in notes if isinstance(n, str)]
        for i, note in enumerate(notes):
            if isinstance(note, str):  # an added item: its number in /history, newest is 1
                number = len(added) - added.index(note)
                notes[i] = Notice(f"Added to your history: {self._title(note)} ({note}). "
                                  f"Not it? /forget {number} removes it.", "ok")
        return [*notes, self._answer(rest if phrases else command.text, on_event,
                                     exclude_shown=exclude_shown)]

    def _add_owned(self, phrase: str) -> Notice | str:
        """The id of the catalog item ``phrase`` names, now in the history, or why not."""
        if (number := shown_number(phrase)) is not None:
            item_id = self._shown(number)
        else:
            hits = self.assistant.tools.search_items(phrase, 1)
            # the similarity alone, not what rare title words add to it, meets the threshold
            if not hits or hits[0].scores.get("cosine", hits[0].score) < self.match_threshold:
                return Notice(f"I could not find {phrase!r} in the catalog; your history is unchanged.")
            item_id = hits[0].item_id
        if item_id in self.session.seen:
            return Notice(f"{self._title(item_id)} ({item_id}) is already in your history.")
        self.assistant.feedback(self.session, item_id, "purchase")
        return item_id

    def _do_more(self, command: Command, on_event) -> list[Output]:
        if not self.session.shown:
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
            self.session.constraints = cleared(current)
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
        own = self._own()
        items = self.assistant.runtime.dataset.items
        newest_first = list(reversed(self.session.history))
        entries = [HistoryEntry(n, x.item_id, items[x.item_id].title, x.event,
                                (x.item_id, x.timestamp) not in own)
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
        return [said, self._again(on_event)] if self.session.shown else [said]

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
