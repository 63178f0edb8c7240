"""What a line typed into the chat means, with no session in it.

- :func:`parse_line`: a slash command (``/why 2``, ``/filter price<30``) or a message.
- :func:`apply_filter`: the ``/filter`` grammar (``price<30, brand!=Nikon, category=Pens,
  in-stock``) applied to :class:`~recagent.tools.filter_items.Constraints`.
- :func:`owned_phrases`: what a message says the user bought, owns or has ("I just bought
  a DSLR"), which the chat looks up in the catalog to build a history.

Anything it cannot read is a :class:`ChatInputError` whose message says what to type instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from recagent.catalog.errors import RecAgentError
from recagent.tools.filter_items import Constraints

__all__ = ["COMMANDS", "ChatInputError", "Command", "apply_filter", "cleared", "owned_phrases",
           "parse_line", "shown_number"]

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


def cleared(c: Constraints) -> Constraints:
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


def shown_number(phrase: str) -> int | None:
    """N when an owned phrase points at a shown item ("#2", "number 2", "item 2")."""
    m = _SHOWN_REF.match(phrase)
    return int(m.group(1)) if m else None
