"""Text from data or users made safe to show on a terminal: the one sanitiser every layer uses.

Catalog titles, user ids, messages and LLM output can carry terminal control sequences (ESC
for colours, clear-screen, OSC-8 hyperlinks), other C0/C1 controls, and the Unicode bidi and
invisible formatting characters (U+202E RIGHT-TO-LEFT OVERRIDE reverses what follows). None
of them reaches a terminal: :func:`visible` replaces each with a visible stand-in (C0 controls
by their Unicode "control picture", ``␛`` for ESC; the others by ``<U+XXXX>``), one for one,
so nothing is silently hidden. Rich markup escaping is the CLI's own step on top of this.
"""

from __future__ import annotations

__all__ = ["UNSAFE", "json_visible", "visible"]

# Bidi embeddings, overrides, isolates and marks; zero-width and invisible formatting.
_FORMAT = [0x061C, 0x200B, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2060, 0x2065),
           *range(0x2066, 0x206A), 0x2028, 0x2029, 0xFEFF]
UNSAFE = frozenset([*range(0x20), 0x7F, *range(0x80, 0xA0), *_FORMAT]) - {0x09, 0x0A}

_TABLE = {c: (chr(0x2400 + c) if c < 0x20 else "\u2421" if c == 0x7F else f"<U+{c:04X}>")
          for c in UNSAFE}
_ONE_LINE = {**_TABLE, 0x09: " ", 0x0A: " "}
_JSON = {c: f"\\u{c:04x}" for c in UNSAFE}


def visible(text: object, *, one_line: bool = False) -> str:
    """``str(text)`` with every control, bidi and invisible formatting character replaced by a
    visible stand-in; ``one_line`` also turns tabs and newlines into spaces (table cells)."""
    return str(text).translate(_ONE_LINE if one_line else _TABLE)


def json_visible(json_text: str) -> str:
    """A JSON document with the same characters written as ``\\uXXXX`` escapes: the same data
    for a parser, nothing a terminal would act on (they can only occur inside strings)."""
    return json_text.translate(_JSON)
