"""Amounts written in words, as digits, where they are prices: "about thirty dollars",
"under a hundred", "twenty-five bucks max", "under a tenner".

Only a run of number words that follows a price cue ("under", "around", "in the ballpark of",
...) or comes before a currency word ("dollars", "bucks") or a price's tail ("tops", "or so")
is rewritten, so "the one with a zoom" or "two pairs of socks" keep their words.
"""

from __future__ import annotations

import re

__all__ = ["spell_prices"]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "grand": 1000}
_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
# "a hundred", "two hundred and fifty", "twenty-five", "a couple hundred"
_RUN = re.compile(
    rf"\b(?:(?:a|an|a couple(?: of)?)\s+)?(?:{_WORD})"
    rf"(?:(?:(?<=hundred)\s+and\s+|(?<=thousand)\s+and\s+|[\s-]+)(?:{_WORD}))*\b",
    re.IGNORECASE)
_CUE_BEFORE = re.compile(
    r"(?:under|below|less than|cheaper than|at most|max(?:imum)?|up to|no more than|over|above|"
    r"more than|at least|around|about|roughly|approximately|between|budget(?:'s| of| is)?|spend|"
    r"ballpark(?: of)?|something like|in the region of|give or take|"
    r"costs?|\$|between\s+\d+\s+(?:and|to))\s*$", re.IGNORECASE)
# "fifty tops", "twenty or less", "forty-ish": words after the amount that
# only a price takes ("two or three" is not one of them).
_CURRENCY_AFTER = re.compile(r"^\s*(?:dollars?|bucks|usd|quid)\b|^(?:\s*(?:tops|or less|or under)|-?ish)\b",
                             re.IGNORECASE)


def _value(words: str) -> int | None:
    """The number a run of number words names ("two hundred and fifty" -> 250)."""
    total, current = 0, 0
    tokens = re.split(r"[\s-]+", words.casefold().replace(" and ", " "))
    if tokens[:2] == ["a", "couple"]:
        tokens = ["two", *[t for t in tokens[2:] if t != "of"]]
    seen = False
    for token in tokens:
        if token in ("a", "an"):
            current = max(current, 1)
        elif token in _UNITS:
            current += _UNITS[token]
            seen = True
        elif token in _TENS:
            current += _TENS[token]
            seen = True
        elif token in _SCALES:
            current = max(current, 1) * _SCALES[token]
            if _SCALES[token] >= 1000:
                total, current = total + current, 0
            seen = True
    return total + current if seen else None


# Banknotes by name: "under a tenner" is under $10.
_NOTES = {"fiver": 5, "tenner": 10}
_NOTE = re.compile(r"\b(?:a\s+)?(fiver|tenner)\b", re.IGNORECASE)


# "$1,000", "2,499.99": a comma before exactly three digits groups thousands ("1,5" stays).
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def spell_prices(text: str) -> str:
    """``text`` with each amount in words that is a price written as digits, and amounts
    written with thousands separators written without them ("$1,000" -> "$1000")."""
    text = _THOUSANDS.sub("", text)
    text = _NOTE.sub(lambda m: f"{_NOTES[m.group(1).casefold()]} dollars", text)
    out, last = [], 0
    for m in _RUN.finditer(text):
        before = text[last:m.start()]
        written = "".join(out) + before  # "between 20 and forty": the cue has digits by now
        is_price = _CUE_BEFORE.search(written) or _CURRENCY_AFTER.match(text[m.end():])
        value = _value(m.group(0)) if is_price else None
        if value is None:
            continue
        out += [before, str(value)]
        last = m.end()
    out.append(text[last:])
    return "".join(out)
