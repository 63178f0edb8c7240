"""Explanations that are true: LLM prose checked against the evidence, or the evidence itself.

The LLM writes one sentence from an item's evidence (``prompts/explain_prose.yaml``), opening
with the item's title, which is given to it. The faithfulness check then accepts it only when everything it names is in that evidence:

- quoted text must be the item's title, a related history title, a shared attribute value, or
  the words of the request it meets (``about "..."``);
- a title of any other item the user has or was offered must not appear;
- a catalog brand must appear in the evidence text, and the item's own brand may not be
  denied ("..., not from <its brand>"); a price must be the item's price or a bound the user
  set; an item id must be the item's own;
- what it calls the item ("<X> is a ...") may not borrow a word from a history title or the
  request that the item's own title, category and shared values lack ("<sleeping bag> is a
  backpacking tent", "<end mill set> is a tap set");
- what it says must be grounded: every number or size ("16oz", "2-pack") must be in the
  evidence, and at most one content word outside a small vocabulary of explanation words
  ("bought", "similar", "fits", ...) may be missing from it (an invented plot, feature or
  variant fails);
- it must name at least one concrete fact besides the item: a related history item, a shared
  attribute value or what the request asked for (a price, a word of its query or category);
- it must not say the user already has the item ("you bought the <item>", "if you liked
  <item>"), nor repeat itself
  (the same three words twice);
- the sentence must be non-empty and short.

Prose that fails is cut back to its longest leading part that passes, where one does (an
invented tail such as "..., offering a unique experience" is dropped: :func:`clause_cuts`);
else it is replaced by a clean rendering of the evidence
(``prompts/explanation_evidence.yaml``), and the reasons are kept for the trace and the eval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from recagent.catalog.model import Dataset
from recagent.llm.base import LLM
from recagent.prompts import render
from recagent.tools.explain import ItemEvidence

__all__ = ["EXPLAINER", "NO_REDRAWS", "Explanation", "ExplanationWriter", "Redraws", "clause_cuts",
           "cut_loop", "faithfulness_problems", "names_a_fact"]

# The LoRA adapter that writes explanations, where the LLM has one (`recagent train-explainer`).
EXPLAINER = "explainer"

_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,})[\"“”]")
_PRICE = re.compile(r"\$\s*(\d+(?:,\d{3})*(?:\.\d+)?)")
_ENDED = re.compile(r"[.!?][\"\u201d')\]]*\s*$")  # a sentence ends on a stop, maybe in quotes
_MIN_TITLE = 8  # shorter titles ("Up", "Heat") are too likely to occur as plain words


@dataclass(frozen=True)
class Explanation:
    text: str
    source: str  # "llm" (checked prose) or "evidence" (rendered from the evidence)
    problems: tuple[str, ...] = ()  # why the LLM's sentence was rejected, if it was
    draws: int = 1  # LLM sentences written for it: 1, or more where a redraw passed the check
    trimmed: bool = False  # shown without the trailing clauses that failed the check

    @property
    def faithful(self) -> bool:
        return self.source == "llm"


@dataclass(frozen=True)
class Redraws:
    """How a sentence that failed the check is drawn again: up to ``n`` sampled sentences for
    each rejected item, and the first that passes is shown (``LLM.draw_batch``: an embedded
    model draws them in the same batch, as soon as the rejected sentence ended).

    With ``budget_s``, the redraws of a turn that began at ``turn_started`` end that many
    seconds after its start (the ``deadline``: the sentences still decoding then end where
    they are, and only a leading part that ends a sentence can pass).
    None: no bound."""

    n: int = 0
    budget_s: float | None = None

    def deadline(self, turn_started: float | None) -> float | None:
        """When the redraws of a turn that began at ``turn_started`` must end (None: never)."""
        if self.budget_s is None or turn_started is None:
            return None
        return turn_started + self.budget_s


NO_REDRAWS = Redraws()


def evidence_text(evidence: ItemEvidence) -> str:
    return render(
        "explanation_evidence",
        related=[e.title for e in evidence.related],
        shared=evidence.shared,
        satisfies=list(evidence.satisfies),
    )


_CEILING_BEFORE = r"(?:within|under|below|up to|less than|no more than|at most|inside)\s+(?:your\s+|a\s+|the\s+)?"
_CEILING_AFTER = r"\s*(?:budget|limit|cap|max(?:imum)?|or less)\b"
_FLOOR_BEFORE = r"(?:over|above|more than|at least|from)\s+(?:your\s+|a\s+|the\s+)?"
_FLOOR_AFTER = r"\s*(?:or more|and up|and above|minimum|or above)\b"


# "within your $15 to $35 budget": the first amount of a range is not a bound of its own.
_RANGE_ON = r"(?!\s*(?:-|–|to|and)\s*\$?\s*\d)"


def _bound_problems(text: str, floor: float | None, ceiling: float | None) -> list[str]:
    """A request's bound named as the other kind: "within your $50 budget" when $50 is the
    lowest price asked for, or "over $80" when $80 is the highest."""
    def amounts(before: str, after: str) -> set[float]:
        found = re.findall(before + _PRICE.pattern + _RANGE_ON, text, re.IGNORECASE)
        found += re.findall(_PRICE.pattern + after, text, re.IGNORECASE)
        return {round(float(a.replace(",", "")), 2) for a in found}

    problems = []
    if floor is not None and floor != ceiling and round(floor, 2) in amounts(_CEILING_BEFORE, _CEILING_AFTER):
        problems.append(f"calls ${floor:g} a ceiling, but the request asked for at least ${floor:g}")
    if ceiling is not None and ceiling != floor and round(ceiling, 2) in amounts(_FLOOR_BEFORE, _FLOOR_AFTER):
        problems.append(f"calls ${ceiling:g} a minimum, but the request asked for at most ${ceiling:g}")
    return problems


def faithfulness_problems(
    text: str,
    evidence: ItemEvidence,
    *,
    other_titles: Iterable[str] = (),
    brands: Iterable[str] = (),
    item_ids: Iterable[str] = (),
    price_bounds: Iterable[float] = (),
    price_floor: float | None = None,
    price_ceiling: float | None = None,
    max_chars: int = 300,
) -> list[str]:
    """Everything in ``text`` that the evidence does not support (empty list: faithful)."""
    problems: list[str] = []
    if not text.strip():
        return ["empty"]
    if len(text) > max_chars:
        problems.append(f"longer than {max_chars} characters")
    own_words = _without_names(_QUOTED.sub(" ", text),
                               [evidence.title, *(e.title for e in evidence.related)])
    if len(own_words.split()) < 4:
        problems.append("not a sentence (only titles)")
    if evidence.title.casefold() not in text.casefold() and not _names_item(text, evidence.title):
        problems.append("does not name the item")
    allowed_titles = [evidence.title, *(e.title for e in evidence.related)]
    allowed_text = " ".join([*allowed_titles, *evidence.shared.values(), *evidence.satisfies]).casefold()
    for quoted in _QUOTED.findall(text):
        q = quoted.strip().casefold()
        if not any(q == t.casefold() or (len(q) >= _MIN_TITLE and q in t.casefold()) for t in allowed_titles) \
                and q not in {v.casefold() for v in evidence.shared.values()} \
                and not any(f'"{_bare(q)}"' in _bare_quotes(line) for line in evidence.satisfies):
            problems.append(f'quotes "{quoted.strip()}", which is not in the evidence')
    lowered = text.casefold()
    allowed_lower = {t.casefold() for t in allowed_titles}
    for title in set(other_titles):
        t = title.casefold()
        if len(t) >= _MIN_TITLE and t not in allowed_lower and t in lowered \
                and not any(t in a for a in allowed_lower):
            problems.append(f'names "{title}", which is not in the evidence')
    for brand in set(brands):  # the substring test first: Amazon has thousands of brands
        if brand in text and re.search(rf"(?<!\w){re.escape(brand)}(?!\w)", text) \
                and brand.casefold() not in allowed_text:
            problems.append(f"names brand {brand}, which is not in the evidence")
    problems += _denied_brand_problems(text, evidence, brands)
    prices = {round(p, 2) for p in price_bounds}
    if evidence.price is not None:
        prices.add(round(evidence.price, 2))
    for amount in _PRICE.findall(text):
        if round(float(amount.replace(",", "")), 2) not in prices:
            problems.append(f"states a price ${amount} that is not the item's")
    problems += _bound_problems(text, price_floor, price_ceiling)
    for token in set(re.findall(r"(?<![\w-])[A-Za-z0-9][\w-]{3,}(?<!-)", text)) & set(item_ids):
        if token != evidence.item_id:
            problems.append(f"names item id {token}")
    problems += _grounding_problems(text, evidence, allowed_titles, prices)
    if (called := _called(text, evidence)) is not None:
        problems.append(f'calls the item a "{called}", which its title and category do not')
    if not names_a_fact(text, evidence):
        problems.append("names no fact from the evidence (a history item, a shared attribute "
                        "or what the request asked for)")
    return problems


_DENIED = re.compile(r"\b(?:not|n't|never)\s+(?:made\s+)?(?:from|by)\s+(?:the\s+)?", re.IGNORECASE)


def _brands_in_evidence(evidence: ItemEvidence) -> list[str]:
    """The brand the request asked for ("brand 3M") and the brand shared with the history."""
    found = [line[len("brand "):] for line in evidence.satisfies if line.startswith("brand ")]
    if evidence.shared.get("brand"):
        found.append(evidence.shared["brand"])
    return [b for b in found if b]


def _denied_brand_problems(text: str, evidence: ItemEvidence, brands: Iterable[str]) -> list[str]:
    """The item's own brand denied ("<Rockler adhesive> is ..., and not from Rockler"): its
    brand is a catalog brand its title names, the brand it shares, or the brand asked for."""
    if not _DENIED.search(text):  # most sentences deny nothing: no need to scan the catalog's brands
        return []
    own = {b for b in brands if b in evidence.title
           and re.search(rf"(?<!\w){re.escape(b)}(?!\w)", evidence.title, re.IGNORECASE)}
    own |= set(_brands_in_evidence(evidence))
    return [f"says the item is not from {b}, which it is from"
            for m in _DENIED.finditer(text) for b in sorted(own)
            if b and text[m.end():m.end() + len(b)].casefold() == b.casefold()]


def _without_names(text: str, titles: Iterable[str]) -> str:
    """``text`` with each title blanked out, said whole or by its spoken name."""
    for title in titles:
        for said in dict.fromkeys([title, spoken_title(title)]):
            text = re.sub(re.escape(said), " ", text, flags=re.IGNORECASE)
    return text


def _bare(text: str) -> str:
    """Quoted text without case, closing punctuation or doubled spaces ("Dog food . " -> "dog food")."""
    return " ".join(text.casefold().split()).rstrip(".!?, ")


def _bare_quotes(line: str) -> str:
    """A constraint line with each quoted part made :func:`_bare`."""
    return re.sub(r'"([^"]*)"', lambda m: f'"{_bare(m.group(1))}"', line.casefold())


# Words of a constraint line that say what kind of constraint it is, not what was asked for.
_CONSTRAINT_WORDS = frozenset({"price", "category", "brand", "not", "about", "like", "item", "in",
                               "stock", "less"})


def names_a_fact(text: str, evidence: ItemEvidence) -> bool:
    """True when ``text`` names something specific from the evidence besides the item itself:
    a related history item, a shared attribute value, or what the request asked for (a word
    of its query or category, or a price). "The X is a great choice" names nothing."""
    rest = _without_names(text, [evidence.title])
    if _PRICE.search(rest):  # the check above allows only the item's price or the user's bounds
        return True
    # "mid-tier" says "mid": compounds count by their parts too.
    said = {_stem(w.casefold().removesuffix("'s")) for w in _WORD.findall(rest) for w in (w, *w.split("-"))
            if len(w) >= 3 and w.casefold() not in _FUNCTION_WORDS}
    own = {_stem(w.casefold()) for w in _WORD.findall(evidence.title)}
    for related in evidence.related:  # by its title, or a word of it the item's title lacks
        if _names_item(text, related.title) or any(
                len(w) >= 4 and _stem(w.casefold()) in said - own for w in _WORD.findall(related.title)):
            return True
    # A shared number ("75" recipes, like the history's) is a fact too, said as a word.
    if any(v.isdigit() and re.search(rf"(?<![\w.]){v}(?![\w.])", rest) for v in evidence.shared.values()):
        return True
    # The brand asked for or shared, however short or spelt ("a tape from 3M").
    if any(re.search(rf"(?<!\w){re.escape(b)}(?!\w)", rest, re.IGNORECASE) for b in _brands_in_evidence(evidence)):
        return True
    facts = [*evidence.shared.values(), *evidence.satisfies]
    return any(_stem(w.casefold()) in said for fact in facts for w in _WORD.findall(fact)
               if len(w) >= 3 and w.casefold() not in _CONSTRAINT_WORDS | _FUNCTION_WORDS)


_CALLED = re.compile(r"^\W*(?:is|was|makes)\s+(?:a|an|another|the|one)\s+(.+?)"
                     r"(?=\s+(?:for|that|with|from|to|which|and|who|in|at|on|by|priced|like|if)\b|[,.;:!?]|$)",
                     re.IGNORECASE)


def _called(text: str, evidence: ItemEvidence) -> str | None:
    """What the sentence calls the item ("<sleeping bag> is a premium backpacking tent", "<end
    mill set> is a tap set, as you asked") when a word of it is borrowed from a related history
    title or the request and the item's own title, category path and shared attributes do not
    bear it out: its head noun first, else the first such word."""
    at = text.casefold().find(evidence.title.casefold())
    m = _CALLED.match(text[at + len(evidence.title):]) if at >= 0 else None
    words = _WORD.findall(m.group(1)) if m else []
    if not words or "-" in words[-1]:  # "a budget-friendly, ..." ends on an adjective
        return None
    # The request quoted back ('one of the "smooth pens" you asked for') is the shopper's words.
    unquoted = _WORD.findall(re.sub(r"[\"“”][^\"“”]*(?:[\"“”]|$)", " ", m.group(1)))

    def has(text: str, word: str) -> bool:
        head = _stem(word.casefold().strip("'"))
        return any(head == _stem(w) or w.startswith(head) or (len(head) >= 4 and head in w)
                   for w in _WORD.findall(text.casefold()))

    own = " ".join([evidence.title, *evidence.category, *evidence.shared.values()])
    borrowed = " ".join([*(e.title for e in evidence.related), *evidence.satisfies])
    # "a 3M brand sponge" for "brand 3M": the words that say what kind of constraint a request
    # line is are no product's.
    ignored = _FUNCTION_WORDS | _EXPLANATION_WORDS | _CONSTRAINT_WORDS
    named = [w for w in unquoted if len(w) >= 3 and w.casefold() not in ignored]
    for word in ([words[-1]] if words[-1] in named else []) + named:
        if has(borrowed, word) and not has(own, word):
            return word
    return None


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words an explanation may use without the evidence holding them.
_FUNCTION_WORDS = _words("""
a about above after again all also an and any are as at be because been before being both but
by can could did do does doing each either for from had has have having he her here hers him
his how i if in into is it its itself just me more most much my no nor not now of off on once
one only or other our ours out over own same she should so some such than that the their them
then there these they this those through to too under until up very was we were what when
where which while who whom why will with would yet you your yours yourself you're you've
it's that's they're there's
""")
_EXPLANATION_WORDS = _words("""
bought buying purchase purchased watched liked like likes enjoyed enjoy loved love rated owned
own choice pick picks recommend recommended suggest suits suit fits fit goes pairs pair match
matches matching shares sharing similar similarly another next great good nice perfect ideal
well better favorite favourite history recent recently earlier previous before since style
taste item items product products film films movie movies title same kind also complements
complement addition collection pairs useful handy fans fan keep together along next want
cost costs priced price within budget asked request requested wanted looking searched less least
option options suitable anyone range between gift gifts present presents
""")
# Second halves of a compound that say no more than its first half: "budget-friendly" is
# grounded when "budget" is (a budget-tier item), not otherwise.
_COMPOUND_TAILS = frozenset({"friendly", "level", "sized"})
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_NUMBERISH = re.compile(r"\b\w*\d[\w.-]*\b")
_HAS_IT = re.compile(r"\byou(?:'ve| have)?\s+(?:already\s+)?(?:bought|own|owned|have|watched|"
                     r"rated|purchased|got|liked|enjoyed|loved|used)\b", re.IGNORECASE)


def _grounding_problems(text: str, evidence: ItemEvidence, allowed_titles: list[str],
                        prices: set[float]) -> list[str]:
    problems: list[str] = []
    facts = " ".join([*allowed_titles, *evidence.shared.keys(), *evidence.shared.values(),
                      *evidence.satisfies]).casefold()
    fact_words = {_stem(w) for w in _WORD.findall(facts)}
    own = _QUOTED.sub(" ", text)
    for title in allowed_titles:
        own = re.sub(re.escape(title), " ", own, flags=re.IGNORECASE)
    ungrounded = []

    # "cooking book" for Cookbooks: a word may be the first or last part of a compound fact word.
    compounds = [w.rstrip("s") for w in fact_words if len(w) >= 7]

    def grounded(word: str) -> bool:
        stem = _stem(word)
        # "headphone" is grounded by "Headphones", whose crude stem is "headphon".
        return word in _FUNCTION_WORDS or word in _EXPLANATION_WORDS or stem in fact_words or \
            _stem(word + "s") in fact_words or (
            len(stem) >= 4 and any(c != stem and (c.startswith(stem) or c.endswith(stem)) for c in compounds))

    for word in _WORD.findall(own.casefold()):
        word = word.strip("'-").removesuffix("'s")
        if len(word) < 4 or grounded(word):
            continue
        # A compound is grounded when its parts are: "mid-tier" says what "tier mid" does.
        parts = [w for w in word.split("-") if w]
        if "-" in word and all(grounded(w) for w in parts):
            continue
        if len(parts) == 2 and parts[1] in _COMPOUND_TAILS and _stem(parts[0]) in fact_words:
            continue
        if word not in ungrounded:
            ungrounded.append(word)
    if len(ungrounded) > 1:
        problems.append(f"says what the evidence does not: {', '.join(ungrounded[:6])}")
    price_texts = {f"{p:g}" for p in prices} | {f"{p:.2f}" for p in prices}
    # "3-terminals" is what "3 Terminals" says, and "2 pack" what "2-pack" does.
    spaced_facts = facts.replace("-", " ")
    for token in set(_NUMBERISH.findall(text)):
        if token.casefold() not in facts and token.casefold().replace("-", " ") not in spaced_facts \
                and token.lstrip("$").replace(",", "") not in price_texts:
            problems.append(f"states {token}, which is not in the evidence")
    head = evidence.title.casefold()[:20]
    for match in _HAS_IT.finditer(text):
        if head in text[match.end(): match.end() + 12 + len(head)].casefold():
            problems.append("says the user already has the item")
    # Titles may share words with each other and with the sentence: not counted, nor a title
    # given without its first words ("Ember Realms: ..." for "Tabletop Foundry Ember Realms: ...").
    for title in allowed_titles:
        for cut in (*_title_tails(title), spoken_title(title)):
            own = re.sub(re.escape(cut), " ", own, flags=re.IGNORECASE)
    words = [w.casefold() for w in _WORD.findall(own)]
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if len(trigrams) != len(set(trigrams)):
        problems.append("repeats itself")
    return problems


def _title_tails(title: str) -> list[str]:
    """``title`` shortened as people shorten it, where at least four words are left: without
    its first one to three words (the brand), or cut at its first comma ("..., 30lb Bag")."""
    out = []
    for t in dict.fromkeys([title, title.split(",")[0].strip()]):
        words = t.split()
        out += [" ".join(words[k:]) for k in range(0 if t != title else 1, 4) if len(words) - k >= 4]
    return out


_SPOKEN_MAX_WORDS = 10
_SPOKEN_CUTS = re.compile(r"\s+[|\u2013\u2014-]\s+|,\s+|\s+\(|\s+\[|\s+/\s+|\s+with\s+|\s+for\s+")
_WORK_TITLE = re.compile(r"\(\d{4}\)$")  # "Heat (1995)": a film's or a book's name, kept whole


def spoken_title(title: str) -> str:
    """``title`` as a person says it in a sentence. A listing title longer than ten words is
    cut at its first separator (" | ", " - ", ", ", " (", " with ", " for ") that leaves at
    least three words, then to ten words ("Neiko 11108A Aluminum Oxide Flap Disc, 80 Grit |
    Flat Type #27 | 10-Pack" -> "Neiko 11108A Aluminum Oxide Flap Disc"). Shorter titles and
    names of works ("... (1963)") stay whole."""
    words = title.split()
    if len(words) <= _SPOKEN_MAX_WORDS or _WORK_TITLE.search(title):
        return title
    for cut in _SPOKEN_CUTS.finditer(title):
        head = title[: cut.start()].strip()
        if len(head.split()) >= 3:
            title = head
            break
    return " ".join(title.split()[:_SPOKEN_MAX_WORDS]).rstrip(",;:-")


_LOOP_N = 4  # words: a run of this many said a second time is the start of a loop


def cut_loop(text: str, start: str = "") -> str:
    """``text`` up to where its words after ``start`` begin to repeat themselves (a small model
    falls into loops: 'is about "dog food" and is about "dog food" and ...'), ended with a
    full stop. The faithfulness check still reads what is left."""
    head, rest = (text[: len(start)], text[len(start):]) if start and text.startswith(start) else ("", text)
    words = list(re.finditer(r"\S+", rest))
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - _LOOP_N + 1):
        gram = tuple(w.group().casefold().strip(".,;:!?\"'") for w in words[i: i + _LOOP_N])
        if gram in seen:
            kept = re.sub(r"(?:[\s,;:]|\b(?:and|or|but|which|that|is)\b)+$", "", rest[: words[i].start()])
            return head + kept.rstrip() + "."
        seen.add(gram)
    return text


# Where a sentence's trailing clause may be cut off: after a full stop (a second sentence goes
# whole); at a semicolon, colon or dash; before a word that opens a clause ("that can be used
# for hiking", "offering a unique experience", "specifically for ..."); at a comma before
# "and", "with", "priced", "it" and the like (", and it's a sleeping bag"). Not at a comma
# between adjectives ("a lightweight, 3-season tent"), nor before a bare "and", "for" or "to",
# which would leave "... used for both morning." of "used for both morning and evening coffee".
_CLAUSE_START = re.compile(
    r"(?<=[.!?])\s+|\s*[;:]\s+|\s+[\u2013\u2014-]\s+"
    r"|,?\s+(?=(?:that|which|but|while|because|since|making|perfect|ideal|offering|featuring|"
    r"providing|allowing|specifically)\b)"
    r"|,\s+(?=(?:and|so|with|within|priced|it|it's|this|they|as|for|plus|not)\b)",
    re.IGNORECASE)
# A cut must not end on a word that leaves the phrase open ("... a lightweight and.").
_OPEN_ENDS = _words("a an the and or but for to of with by from in on at as both your its their "
                    "very more most is are was")
_MIN_CUT_WORDS = 3  # words a cut sentence keeps after the item's name ("is a tent")
# A dash between two amounts ("$15 - $35") is a range, not a clause break.
_RANGE_DASH = re.compile(r"\s*[\u2013\u2014-]\s*\$?\s*\d")


def clause_cuts(text: str, start: str = "") -> list[str]:
    """``text``'s leading parts, longest first, each ended with a full stop: the sentence cut
    before one of its clauses, never inside ``start`` (the item's name), a quotation or a
    price range, and never leaving fewer than three words after ``start``. A small model often
    adds an invented tail to a true sentence ("... is a coffee maker that can be used for both
    morning and evening coffee"); the writer shows the longest part that passes the check."""
    head = len(start) if start and text.startswith(start) else 0
    quoted = [m.span() for m in re.finditer(r'"[^"]*"|\u201c[^\u201d]*\u201d', text)]
    cuts = []
    for m in _CLAUSE_START.finditer(text, head):
        at = m.start()
        if any(a < at < b for a, b in quoted) or (
                re.search(r"\d\s*$", text[:at]) and _RANGE_DASH.match(text, at)):
            continue
        kept = text[:at].rstrip(" ,;:-\u2013\u2014.!?")
        last = kept.rsplit(None, 1)[-1].casefold() if kept.strip() else ""
        if len(kept[head:].split()) >= _MIN_CUT_WORDS and last not in _OPEN_ENDS:
            cuts.append(kept + ".")
    return list(dict.fromkeys(reversed(cuts)))


def _stem(word: str) -> str:
    """A crude stem, so "runner" and "running", "camera" and "cameras", "probe" and "probes",
    or "accessory" and "accessories" meet. "es" goes only after s, x, z, ch and sh ("boxes",
    "inches"; "machines" -> "machine"), "s" from any word of four letters or more ("taps")
    but not from "ss" ("glass")."""
    if word.endswith("ies") and len(word) >= 5:
        return word[:-3] + "y"
    for suffix in ("ing", "ers", "er", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    if re.search(r"(?:[sxz]|ch|sh)es$", word) and len(word) >= 5:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
        return word[:-1]
    return word


def _names_item(text: str, title: str) -> bool:
    """True when ``text`` names the item by the start of its title (brand and model)."""
    words = title.split()
    return len(words) >= 2 and " ".join(words[:2]).rstrip(",").casefold() in text.casefold()


class ExplanationWriter:
    """Writes each recommendation's explanation; with no LLM, renders the evidence. The
    sentences are written with the LLM's explanation adapter (:data:`EXPLAINER`) when it has
    one, which it has only where validation chose it (``recagent train-explainer``)."""

    def __init__(self, dataset: Dataset, llm: LLM | None, *, max_tokens: int = 64,
                 redraws: Redraws = NO_REDRAWS) -> None:
        self.dataset = dataset
        self.llm = llm
        self.max_tokens = max_tokens
        self.redraws = redraws
        self.adapter = EXPLAINER if llm is not None and EXPLAINER in llm.adapters else None

    @cached_property
    def brands(self) -> set[str]:
        return {i.brand for i in self.dataset.items.values() if i.brand and len(i.brand) >= 3}

    @cached_property
    def letter_ids(self) -> set[str]:
        """Item ids with a letter in them (numeric ids such as MovieLens' are plain numbers)."""
        return {i for i in self.dataset.items if any(c.isalpha() for c in i)}

    def write(self, evidence: ItemEvidence, *, other_titles: Iterable[str] = (),
              price_bounds: Iterable[float] = (), price_floor: float | None = None,
              price_ceiling: float | None = None) -> Explanation:
        """The checked LLM sentence for one item, or the evidence rendering."""
        return self.write_all([evidence], other_titles=other_titles, price_bounds=price_bounds,
                              price_floor=price_floor, price_ceiling=price_ceiling)[0]

    def write_all(
        self,
        evidences: Sequence[ItemEvidence],
        *,
        other_titles: Iterable[str] = (),
        price_bounds: Iterable[float] = (),
        price_floor: float | None = None,
        price_ceiling: float | None = None,
        on_prose: Callable[[int, str], None] | None = None,
        turn_started: float | None = None,
    ) -> list[Explanation]:
        """Each item's checked LLM sentence, or its evidence rendering; the sentences of all the
        items are written in one batched generation. With ``redraws`` (:class:`Redraws`), an
        item whose sentence failed the check gets sampled sentences until one passes or the
        redraw budget of the turn that began at ``turn_started`` (``time.monotonic()``) is
        spent; the first that passes is shown (``Explanation.draws`` counts the sentences it
        took).

        ``on_prose(index, text)`` gets an item's sentence as soon as one passes the check
        (the caller shows the returned explanation in its place when it differs: the greedy
        sentence, when it passes too, is preferred to a redraw that ended first); a sentence
        that fails is never shown. Raises
        :class:`~recagent.llm.base.LLMUnavailable` when the LLM fails; the caller degrades to
        evidence for the turn.
        """
        other_titles = list(other_titles)
        price_bounds = list(price_bounds)
        out = [Explanation(evidence_text(e), "evidence") for e in evidences]
        if self.llm is None:
            return out
        wanted = [n for n, e in enumerate(evidences) if self.wants_prose(e)]
        if not wanted:
            return out
        prompts = [self.prompt_for(evidences[n]) for n in wanted]
        # Every sentence opens with the product's name, given to the model: it cannot write
        # about another item instead, and spends no decode steps on the title.
        starts = [spoken_title(evidences[n].title) for n in wanted]
        check = {"other_titles": other_titles, "price_bounds": price_bounds,
                 "price_floor": price_floor, "price_ceiling": price_ceiling}
        verdicts: dict[tuple[int, str], Explanation | list[str]] = {}
        shown: set[int] = set()  # the items whose sentence went to on_prose

        def verdict(i: int, prose: str) -> Explanation | list[str]:
            """Sentence ``prose`` for item ``wanted[i]``, checked once (as it ends, and when read)."""
            if (i, prose) not in verdicts:
                verdicts[i, prose] = accepted = self._accepted(
                    cut_loop(prose, starts[i]), starts[i], evidences[wanted[i]], check)
                if on_prose is not None and isinstance(accepted, Explanation) and i not in shown:
                    shown.add(i)
                    on_prose(wanted[i], accepted.text)
            return verdicts[i, prose]

        drawn = self.llm.draw_batch(
            prompts, self.redraws.n, until=lambda i, prose: isinstance(verdict(i, prose), Explanation),
            max_tokens=self.max_tokens, stop=["\n"], starts=starts, adapter=self.adapter,
            deadline=self.redraws.deadline(turn_started))
        for i, (n, sentences) in enumerate(zip(wanted, drawn, strict=True)):
            for k, prose in enumerate(sentences, 1):
                accepted = verdict(i, prose)
                if isinstance(accepted, Explanation):
                    out[n] = replace(accepted, draws=k)
                    break
            else:
                out[n] = Explanation(out[n].text, "evidence", tuple(verdict(i, sentences[0])),
                                     draws=len(sentences))
        return out

    def _accepted(self, prose: str, start: str, evidence: ItemEvidence,
                  check: dict) -> Explanation | list[str]:
        """The LLM's sentence when it passes the check; else its longest leading part that
        passes (:func:`clause_cuts`), marked ``trimmed``; else the whole sentence's problems. A
        sentence cut off (at the token limit or the turn's deadline) is never shown whole."""
        problems = self.check(prose, evidence, **check)
        if not _ENDED.search(prose):
            problems.append("ends mid-sentence (cut off)")
        if not problems:
            return Explanation(prose, "llm")
        for cut in clause_cuts(prose, start):
            if not self.check(cut, evidence, **check):
                return Explanation(cut, "llm", trimmed=True)
        return problems

    def check(self, prose: str, evidence: ItemEvidence, *, other_titles: Iterable[str] = (),
              price_bounds: Iterable[float] = (), price_floor: float | None = None,
              price_ceiling: float | None = None) -> list[str]:
        """:func:`faithfulness_problems` with this catalog's brands and item ids."""
        return faithfulness_problems(
            prose, evidence, other_titles=other_titles, brands=self.brands,
            item_ids=self.letter_ids, price_bounds=price_bounds,
            price_floor=price_floor, price_ceiling=price_ceiling,
        )

    @staticmethod
    def wants_prose(evidence: ItemEvidence) -> bool:
        """Whether the LLM writes this item's sentence: it relates to the history or meets
        something the request asked for (else there is nothing true to say but the evidence)."""
        return bool(evidence.related or evidence.satisfies)

    @staticmethod
    def prompt_for(evidence: ItemEvidence) -> str:
        """The prose prompt: from the history items it relates to, or, for a shopper with no
        related history (a new user), from the request it meets and the item's price."""
        if evidence.related:
            return render("explain_prose", title=evidence.title, spoken=spoken_title(evidence.title),
                          related=[spoken_title(e.title) for e in evidence.related],
                          shared=evidence.shared,
                          satisfies=list(evidence.satisfies))
        price = f"${evidence.price:,.2f}" if evidence.price is not None else ""
        return render("explain_request", title=evidence.title, spoken=spoken_title(evidence.title),
                      price=price,
                      satisfies=list(evidence.satisfies))
