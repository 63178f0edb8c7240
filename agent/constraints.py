"""A rule-based parser for the constraints people state most often in a shopping chat.

"under $30", "between $20 and $50", "at least $100", "no Nikon", "only Sony", "no horror",
"in stock", "more like #2". Brands and categories are recognised only when the catalog has
them, so "no thanks" never becomes a brand filter. What is left of the message after the
constraints is the free-text ``query`` (for ``search_items``), unless it is only filler.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from recagent.agent.price_words import spell_prices
from recagent.catalog.errors import ToolError
from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.retrieval.title_words import title_word
from recagent.tools.filter_items import Constraints, FilterItems

if TYPE_CHECKING:
    from recagent.retrieval.encoder import TextEncoder

__all__ = ["AROUND", "PRICE_KINDS", "READER", "ConstraintParser", "combine", "constraint_schema",
           "parse_with_llm"]

# The name of the request-reading LoRA adapter (``recagent train-reader``) on an LLM that has it.
READER = "reader"

_MONEY = r"\$?\s*(\d+(?:[.,]\d+)?)\s*(?:\$|dollars?|usd|bucks)?"
# "my budget's $300", "a budget of 300", "my limit is 120": a budget or a limit with an amount
# is a ceiling ("my budget is about 200" is read as "about" first).
# "no less than 300", "not cheaper than 50" are floors (_MIN), not ceilings.
_MAX = re.compile(r"\b(?<!\bno )(?<!\bnot )(?:under|below|less than|cheaper than|less expensive than|at most|max(?:imum)?|up to|no more than|"
                  r"(?:budget|limit)(?:'s|\s+is|\s+of)?|<=?)\s*" + _MONEY, re.IGNORECASE)
# An amount marked as money ("$20", "20 bucks") followed by "max", "or less", "tops".
_MARKED = r"(?:\$\s*(\d+(?:[.,]\d+)?)|(\d+(?:[.,]\d+)?)\s*(?:\$|dollars?|usd|bucks))"
_MAX_AFTER = re.compile(_MARKED + r"\s*(?:or less|or under|or cheaper|max(?:imum)?|tops|at most|budget)\b",
                        re.IGNORECASE)
# "spending 15 tops", "150 at most": these words make a bare number a ceiling ("2 max" may be a
# count).
_MAX_AFTER_BARE = re.compile(r"\b(\d+(?:[.,]\d+)?)\s*(?:or less|or under|or cheaper|tops|at (?:the (?:very )?)?most)\b",
                             re.IGNORECASE)
# "a down sleeping bag, 150 to 250", "a laptop, 2000 max", "a tripod, 150 or more": bare
# numbers are a price where they open a clause of their own (after a comma, or "spend") and
# end it ("a tent, 2 to 3 people", "a set for ages 8 to 12" are not), in a catalog with prices.
_BARE_OPENS = r"(?:(?<=,)|(?<=;)|(?<=:)|\b(?:pay|paying|spend|spending|budget|costs?|costing)\b)\s*"
# "somewhere near 1000 dollars", "close to $40": a vague amount.
_AROUND_CUE = (r"\b(?:somewhere\s+)?(?:around|about|roughly|approximately|approx\.?|~|in the region of|give or take|"
               r"near|close to|"
               r"(?:in the )?ballpark(?: of| figure(?: of| is)?)?|something like)\s*")
_AROUND = re.compile(_AROUND_CUE + _MARKED, re.IGNORECASE)
# "maybe ten bucks": vague only when no bound is stated ("under $30, well maybe 40" is under 30).
_AROUND_WEAK = re.compile(r"\b(?:maybe|perhaps)\s*" + _MARKED, re.IGNORECASE)
# "five bucks or so", "$50-ish", "40ish dollars": the amount first, then the vagueness.
_AROUND_AFTER = re.compile(r"(?:" + _MARKED + r"\s*(?:or so|-?ish)\b|"
                           r"\b(\d+(?:[.,]\d+)?)-?ish\s*(?:dollars?|usd|bucks)?)", re.IGNORECASE)
# "in the $40 range", "in the 40 dollar range": a price band around the amount.
_AROUND_RANGE = re.compile(r"(?:\bin the\s*\$?\s*(\d+(?:[.,]\d+)?)|" + _MARKED +
                           r")\s*(?:dollars?|usd|bucks)?\s*(?:price\s+)?range\b", re.IGNORECASE)
# "my budget is about 200": an amount without a currency word is a price when nothing else
# follows it in its clause ("about 2 pairs of socks" is a count).
# "around 600, ...", "about 50 and ...", "around 600 would be fine": the amount ends its phrase.
_CLAUSE_END = (r"\s*(?:or so\b)?\s*(?=$|[,.;!?]|\band\b|\bbut\b|"
               r"\b(?:would|is|should|will|works?|sounds?|seems?)\s+(?:be\s+)?(?:fine|ok|okay|good|great|"
               r"perfect|ideal|enough|right|my budget|the budget|the limit)\b)")
_AROUND_BARE = re.compile(_AROUND_CUE + r"(\d+(?:[.,]\d+)?)" + _CLAUSE_END, re.IGNORECASE)
_RANGE_BARE = re.compile(_BARE_OPENS + r"(\d+(?:[.,]\d+)?)\s*(?:-|to)\s*(\d+(?:[.,]\d+)?)" + _CLAUSE_END,
                         re.IGNORECASE)
_MAX_BARE_OPEN = re.compile(_BARE_OPENS + r"(\d+(?:[.,]\d+)?)\s*max(?:imum)?" + _CLAUSE_END, re.IGNORECASE)
_MIN_BARE_OPEN = re.compile(_BARE_OPENS + r"(\d+(?:[.,]\d+)?)\s*(?:or (?:more|above|over|higher)|and up(?:wards)?|"
                            r"plus)" + _CLAUSE_END, re.IGNORECASE)
# "pricier than 30", "more expensive than $50" are floors; "nothing pricier than 30" (a negated
# floor, :data:`_NEGATED_MIN`) is a ceiling.
_MIN = re.compile(r"\b(?:over|above|more than|at least|min(?:imum)?|from|(?:no|not) (?:less|cheaper|lower) than|not (?:under|below)|"
                  r"(?:pricier|more expensive|dearer|costlier) than|"
                  r">=?)\s*" + _MONEY, re.IGNORECASE)
# "nothing over $80", "nothing that costs more than 100": a negated minimum is a maximum.
_NEGATED_MIN = re.compile(r"\b(?:nothing|not|never|no|none|anything but|"
                          r"nothing\s+(?:that\s+|which\s+)?(?:costs?|costing|priced|is|goes|going))\s*$",
                          re.IGNORECASE)
_PRICE_LEVEL_WORDS = {
    "cheap": re.compile(r"\b(?:cheap(?:er|est)?|inexpensive|affordable|budget(?:-friendly)?|bargain|"
                        r"low[- ](?:cost|priced)|reasonably priced|economical|(?:wallet|pocket)[- ]friendly|"
                        r"won'?t break the bank|doesn'?t break the bank|without breaking the bank|"
                        # "a nozzle that won't cost much", "shouldn't cost a lot"
                        r"(?:\w*n't|not)\s+cost\s+(?:much|a lot|a fortune)|"
                        # "that won't hurt my wallet"
                        r"(?:\w*n't|not)\s+hurt\s+(?:my|your|the|our)\s+wallet|"
                        # "easy on the wallet", "gentle on my budget"
                        r"(?:easy|easier|gentle|kind|light)\s+on\s+(?:my|your|the|our|a)\s+(?:wallet|budget|pocket|purse)|"
                        r"(?:good|great|best) deals?|"
                        # "on the cheap side", "something that costs next to nothing"
                        r"on the (?:cheap|cheaper|inexpensive|budget|thrifty|low|lower)(?:[- ]end)? side|"
                        r"next to nothing|"
                        # "just a few dollars", "a few bucks"
                        r"(?:just\s+|only\s+)?a few (?:dollars|bucks|quid)|"
                        # "doesn't have to be expensive", "don't need it to be fancy"
                        r"\w*n't\s+(?:have|need)\s+(?:it\s+)?to\s+be\s+(?:too\s+|very\s+|that\s+|so\s+)?"
                        r"(?:pricey|pricy|expensive|costly|fancy)|"
                        # "nothing pricey", "not too expensive", "doesn't have to be costly",
                        # "not the expensive ones"
                        r"(?:nothing|not|never|\w*n't(?:\s+\w+){0,2})\s+"
                        r"(?:too\s+|very\s+|that\s+|so\s+|overly\s+|the\s+(?:most\s+)?)?"
                        r"(?:pricey|pricy|expensive|costly|overpriced|fancy))\b", re.IGNORECASE),
    # "mid-priced", "mid-range please", "somewhere in the middle price-wise"
    "mid-range": re.compile(r"\b(?:mid[- ]?(?:range|priced|price|tier|level|market)|moderately[- ]priced|"
                            r"middle[- ]of[- ]the[- ](?:road|range)|(?:somewhere\s+)?in the middle\s+(?:price[- ]?wise|price range)|"
                            r"middle price(?: range| point)?)\b", re.IGNORECASE),
    "premium": re.compile(r"\b(?:premium|(?:high|top|upper)[- ]end|top[- ]of[- ]the[- ](?:line|range)|top[- ]notch|"
                          r"top[- ]shelf|top[- ]tier|luxury|luxurious|deluxe|upscale|high[- ]priced|"
                          r"fancy|priciest|most expensive|money(?:'s| is)? no object|money can buy|splurge|splurging|"
                          # "a backpack that's on the pricey side"
                          r"on the (?:pricey|pricy|pricier|expensive|costly|dear|dearer|spendy|high|higher)"
                          r"(?:[- ]end)? side|"
                          # "the best you've got"; "the best sleeping bag you've got" (the
                          # product's words stay in the query)
                          r"(?:the\s+)?best\s+(?:one\s+)?(?:you(?:'ve| have)\s+got|(?:you|they)\s+(?:have|sell|make)|there\s+is)|"
                          r"(?:the\s+)?best(?=\s+(?:[\w-]+\s+){1,3}(?:you(?:'ve| have)\s+got|(?:you|they)\s+(?:have|sell|make))\b)|"
                          r"money(?:'s| is) (?:not|no) (?:an )?(?:issue|object|problem)|"
                          r"money isn'?t an (?:issue|object|problem)|"
                          # "I'll pay for quality", "happy to pay extra"
                          r"pay(?:ing)?\s+(?:more\s+|extra\s+)?for\s+quality|quality over price|"
                          r"(?:happy|willing|ready|prepared)\s+to\s+(?:pay|spend)\s+(?:more|extra))\b",
                          re.IGNORECASE),
}
_BETWEEN = re.compile(r"\bbetween\s*" + _MONEY + r"\s*(?:and|-|to)\s*" + _MONEY, re.IGNORECASE)
_RANGE = re.compile(r"\$\s*(\d+(?:[.,]\d+)?)\s*(?:-|to)\s*\$?\s*(\d+(?:[.,]\d+)?)", re.IGNORECASE)
# "anything from 100 to 200" (only where items have prices: "from 1990 to 1995" are years),
# "30 to 60 dollars".
_FROM_TO = re.compile(r"\bfrom\s*" + _MONEY + r"\s*(?:-|to)\s*" + _MONEY, re.IGNORECASE)
# "30 to 60 dollars", "in the 1200 to 1500 range".
_RANGE_MARKED = re.compile(r"\b(\d+(?:[.,]\d+)?)\s*(?:-|to)\s*(\d+(?:[.,]\d+)?)\s*"
                           r"(?:dollars?|usd|bucks|(?:price\s+)?range)\b", re.IGNORECASE)
# "no" as a negation; "no-show socks", "a no-fuss tent" are kinds of product.
_NO = r"no(?!-\w)"
# "any brand but Memoro", "any make other than Kestrel": every brand but one is one excluded.
_ANY_BUT = r"any(?:thing|one|\s+(?:other\s+)?(?:brand|make|label|maker)s?)\s+(?:but|other than)"
_NEGATE = re.compile(r"\b(?:" + _NO + r"|not|without|except|avoid|exclude|excluding|"
                     r"(?:nothing|none)\s+(?:(?:made\s+)?(?:from|by)|about|with)|" + _ANY_BUT
                     + r"|hate)\s+(?:any\s+|more\s+)?([\w&'.\- ]+)", re.IGNORECASE)
_ONLY = re.compile(r"\b(?:only|just|from|by|made by)\s+([\w&'.\- ]+)", re.IGNORECASE)
_LIKE = re.compile(r"\b(?:more like|similar to|like|same as)\s*(?:#|number|no\.?|item)\s*(\d+)", re.IGNORECASE)
_STOCK = re.compile(r"\bin[- ]stock\b|\bavailable now\b", re.IGNORECASE)
# "I'd love a backpack", "we would like a tent": the wish, not what is searched for.
_WISH = re.compile(r"\b(?:i'd|i would|we'd|we would|would)\s+(?:love|like|prefer)\b", re.IGNORECASE)
_FILLER = {
    "a", "an", "the", "me", "i", "my", "some", "something", "anything", "please", "show",
    "recommend", "recommendations", "suggest", "want", "would", "like", "need", "looking",
    "for", "find", "give", "get", "any", "more", "other", "else", "items", "item", "stuff",
    "can", "you", "what", "should", "buy", "next", "and", "or", "with", "to", "is", "are",
    "it", "that", "this", "those", "these", "ones", "one", "of", "in", "on", "but", "also",
    "price", "priced", "cost", "costs", "costing", "brand", "thanks", "hi", "hello", "ok",
    "no", "yes", "now", "instead", "too", "very", "really", "good", "great", "nice", "new",
    "do", "does", "did", "we", "us", "our", "have", "has", "had", "got", "there", "here",
    "how", "which", "maybe", "perhaps", "just", "about", "around", "i'm", "i'd", "i'll", "i've",
    "be", "fine", "okay", "nor", "nothing", "not", "isn't", "aren't", "that's", "preferably", "ideally",
    "it's",
}


# Between two names of a list ("Sonara, Auralis or Quietude"), and what may end one.
_LIST_SEPARATOR = re.compile(r"\s*,\s*(?:(?:or|nor)\s+)?|\s+(?:or|nor|and)\s+", re.IGNORECASE)
_LIST_END = re.compile(r"\s*,\s*(?:or|nor)\s+|\s+(?:or|nor|and)\s+", re.IGNORECASE)
# The same separators, ending the text before a name ("Zentrix and |Beatline are out").
_SEPARATOR_BEFORE = re.compile(r"(?:\s*,\s*(?:(?:or|nor|and)\s+)?|\s+(?:or|nor|and)\s+)$", re.IGNORECASE)
# "a tripod for my camera", "a memory card for my new action camera": what the product is
# for (up to two words may describe it after "my", "the" ...; no "and", "or" between); not
# the "for" of a wish ("in the mood for a good mystery", "looking for a cheap camera").
_FOR_BEFORE = re.compile(r"(?<!mood )(?<!looking )(?<!searching )(?<!shopping )(?<!hoping )(?<!market )"
                         r"\bfor\s+(?:(?:my|the|a|an|our|your|his|her|their)\s+"
                         r"(?:(?!(?:and|or|but|not|nor)\b)[\w'-]+\s+){0,2})?$", re.IGNORECASE)
_COLLECTIVE = frozenset({"set", "kit", "pack", "bundle", "combo", "collection", "assortment", "lot"})
_NEAR_CHARS = 32  # "sleeve to protect my laptop": a category's two words this close name it


_NOT_A_VERB = frozenset({"the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "me", "us", "them"})


def _name_in(text: str, name: str) -> re.Match[str] | None:
    """Where ``name`` first stands in ``text`` as whole words, in any case."""
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)


def _purpose_starts(words: list[str], n: int) -> bool:
    """Whether ``words[n]`` opens what the product is for: "for", or "to" before a verb ("to
    seal a door"; not "2 to 3", "up to", "measures to the gram")."""
    word = words[n].casefold()
    if word == "for":
        return n > 0
    if word != "to" or n == 0 or n + 1 >= len(words):
        return False
    before, after = words[n - 1].casefold(), words[n + 1].casefold()
    return not (before[:1].isdigit() or before == "up" or after[:1].isdigit() or after in _NOT_A_VERB)


# Plurals that no "s" or "es" makes: "a computer mouse" names Computer Mice.
_IRREGULAR_PLURALS = {"mice": "mouse", "geese": "goose", "teeth": "tooth", "feet": "foot",
                      "children": "child", "knives": "knife", "leaves": "leaf", "shelves": "shelf",
                      "people": "person", "men": "man", "women": "woman"}


def _forms(name: str) -> str:
    """A regex for ``name`` in the singular or the plural ("tents?", "watch(?:es)?",
    "computer (?:mice|mouse)")."""
    forms = [re.escape(title_word(name)) + "(?:s|es)?"]
    *head, last = name.split(" ")
    for plural, single in _IRREGULAR_PLURALS.items():
        if last.casefold() in (plural, single):
            other = single if last.casefold() == plural else plural
            forms.append(re.escape(" ".join([*head, other])))
    return "(?:" + "|".join(forms) + ")"


def _money(text: str) -> float:
    return float(text.replace(",", "."))


def _around(amount: float) -> tuple[float, float]:
    """The (min, max) price band of "about ``amount``"."""
    return round(amount * (1 - AROUND), 2), round(amount * (1 + AROUND), 2)


@dataclass
class ConstraintParser:
    dataset: Dataset
    # The text encoder of the search tool: with it, the LLM's reading of a request may name a
    # category by meaning ("a scary movie" -> Horror; see category_by_meaning).
    encoder: TextEncoder | None = None

    @cached_property
    def brands(self) -> dict[str, str]:
        """Lower-cased brand -> the catalog's spelling. A brand with a company suffix after a
        comma ("Apera Instruments, LLC") is also known by the part before it, which is how
        people say it (and where the negation and "only" patterns stop)."""
        names = {i.brand for i in self.dataset.items.values() if i.brand}
        known = {b.casefold(): b for b in names}
        for b in sorted(names):
            short = b.split(",")[0].strip().casefold()
            if "," in b and len(short) >= 3:
                known.setdefault(short, b)
        return known

    @cached_property
    def _titles(self) -> tuple[list[tuple[str, str | None]], dict[str, set[int]]]:
        """The items' lower-cased titles with their brands, and word -> the rows whose title
        holds it."""
        titles = [(i.title.casefold(), i.brand) for i in self.dataset.items.values()]
        postings: dict[str, set[int]] = {}
        for n, (title, _) in enumerate(titles):
            for word in set(re.findall(r"\w+", title)):
                postings.setdefault(word, set()).add(n)
        return titles, postings

    def _brands_titled(self, name: str) -> list[str | None]:
        """The brand of each item whose title holds ``name`` (lower-cased) as whole words."""
        titles, postings = self._titles
        words = re.findall(r"\w+", name)
        rows = set.intersection(*(postings.get(w, set()) for w in words)) if words else set()
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        return [titles[n][1] for n in rows if pattern.search(titles[n][0])]

    @cached_property
    def plain_brands(self) -> dict[str, str]:
        """The brands a message may name plainly, without "from" or "by": those whose name,
        where it occurs in titles, mostly titles the brand's own items. "3D" or "Super Glue"
        (Amazon brands) mostly describe other brands' products, and so do all the words of
        "Small Parts": such a brand is wanted only when the message says "from Small Parts"."""
        titles, postings = self._titles
        plain = {}
        for key, brand in self.brands.items():
            words = re.findall(r"\w+", key)
            if not words:
                continue
            containing = self._brands_titled(key)
            own = containing.count(brand)

            # "small" and "parts" each title many brands' items: a brand needs one word that
            # mostly titles its own items (or none at all).
            distinctive = any(
                not postings.get(w) or
                sum(titles[n][1] == brand for n in postings[w]) >= len(postings[w]) / 2
                for w in words)
            if (not containing or own >= len(containing) / 2) and distinctive:
                plain[key] = brand
        return plain

    @cached_property
    def brand_families(self) -> dict[str, tuple[str, ...]]:
        """Lower-cased name -> the brands it names, for names people say of a company the
        catalog spells in several ways: a brand whose own name mostly titles its longer
        namesakes' items ("Arrow": Arrow and ARROW FASTENER; "Rubbermaid": Rubbermaid and
        Rubbermaid Commercial Products), and a product line's name after its maker's
        ("Littmann": 3M Littmann; "Sonicare": Philips Sonicare). Only where the titles that
        use the name mostly title those brands' items: not "hardware" (National Hardware)."""

        def titled_mostly_by(name: str, family: set[str]) -> bool:
            brands = self._brands_titled(name)
            return bool(brands) and sum(b in family for b in brands) >= len(brands) / 2

        families: dict[str, tuple[str, ...]] = {}
        for key, brand in self.brands.items():
            longer = {b for k, b in self.brands.items() if k.startswith(key + " ")}
            if longer and key not in self.plain_brands and titled_mostly_by(key, longer | {brand}):
                families[key] = (brand, *sorted(longer))
        lines: dict[str, set[str]] = {}
        for key, brand in self.brands.items():
            *maker, line = key.split()
            if maker and " ".join(maker) in self.brands and len(line) >= 4 and line.isalpha() \
                    and line not in self.brands and line not in _FILLER:
                lines.setdefault(line, set()).add(brand)
        for line, brands in lines.items():
            if titled_mostly_by(line, brands):
                families[line] = tuple(sorted(brands))
        return families

    def with_families(self, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """``names`` with each family's brands in its name's place ("Arrow" names ARROW
        FASTENER too, "Littmann" names 3M Littmann)."""
        families = self.brand_families
        return tuple(dict.fromkeys(b for name in names for b in families.get(name.casefold(), (name,))))

    @cached_property
    def _said_brands(self) -> dict[str, str]:
        """:attr:`brands` and the names of :attr:`brand_families` (each for itself)."""
        return {**{k: k for k in self.brand_families}, **self.brands}

    @cached_property
    def _plainly_said(self) -> dict[str, str]:
        """What a message may name plainly: :attr:`plain_brands` and the families' names."""
        return {**self.plain_brands, **{k: self._said_brands[k] for k in self.brand_families}}

    @cached_property
    def has_prices(self) -> bool:
        """Whether any catalog item has a price (MovieLens and the Amazon sets have none)."""
        return any(i.price is not None for i in self.dataset.items.values())

    @cached_property
    def categories(self) -> dict[str, str]:
        """Lower-cased category name (any level) -> the catalog's spelling."""
        names = {c for i in self.dataset.items.values() for c in i.categories}
        return {c.casefold(): c for c in names if len(c) >= 3}

    @cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        """Lower-cased category name -> the lower-cased names above it in some catalog path
        ("horror" -> {"movies"})."""
        above: dict[str, set[str]] = {}
        for item in self.dataset.items.values():
            for n, name in enumerate(item.category):
                above.setdefault(name.casefold(), set()).update(c.casefold() for c in item.category[:n])
        return {name: frozenset(names) for name, names in above.items()}

    @cached_property
    def parents(self) -> frozenset[str]:
        """Lower-cased names of the categories that have another below them ("movies")."""
        return frozenset().union(*self.ancestors.values())

    def within(self, category: str, other: str) -> bool:
        """Whether ``category`` is ``other`` or lies under it in the catalog's paths."""
        c, o = category.casefold(), other.casefold()
        return c == o or o in self.ancestors.get(c, ())

    @cached_property
    def _leaf_vectors(self) -> tuple[list[str], np.ndarray] | None:
        """The leaf categories shown to an LLM and their embedded paths ("Movies > Horror")."""
        if self.encoder is None or not self.llm_categories:
            return None
        paths = {i.category[-1]: " > ".join(i.category) for i in self.dataset.items.values() if i.category}
        leaves = self.llm_categories
        return leaves, self.encoder.encode([paths[c] for c in leaves], cache=True)

    def nearest_leaves(self, message: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` leaf categories whose paths are nearest in meaning to ``message`` (cosine
        of the search encoder's embeddings), nearest first; none without an encoder or in a
        catalog with too many categories for an LLM's prompt (Amazon's paths)."""
        table = self._leaf_vectors
        if table is None or not message.strip():
            return []
        leaves, vectors = table
        sims = vectors @ self.encoder.encode([message], cache=True)[0]
        return [(leaves[i], float(sims[i])) for i in np.argsort(-sims)[:k]]

    def category_by_meaning(self, message: str) -> str | None:
        """The leaf category nearest in meaning to ``message`` when it is near enough
        (:data:`MEANING_MIN`), else None (see :meth:`nearest_leaves`)."""
        nearest = self.nearest_leaves(message, 1)
        return nearest[0][0] if nearest and nearest[0][1] >= MEANING_MIN else None

    @cached_property
    def _title_words(self) -> dict[str, str]:
        """Singular word -> leaf, for the words that (nearly) only one leaf's item titles use
        before any "with" or "for", in enough of them: the catalog's own names for its products
        ("machine": Coffee Makers, "backpack": Camera Bags, "roast": Coffee Beans). Not brand
        names' words (a brand is a brand), nor the categories' own words (the rules read those),
        nor filler; only in a catalog with few enough categories to name (not Amazon's long
        paths)."""
        if not self.llm_categories:
            return {}
        counts: dict[str, dict[str, int]] = {}
        for item in self.dataset.items.values():
            if not item.category:
                continue
            # "... Tripod with Fluid Head", "... Board Game for 3-6 Players": what comes with
            # the product, or whom it is for, names no product.
            named = re.split(r"\s(?:with|for)\s", item.title.casefold())[0]
            for word in {title_word(w) for w in re.findall(r"[a-z]{3,}", named)}:
                leaves = counts.setdefault(word, {})
                leaves[item.category[-1]] = leaves.get(item.category[-1], 0) + 1
        reserved = {title_word(w) for name in [*self.brands, *self.categories]
                    for w in re.findall(r"[a-z]{3,}", name)} | _FILLER
        words = {}
        for word, leaves in counts.items():
            leaf, n = max(leaves.items(), key=lambda kv: kv[1])
            if word not in reserved and n >= _TITLE_WORD_MIN_ITEMS and \
                    n >= _TITLE_WORD_SHARE * sum(leaves.values()):
                words[word] = leaf
        return words

    @cached_property
    def _leaf_brands(self) -> dict[str, frozenset[str]]:
        """Leaf category -> the brands of its items."""
        brands: dict[str, set[str]] = {}
        for item in self.dataset.items.values():
            if item.category and item.brand:
                brands.setdefault(item.category[-1], set()).add(item.brand)
        return {leaf: frozenset(names) for leaf, names in brands.items()}

    def named_by_titles(self, text: str, spans: list[tuple[int, int]] = (),
                        brands: list[str] = ()) -> dict[str, tuple[int, int]]:
        """Leaf -> where a word of ``text`` (outside ``spans``) names it by the catalog's titles
        (:attr:`_title_words`), kept only where the leaf sells one of the ``brands`` asked for
        (if any: "a torch I can strap to my head, Beamridge or Lumora" is no tripod, for all
        the tripods' "ball head") and is among the few nearest ``text`` in meaning: "kit"
        titles only cameras here ("with 18-55mm Kit Lens"), but "a castle building kit" is
        nowhere near a camera."""
        named: dict[str, tuple[int, int]] = {}
        for m in re.finditer(r"[A-Za-z]{3,}", text):
            leaf = self._title_words.get(title_word(m.group(0).casefold()))
            if leaf and leaf not in named and not any(s <= m.start() < e for s, e in spans) and \
                    (not brands or any(b in self._leaf_brands.get(leaf, ()) for b in brands)):
                named[leaf] = m.span()
        if named:
            near = {leaf for leaf, _ in self.nearest_leaves(text, _TITLE_WORD_SHORT_LIST)}
            named = {leaf: at for leaf, at in named.items() if leaf in near}
        return named

    @cached_property
    def llm_categories(self) -> list[str]:
        """The category names shown to an LLM (so it names products the way the catalog does):
        the last level of every path and the categories items are also in, sorted; none
        when there are too many for a prompt."""
        leaves = sorted({c for i in self.dataset.items.values() for c in i.kinds})
        return leaves if len(leaves) <= _MAX_LLM_CATEGORIES else []

    @cached_property
    def _prices(self) -> dict[str, list[float]]:
        """Sorted prices per lower-cased category name (any level), and "" for all items."""
        prices: dict[str, list[float]] = {"": []}
        for item in self.dataset.items.values():
            if item.price is None:
                continue
            prices[""].append(item.price)
            for c in item.categories:
                prices.setdefault(c.casefold(), []).append(item.price)
        return {k: sorted(v) for k, v in prices.items()}

    def price_quantile(self, q: float, categories: tuple[str, ...] = ()) -> float | None:
        """The ``q`` quantile of the prices of the items in ``categories`` (all items when
        none is given or none has prices)."""
        values = sorted(p for c in categories for p in self._prices.get(c.casefold(), []))
        values = values or self._prices[""]
        if not values:
            return None
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    def price_bounds(self, price: object, message: str,
                     categories: tuple[str, ...] = ()) -> tuple[float | None, float | None]:
        """(min, max) from an LLM's ``{"kind", "amount", "amount2"}``; amounts must be
        numbers written in ``message``, else the bound is dropped."""
        if not self.has_prices or not isinstance(price, dict):
            return None, None
        kind = price.get("kind")
        if kind in _LEVELS:
            low_q, high_q = _LEVELS[kind]
            return (None if low_q is None else self.price_quantile(low_q, categories),
                    None if high_q is None else self.price_quantile(high_q, categories))
        written = {_money(n) for n in _NUMBER.findall(spell_prices(message))}

        def amount(key: str) -> float | None:
            value = price.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value) if any(abs(value - n) < 0.005 for n in written) else None

        first, second = amount("amount"), amount("amount2")
        if first is None:
            return None, None
        if kind == "under":
            return None, first
        if kind == "over":
            return first, None
        if kind == "around":
            return _around(first)
        if kind == "between" and second is not None:
            return min(first, second), max(first, second)
        return None, None

    def price_reference(self, categories: tuple[str, ...], brands: tuple[str, ...]) -> tuple[str, ...]:
        """What a price level is relative to: the wanted ``categories``, or where none is
        known, the leaves that sell the ``brands`` asked for ("a leather journal, Scriptura,
        on the pricier side": Scriptura's notebooks, not the whole shop)."""
        if categories or not brands:
            return tuple(categories)
        return tuple(sorted(leaf for leaf, sold in self._leaf_brands.items() if any(b in sold for b in brands)))

    def level_of(self, low: float | None, high: float | None, categories: tuple[str, ...]) -> str | None:
        """The price level ("cheap", "mid-range", "premium") whose bounds over ``categories``
        are exactly (``low``, ``high``): bounds read from a price word, not an amount."""
        if (low, high) == (None, None):
            return None
        return next((level for level in _LEVELS
                     if self.price_bounds({"kind": level}, "", categories) == (low, high)), None)

    def mentioned(self, message: str, names: dict[str, str]) -> list[str]:
        """The catalog spellings of the ``names`` that ``message`` contains as words (a plural
        "s" allowed), longest first."""
        text = message.casefold()
        found = []
        for key, name in names.items():
            if re.search(rf"(?<!\w){_forms(key)}(?!\w)", text):
                found.append(name)
        return sorted(dict.fromkeys(found), key=lambda n: (-len(n), n))

    def known(self, phrase: str, names: dict[str, str]) -> str | None:
        """The longest known name that ``phrase`` starts with (word boundary), if any."""
        phrase = phrase.casefold().strip()
        best = None
        for key, name in names.items():
            if not phrase.startswith(key):
                continue
            at_boundary = len(phrase) == len(key) or not phrase[len(key)].isalnum()
            if at_boundary and (best is None or len(key) > len(best[0])):
                best = (key, name)
        if best is None and phrase.endswith("s"):  # "no cameras" -> category "Camera"
            return self.known(phrase[:-1], names) if len(phrase) > 3 else None
        return best[1] if best else None

    @cached_property
    def _leaf_heads(self) -> dict[str, str]:
        """Head noun -> leaf, for the head nouns that end exactly one leaf's name of two or
        more words ("grinders" -> Coffee Grinders; not "bags": Camera Bags, Sleeping Bags)."""
        heads: dict[str, list[str]] = {}
        for lower, name in self.categories.items():
            if lower not in self.parents and " " in lower:
                heads.setdefault(lower.rsplit(" ", 1)[1], []).append(name)
        return {head: names[0] for head, names in heads.items() if len(names) == 1}

    @cached_property
    def _leaf_words(self) -> dict[str, str]:
        """Word -> leaf, for the words of exactly one category's name where that category is a
        leaf of two or more words ("dslr": DSLR Cameras, "sleeping": Sleeping Bags; not
        "camera": Camera Bags, DSLR Cameras and Cameras). Filler words name nothing."""
        names: dict[str, set[str]] = {}
        for lower, name in self.categories.items():
            for word in re.findall(r"[a-z0-9]{3,}", lower):
                names.setdefault(title_word(word), set()).add(name)
        return {word: next(iter(found)) for word, found in names.items()
                if len(found) == 1 and word not in _FILLER
                and (leaf := next(iter(found)).casefold()) not in self.parents and " " in leaf}

    @cached_property
    def _name_words(self) -> frozenset[str]:
        """Every word of every category's name, singular ("bag", "camera", "running")."""
        return frozenset(title_word(w) for lower in self.categories for w in re.findall(r"[a-z0-9]+", lower))

    def has_items(self, constraints: Constraints) -> bool:
        """Whether some item of the catalog meets ``constraints``."""
        return any(FilterItems.violation(i, constraints) is None for i in self.dataset.items.values())

    def _listed_after(self, text: str, brands: list[str]) -> list[str]:
        """The brands listed right after one of ``brands`` in ``text`` ("Sonara, Auralis or
        Quietude", "Pacer nor Velocita", "Optivo and Vantara"), where the list ends in "or",
        "nor" or an "and" with no comma before it: "not Pacer, Velocita is great" lists
        nothing."""
        listed: list[str] = []
        for brand in brands:
            at = _name_in(text, brand)
            chain: list[tuple[str, str]] = []
            end = at.end() if at else None
            while end is not None:
                sep = _LIST_SEPARATOR.match(text, end)
                follower = self.known(text[sep.end():], self._said_brands) if sep else None
                if follower is None:
                    break
                chain.append((sep.group(0), follower))
                end = sep.end() + len(follower)
            while chain and not _LIST_END.fullmatch(chain[-1][0]):
                chain.pop()
            listed += [name for _, name in chain]
        return listed

    def _listed_before(self, text: str, brand: str) -> list[str]:
        """The brands listed right before ``brand`` in ``text`` ("Zentrix and Beatline are
        out", "Pacer, Velocita or Stridelite is excluded"), where the separator right before
        ``brand`` is "or", "nor" or "and": "Velocita is great, Pacer is out" lists nothing."""
        at = _name_in(text, brand)
        chain: list[tuple[str, str]] = []
        end = at.start() if at else None
        while end is not None and (sep := _SEPARATOR_BEFORE.search(text[:end])):
            words = text[:sep.start()].split()
            leader = next((name for k in range(min(len(words), 5), 0, -1)
                           if (name := self._said_brands.get(" ".join(words[-k:]).casefold()))), None)
            if leader is None:
                break
            chain.append((sep.group(0), leader))
            end = sep.start() - len(leader)
        return [name for _, name in chain] if chain and _LIST_END.fullmatch(chain[0][0]) else []

    @staticmethod
    def _word_at(text: str, word: str, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
        """Where ``word`` (or its plural) first occurs in ``text`` outside ``spans``."""
        for m in re.finditer(rf"\b{_forms(word)}\b", text, re.IGNORECASE):
            if not any(s <= m.start() < e for s, e in spans):
                return m.span()
        return None

    def parse(self, message: str, *, last_shown: list[str] | None = None) -> Constraints:
        spans: list[tuple[int, int]] = []
        found: dict[str, object] = {}

        def take(match: re.Match) -> None:
            spans.append(match.span())

        text = spell_prices(message)  # "under a hundred" -> "under 100"
        if m := (_BETWEEN.search(text) or _RANGE.search(text) or _RANGE_MARKED.search(text)
                 or (self.has_prices and (_FROM_TO.search(text) or _RANGE_BARE.search(text)))):
            low, high = sorted((_money(m.group(1)), _money(m.group(2))))
            found.update(min_price=low, max_price=high)
            take(m)
        elif m := (_AROUND.search(text) or _AROUND_BARE.search(text) or _AROUND_AFTER.search(text)
                   or _AROUND_RANGE.search(text)):
            found["min_price"], found["max_price"] = _around(_money(next(g for g in m.groups() if g)))
            take(m)
        else:
            if m := _MAX.search(text):
                found["max_price"] = _money(m.group(1))
                take(m)
            elif m := _MAX_AFTER.search(text):
                found["max_price"] = _money(m.group(1) or m.group(2))
                take(m)
            elif m := _MAX_AFTER_BARE.search(text) or (self.has_prices and _MAX_BARE_OPEN.search(text)):
                found["max_price"] = _money(m.group(1))
                take(m)
            elif self.has_prices and (m := _MIN_BARE_OPEN.search(text)):
                found["min_price"] = _money(m.group(1))
                take(m)
            # "from $50" is a price, "from 1995" is not: "from" needs the dollar sign.
            m = _MIN.search(text)
            if m and ("$" in m.group(0) or not m.group(0).casefold().startswith("from")):
                # "nothing over $80", "I don't want to go over 100", "shouldn't cost more
                # than 20": a negated minimum is a maximum ("I don't mind paying over 100"
                # is not negated).
                clause = _clause_before(text, m.start())
                if _NEGATED_MIN.search(clause) or (
                        _negation_before(text, m.start()) and not re.search(r"\bmind\b", clause, re.IGNORECASE)):
                    found.setdefault("max_price", _money(m.group(1)))
                else:
                    found["min_price"] = _money(m.group(1))
                take(m)
            if "min_price" not in found and "max_price" not in found and (m := _AROUND_WEAK.search(text)):
                found["min_price"], found["max_price"] = _around(_money(m.group(1) or m.group(2)))
                take(m)
        exclude_brands, exclude_categories, brands, categories = [], [], [], []
        for m in _NEGATE.finditer(text):
            if brand := self.known(m.group(1), self._said_brands):
                exclude_brands.append(brand)
                spans.append((m.start(), m.start(1) + len(brand)))
            elif category := self.known(m.group(1), self.categories):
                exclude_categories.append(category)
                spans.append((m.start(), m.start(1) + len(category)))
        for m in _ONLY.finditer(text):
            if brand := self.known(m.group(1), self._said_brands):
                # "not from Optivo", "isn't from Herbale", "let down by Kestrel": a negated
                # "from" or "by" excludes.
                negated = _negated_at(text, m.start(1), m.start(1) + len(brand))
                (exclude_brands if negated else brands).append(brand)
                spans.append((m.start(), m.start(1) + len(brand)))
        # A brand named plainly ("Botanica shampoo", "a Kestrel or Nordlicht tripod") is
        # wanted, unless a negation reaches it.
        # So is a family's name (:attr:`brand_families`) written as a name, capitalised and
        # not first: "staples for my Arrow staple gun", not "a vise for my workshop".
        for brand in self.mentioned(text, self._plainly_said):
            at = re.search(rf"(?<!\w){re.escape(brand)}", text, re.IGNORECASE)
            if brand in brands or brand in exclude_brands or at is None or \
                    any(s <= at.start() < e for s, e in spans):
                continue
            if brand.casefold() not in self.plain_brands and \
                    (at.start() == 0 or not text[at.start()].isupper()):
                continue
            if _negated_at(text, *at.span()):
                exclude_brands.append(brand)
                # "I'm over Stridelite", "Aquaflow isn't an option": the words that rule the
                # brand out are no more what is searched for than the brand is.
                spans.append(_said_against(text, *at.span()))
            else:
                brands.append(brand)
                spans.append(at.span())
        # "a budget laptop, Lumen or Aperion": a brand listed with one that is wanted is
        # wanted too, though its name alone may describe other products ("800 Lumen").
        for brand in [*self._listed_after(text, brands), *(b for w in brands for b in self._listed_before(text, w))]:
            if brand not in brands and brand not in exclude_brands and (at := _name_in(text, brand)) \
                    and not any(s <= at.start() < e for s, e in spans) and not _negated_at(text, *at.span()):
                brands.append(brand)
                spans.append(at.span())
        # "not from Sonara, Auralis or Quietude": the brands listed after one that is ruled
        # out are ruled out with it; "Zentrix and Beatline are out": so are those listed
        # before one ruled out by what follows it.
        after = [b for b in exclude_brands
                 if (at := _name_in(text, b)) and _NEGATION_AFTER.search(text[at.end():])]
        for brand in self._listed_after(text, exclude_brands) + \
                [b for negated in after for b in self._listed_before(text, negated)]:
            if brand in brands:
                brands.remove(brand)
            if brand not in exclude_brands:
                exclude_brands.append(brand)
        brands = [b for b in brands if b not in exclude_brands]
        brands, exclude_brands = list(self.with_families(brands)), list(self.with_families(exclude_brands))
        if m := _LIKE.search(text):
            number = int(m.group(1))
            shown = last_shown or []
            if 1 <= number <= len(shown):
                found["like_item"] = shown[number - 1]
            take(m)
        if m := _STOCK.search(text):
            found["in_stock_only"] = True
            take(m)
        for m in _WISH.finditer(text):
            take(m)
        found_at: dict[str, tuple[int, int]] = {}
        for lower, name in self.categories.items():
            m = re.search(rf"\b{_forms(lower)}\b", text, re.IGNORECASE)
            if m and not any(s <= m.start() < e for s, e in spans):
                found_at[name] = m.span()
        # "a sleeve for my laptop", "socks for running": a two-word name said the other way
        # round (its noun first, then what it is for), the words close together, names it
        # too; inside its span, "laptop" is not Laptops. "a camera, and a bag" does not.
        for lower, name in self.categories.items():
            words = lower.split()
            if name in found_at or len(words) != 2:
                continue
            first, noun = (self._word_at(text, w, spans) for w in words)
            if first and noun and noun[1] <= first[0] and first[1] - noun[0] <= _NEAR_CHARS \
                    and not re.search(r",|\band\b|\bor\b", text[noun[1]:first[0]]):
                found_at[name] = (noun[0], first[1])
        # "dog toys" names Dog Toys and, inside it, Dogs; "running shoes" names Running
        # Shoes and Running: a name found inside a longer one's words is not meant.
        categories = [c for c, (s0, e0) in found_at.items()
                      if not any(o != c and s1 <= s0 and e0 <= e1 and (e1 - s1) > (e0 - s0)
                                 for o, (s1, e1) in found_at.items())]
        # "beans for my coffee maker" names Coffee Beans (beans ... coffee, said the other way
        # round) and Coffee Makers (coffee maker), sharing "coffee": the one said first is what
        # is wanted, the other what it is for ("a grinder for coffee beans": Coffee Grinders).
        categories = [c for c in categories
                      if not any(o != c and found_at[o][0] < found_at[c][0] < found_at[o][1]
                                 for o in categories)]
        # "a war movie" names War and, above it, Movies: the narrower one is meant.
        categories = [c for c in categories
                      if not any(o != c and self.within(o, c) for o in categories)]
        # "a running watch", "a GPS watch for running": "Running" names a group that holds
        # no watches; the head noun names the leaf (Sports Watches) when exactly one leaf
        # ends with it ("a nozzle for watering": Hose Nozzles, in the group; "a bag for
        # camping" keeps Camping: two leaves end with "bags").
        # The two words must be close, with no "and", "or" or comma between ("cameras and
        # dog food" names both).
        # The group's own word is no head noun of another name when a word naming another
        # product follows it ("a camera sling": Camera Bags' titles say "sling"; read below).
        for c in [c for c in categories if c.casefold() in self.parents]:
            g0, g1 = found_at[c]
            after = re.match(r"[\s-]+([A-Za-z]{3,})", text[g1:])
            own = [(g0, g1)] if after and title_word(after.group(1).casefold()) in self._title_words else []
            heads = {name: at for lower, name in self.categories.items()
                     if lower not in self.parents and " " in lower
                     and (at := self._word_at(text, lower.rsplit(" ", 1)[1], [*spans, *own]))}
            if len(heads) != 1:
                continue
            leaf, (h0, h1) = next(iter(heads.items()))
            between = text[min(g1, h1):max(g0, h0)]
            if leaf not in categories \
                    and max(g1, h1) - min(g0, h0) <= _NEAR_CHARS \
                    and not re.search(r",|\band\b|\bor\b", between):
                categories[categories.index(c)] = leaf
                found_at[leaf] = found_at[c]
        # "a lightweight tripod for travel": a group said after "for" is what the product is
        # for when a leaf outside the group names the product (Tripods, not Travel Guides).
        # "a travel tripod": a group said right before a leaf's name is what kind of product
        # it is, not a second wish.
        categories = [c for c in categories
                      if not (c.casefold() in self.parents
                              and any(o.casefold() not in self.parents and not self.within(o, c)
                                      and (_FOR_BEFORE.search(text[:found_at[c][0]])
                                           or _modifies(text, found_at[c], found_at[o]))
                                      for o in categories))]
        # "a tripod for my camera", "a headlamp for my tent": a leaf said right after "for" is
        # what the product is for when another category is named before the "for" ...
        for c in [c for c in categories if c.casefold() not in self.parents]:
            m = _FOR_BEFORE.search(text[:found_at[c][0]])
            if m and len(categories) > 1 and any(found_at[o][1] <= m.start() for o in categories if o != c):
                categories.remove(c)
        # ... or, in "a spray nozzle with several patterns for the garden hose", when a head
        # noun (or a title word, see below) said before the "for" names exactly one other leaf
        # (Hose Nozzles, not Garden Hoses); same catalogs as below.
        if len(categories) == 1 and self.llm_categories and \
                categories[0].casefold() not in self.parents and \
                (m := _FOR_BEFORE.search(text[:found_at[categories[0]][0]])):
            said = {leaf: at for head, leaf in self._leaf_heads.items()
                    if leaf != categories[0] and (at := self._word_at(text[:m.start()], head, spans))}
            # ... or a word only one other leaf's titles use ("a backpack for my camera gear")
            for leaf, at in self.named_by_titles(text[:m.start()], spans, brands).items():
                if leaf != categories[0]:
                    said.setdefault(leaf, at)
            if len(said) == 1:
                leaf, at = next(iter(said.items()))
                categories = [leaf]
                found_at[leaf] = at
            # ... and none, in "batteries for my headlamp" or "a bag for my tent", where the
            # words before the "for" name a product no category names: what it is for is not
            # what is wanted ("something for my tent", "a cheap one for my tent" stay Tents).
            elif not said and not _negated_at(text, *found_at[categories[0]]) and \
                    _names_something(text[:m.start()], spans):
                categories = []
        # "a burr grinder", "a watch for my runs": when no category is named, a head noun that
        # ends exactly one leaf's name of two or more words (Coffee Grinders, Sports Watches)
        # names that leaf, and (when no such noun names the product, before any "for") so does
        # a word only that leaf's titles use ("a capsule coffee machine": Coffee Makers); only
        # in a catalog with few enough categories to name (not Amazon's long paths), and not
        # when two leaves are named so ("a card game"), except that one said right after "for"
        # is what the product is for ("a backpack for my camera gear": Camera Bags, not DSLR
        # Cameras).
        # Named groups alone ("a DSLR for travel photos": Travel; "a camera sling": Cameras)
        # leave this open too: a leaf found so replaces a group it lies in ("kibble for my
        # dog": Dog Food, not Dogs; "she started running, she needs shoes") and joins the
        # others ("running stuff, and a watch"), but a group said after "for" or right before
        # the leaf's word ("camera sling") is no wish of its own.
        groups = [c for c in categories if c.casefold() in self.parents]
        if len(groups) == len(categories) and self.llm_categories:
            said = {leaf: at for head, leaf in self._leaf_heads.items()
                    if (at := self._word_at(text, head, spans))}
            # "a DSLR": a word of exactly one category's name, and that a leaf's.
            for word, leaf in self._leaf_words.items():
                if leaf not in said and (at := self._word_at(text, word, spans)):
                    said[leaf] = at
            # A title word counts where no head noun names the product before a "for", or
            # where it follows one ("a camera sling": Camera Bags' titles say "sling").
            for leaf, at in self.named_by_titles(text, spans, brands).items():
                if all(_FOR_BEFORE.search(text[:o[0]]) for o in said.values()) or \
                        any(_modifies(text, o, at) for o in said.values()):
                    said.setdefault(leaf, at)
            product = {leaf: at for leaf, at in said.items() if not _FOR_BEFORE.search(text[:at[0]])}
            if len(said) > 1 and product:
                said = product
            # "a camera sling": of two words side by side, the second names the product, but
            # not when it only says how many come together ("a harness and leash set" is
            # leashes, not a building set).
            said = {leaf: at for leaf, at in said.items()
                    if not any(_modifies(text, at, other) and not _collective(text, other)
                               or _modifies(text, other, at) and _collective(text, at)
                               for other in said.values() if other != at)}
            if len(said) == 1:
                leaf, at = next(iter(said.items()))
                categories = [g for g in groups if not (self.within(leaf, g)
                                                        or _FOR_BEFORE.search(text[:found_at[g][0]])
                                                        or _modifies(text, found_at[g], at))] + [leaf]
                found_at[leaf] = at
            # "earbuds for running": a group said only after a "for" whose words before name
            # a product no category's name holds is what that product is for, not a wish
            # ("something for running", "gear for running", "a bag for camping" stay).
            elif not said and groups and all(
                    (m := _FOR_BEFORE.search(text[:found_at[g][0]])) and not _negated_at(text, *found_at[g])
                    and _names_something(text[:m.start()], spans, self._name_words) for g in groups):
                categories = []
        # "I don't want anything for pets": a category a negation reaches is excluded; not
        # one said right after a brand it excludes ("done with Pacer watches": other watches).
        for c in [c for c in categories if _negated_at(text, *found_at[c])
                  and not any(re.search(rf"(?<!\w){re.escape(b)}\s*$", text[:found_at[c][0]], re.IGNORECASE)
                              for b in exclude_brands)]:
            categories.remove(c)
            exclude_categories.append(c)
        # "cheap", "won't break the bank", "high-end": the cheapest or dearest third of the
        # wanted categories' own prices, when no amount was given.
        if "min_price" not in found and "max_price" not in found and self.has_prices:
            for level, pattern in _PRICE_LEVEL_WORDS.items():
                said = [m for m in pattern.finditer(text) if not _negation_before(text, m.start())]
                if said:
                    low, high = self.price_bounds({"kind": level}, text,
                                                  self.price_reference(tuple(categories), tuple(brands)))
                    found.update(min_price=low, max_price=high)
                    for m in said:  # "luxury ..., money is no object": none is a query word
                        take(m)
                    break
        rest = "".join(ch for i, ch in enumerate(text) if not any(s <= i < e for s, e in spans))
        # "I need board games between $15 and $35." leaves "board games ." once the price is
        # taken out: a word's trailing full stop is punctuation, not part of the query.
        words = [w for w in (w.rstrip(".") for w in re.findall(r"[\w'&.-]+", rest)) if w.strip("-'")]
        while words and words[0].casefold() in _FILLER:
            words.pop(0)
        while words and words[-1].casefold() in _FILLER:
            words.pop()
        # "lubricant for squeaky hinges", "microscope slides for looking at pond water", "foam
        # tape to seal a drafty door": in a catalog of many long category paths (Amazon's),
        # searched by its product titles, the product said before "for" or an infinitive "to"
        # is what a title names; what it is for only blurs the search.
        cut = next((n for n, w in enumerate(words) if _purpose_starts(words, n)), None)
        if not self.llm_categories and cut and any(w.casefold() not in _FILLER for w in words[:cut]):
            words = words[:cut]
            while words and words[-1].casefold() in _FILLER:
                words.pop()
        query = " ".join(words)
        return Constraints(
            min_price=found.get("min_price"),  # type: ignore[arg-type]
            max_price=found.get("max_price"),  # type: ignore[arg-type]
            categories=tuple(dict.fromkeys(categories)),
            exclude_categories=tuple(dict.fromkeys(exclude_categories)),
            brands=tuple(dict.fromkeys(brands)),
            exclude_brands=tuple(dict.fromkeys(exclude_brands)),
            in_stock_only=bool(found.get("in_stock_only", False)),
            query=query,
            like_item=found.get("like_item"),  # type: ignore[arg-type]
        )


MEANING_MIN = 0.3  # chosen on evals/requests.yaml: 118 of 120 answered there, 109 rightly
PRICE_KINDS = ("none", "under", "over", "between", "around", "cheap", "mid-range", "premium")
AROUND = 0.2  # "around $100" -> $80-$120
_LEVELS = {"cheap": (None, 1 / 3), "mid-range": (1 / 3, 2 / 3), "premium": (2 / 3, None)}
_MAX_LLM_CATEGORIES = 80  # a longer list does not fit the prompt (the Amazon category paths)
# A title word names a leaf when at least this many items' titles use it, this share of them in
# that leaf; and the leaf is among this many nearest the message in meaning.
_TITLE_WORD_MIN_ITEMS = 5
_TITLE_WORD_SHARE = 0.95
_TITLE_WORD_SHORT_LIST = 3
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _amount() -> dict:
    return {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1_000_000}, {"type": "null"}]}


def _choice(names: list[str], most: int) -> dict:
    """A list of up to ``most`` of ``names`` (always empty when there are none)."""
    if not names:
        return {"type": "array", "items": {"type": "string"}, "maxItems": 0}
    return {"type": "array", "items": {"enum": names}, "maxItems": min(most, len(names))}


def constraint_schema(parser: ConstraintParser, message: str) -> dict:
    """The JSON an LLM must produce for ``message``: the product wanted in a few words (the
    catalog's categories are read from it), excluded categories and brands only among those
    the message names, a price kind with amounts (only where the catalog has prices)."""
    mentioned = parser.mentioned(message, parser.brands)
    named_categories = parser.mentioned(message, parser.categories)
    properties: dict = {"product": {"type": "string", "maxLength": 40},
                        "exclude_categories": _choice(named_categories, 3)}
    if parser.has_prices:
        properties["price"] = {
            "type": "object",
            "properties": {"kind": {"enum": list(PRICE_KINDS)}, "amount": _amount(), "amount2": _amount()},
            "required": ["kind", "amount", "amount2"],
            "additionalProperties": False,
        }
    properties |= {"brands": _choice(mentioned, 5), "exclude_brands": _choice(mentioned, 5),
                   "in_stock_only": {"type": "boolean"}}
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_NEGATION = re.compile(r"\b(?:" + _NO + r"|not|never|without|except|avoid|hate|other than|" + _ANY_BUT + "|"
                       # "nothing about war"; not "nothing but Pacer" (only Pacer), "nothing
                       # beats Velocita"
                       r"nothing(?!\s+(?:but|other than|except|beats|compares|like|more than)\b)|"
                       r"instead of|rather than|\w+n't|isn't|aren't|done with|sick of|tired of|"
                       r"fed up with|stay away from|steer clear of|dislike|skip|leave out|"
                       r"enough of|bad luck with|bad experiences? with|disappointed (?:with|by|in)|"
                       r"let down by|burned by)\b(?:\W+\w+){0,3}\W+$",
                       re.IGNORECASE)


# Words that say "things" without naming a product: "gear for running" wants Running.
_GOODS = frozenset({"gear", "equipment", "supplies", "accessories", "essentials", "things",
                    "gift", "gifts", "present", "presents", "ideas", "stuff"})


def _names_something(head: str, spans: list[tuple[int, int]], unless: Collection[str] = ()) -> bool:
    """Whether ``head`` (the words before a "for") names a product: a word outside ``spans``
    that is no filler, no price level and no word for things in general ("batteries for my
    headlamp", "earbuds for running"; not "something for my tent", "a cheap one for my
    tent", "gear for running"); with ``unless`` (singular words), only if none of its words
    is one of them."""
    apart = [*spans, *(x.span() for pattern in _PRICE_LEVEL_WORDS.values() for x in pattern.finditer(head))]
    words = [w.group(0).casefold() for w in re.finditer(r"[A-Za-z][\w'-]*", head)
             if not any(s <= w.start() < e for s, e in apart)]
    return not any(title_word(w) in unless for w in words) and \
        any(w not in _FILLER and w not in _GOODS for w in words)


def _collective(text: str, at: tuple[int, int]) -> bool:
    """Whether the word at ``at`` only says that things come together ("set", "kit", "pack")."""
    return title_word(text[at[0]:at[1]].casefold()) in _COLLECTIVE


def _modifies(text: str, first: tuple[int, int], second: tuple[int, int]) -> bool:
    """Whether the words at ``first`` come right before those at ``second`` (only spaces or a
    hyphen between): in "camera sling" or "travel tripod" the first names the second's kind."""
    return first[1] <= second[0] and re.fullmatch(r"[\s-]+", text[first[1]:second[0]]) is not None


def _clause_before(text: str, at: int) -> str:
    """The text of ``at``'s clause before position ``at`` ("no Pacer, only |Velocita" -> "only ")."""
    return re.split(r"[,.;!?]", text[:at])[-1]


# "I'm over Stridelite": done with it (right before the name only: "I'm over 60 and need ...").
_OVER_IT = re.compile(r"\b(?:i'm|i am|we're|we are)\s+(?:so\s+|totally\s+|completely\s+)?over\s+$",
                      re.IGNORECASE)
# "Aquaflow isn't an option", "Wildhaven is out", "Pacer is a no-go", "Vertex excluded": a
# negation said after a name.
_NEGATION_AFTER = re.compile(r"^\s*(?:(?:(?:is|are)\s+)?(?:excluded|ruled out|not wanted|banned)\b|"
                             r"(?:is|are)\s*n[o']t\s+(?:an?\s+)?(?:option|choice|possibility)|"
                             r"(?:is|are)\s+(?:out\b(?!\s+of\s+stock)|off the table|out of the question|"
                             r"(?:a\s+)?no[- ]go|a no\b))", re.IGNORECASE)


def _said_against(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the name at ``text[start:end]`` with the words that negate it when they are
    "I'm over" before it or "isn't an option" after it (not "no", which the exclusion patterns
    take with the name)."""
    if over := _OVER_IT.search(text[:start]):
        start = over.start()
    if after := _NEGATION_AFTER.search(text[end:]):
        end += after.end()
    return start, end


def _negation_before(text: str, at: int) -> bool:
    """Whether a negation comes within three words before position ``at`` of ``text``, in the
    same clause ("no Pacer, only Velocita": the "no" is not Velocita's)."""
    clause = _clause_before(text, at)
    return _NEGATION.search(clause) is not None or _OVER_IT.search(clause) is not None


def _negated_at(text: str, start: int, end: int) -> bool:
    """Whether the name at ``text[start:end]`` is negated: by a negation before it, or by one
    right after it ("Aquaflow isn't an option")."""
    return _negation_before(text, start) or _NEGATION_AFTER.search(text[end:]) is not None


_NEGATING = re.compile(r"\b(?:" + _NO + r"|not|nothing|none|never|without|except|avoid|hate|skip|"
                       r"leave out|enough of|\w+n't)\b",
                       re.IGNORECASE)


def _unnegated(message: str) -> str:
    """``message`` without its clauses that negate something: an embedding reads "nothing
    violent" as violent, so the category nearest in meaning is looked for in the rest ("no
    dramas please, something light and funny" -> "something light and funny")."""
    clauses = re.split(r"[,.;!?]|\bbut\b", message)
    return ", ".join(c.strip() for c in clauses if c.strip() and not _NEGATING.search(c))


def _negated(message: str, name: str) -> bool:
    """Whether a negation comes within three words before ``name`` in ``message``, or right
    after it."""
    return any(_negated_at(message, *m.span())
               for m in re.finditer(re.escape(name), message, re.IGNORECASE))


def parse_with_llm(llm, rules: ConstraintParser, message: str, *, adapter: str | None = None) -> Constraints:
    """The constraints an LLM with structured output reads in ``message``, kept only where the
    catalog and the message support them.

    The model names the product wanted in its own words ("camera bags" for "a gift for my
    dad who loves photography"); the catalog's categories named in those words are the
    wanted categories (a 0.5B model picks badly from a list, but names a product well). The
    schema (:func:`constraint_schema`) limits brands and excluded categories to those the
    message names; the reply is checked again here (a server may ignore the schema): a price
    amount must be a number written in the message, a brand or an excluded category must be
    named in it, and a brand or category wanted must not follow a negation. Vague price words become
    bounds from the catalog's own prices (the cheapest third of the wanted categories for
    "cheap"). ``adapter``: the LoRA adapter to read with (:data:`READER`, trained by
    ``recagent train-reader``), or the model alone. A reply that is not the
    JSON object asked for is a :class:`ToolError` (the rules' parse then stands alone).
    """
    data = llm.generate_json(
        render("parse_constraints", message=message, categories=rules.llm_categories,
               has_prices=rules.has_prices),
        constraint_schema(rules, message), adapter=adapter)
    if not isinstance(data, dict):
        raise ToolError(f"parse_constraints_llm: expected a JSON object, got {type(data).__name__}")
    lowered = message.casefold()

    def names(key: str, known: dict[str, str], *, named: bool) -> tuple[str, ...]:
        values = data.get(key)
        found = []
        for value in values if isinstance(values, list) else []:
            name = known.get(value.casefold()) if isinstance(value, str) else None
            if name and (not named or name in rules.mentioned(message, known)):
                found.append(name)
        return tuple(dict.fromkeys(found))

    product = data.get("product")
    categories = rules.parse(product).categories if isinstance(product, str) else ()
    # The model says a product is wanted but names no category of the catalog below what the
    # rules see ("scary movie" -> Movies): the category nearest the message in meaning, if any.
    read = rules.parse(message)
    broad = all(c.casefold() in rules.parents for c in categories)
    near = (rules.category_by_meaning(_unnegated(message))
            if isinstance(product, str) and product.strip() and broad else None)
    # ... and only where the catalog has an item that meets the rest of what the message says
    # (not "Cookbooks" for "no books please", nor a category without the brands asked for).
    if near is not None and rules.has_items(replace(read, categories=(near,))):
        categories = (near,)
    # "I don't want anything for pets": a category the message negates is not wanted.
    categories = tuple(c for c in categories if not _negated(message, c))
    # Nor one the brands the message names leave empty: "she'd like a Halcyon or Optivo body"
    # read as Camera Bags, where neither brand makes one. (Not its prices: "the nicest pen"
    # is "premium" over the whole catalog until the category is known.)
    if categories and (read.brands or read.exclude_brands) and \
            not rules.has_items(replace(read, categories=categories, min_price=None, max_price=None)):
        categories = ()
    # A brand wanted is one the message names as a brand: plainly only where the name mostly
    # titles the brand's own items (not "Super Glue" in "super glue from Gorilla"), as the
    # rules read it, else with "from" or "by" (which the rules found).
    plain = set(rules.mentioned(message, rules.plain_brands)) | set(read.brands)
    wanted = tuple(b for b in names("brands", rules.brands, named=True)
                   if b in plain and not _negated(message, b))
    low, high = rules.price_bounds(data.get("price"), message,
                                   rules.price_reference(categories or read.categories, wanted or read.brands))
    return Constraints(
        min_price=low,
        max_price=high,
        categories=categories,
        exclude_categories=names("exclude_categories", rules.categories, named=True),
        brands=rules.with_families(wanted),
        exclude_brands=rules.with_families(names("exclude_brands", rules.brands, named=True)),
        in_stock_only=data.get("in_stock_only") is True and ("stock" in lowered or "available" in lowered),
    )


def combine(rules: Constraints, llm: Constraints, parser: ConstraintParser | None = None) -> Constraints:
    """The rules' parse of a message completed by the LLM's, the rules winning.

    The LLM only adds what the rules did not find: its price bounds count only when the rules
    found none (a weak model reads "under $50" as a minimum of 50 as readily as a maximum),
    and only when they are consistent (min <= max); its categories (read from intent too)
    only when the rules found none, since adding one to the rules' would widen the request,
    or (given the ``parser`` that knows the catalog's paths) when every one of them lies under
    one the rules found, which narrows it ("a scary movie": Movies -> Horror); a price level
    ("cheap") read over other categories is re-read over the final ones;
    its brands and exclusions are added, except where they contradict the rules (a brand the
    rules exclude cannot be wanted, and the reverse). The free-text query and "more like #N"
    stay the rules'.
    """
    rules_priced = rules.min_price is not None or rules.max_price is not None
    inverted = None not in (llm.min_price, llm.max_price) and llm.min_price > llm.max_price
    low, high = (rules.min_price, rules.max_price) if rules_priced or inverted else \
        (llm.min_price, llm.max_price)

    def add(ours: tuple[str, ...], theirs: tuple[str, ...], contrary: tuple[str, ...]):
        blocked = {c.casefold() for c in contrary}
        return tuple(dict.fromkeys(ours + tuple(t for t in theirs if t.casefold() not in blocked)))

    theirs = add((), llm.categories, rules.exclude_categories)
    narrows = parser is not None and bool(theirs) and all(
        any(parser.within(c, r) for r in rules.categories) for c in theirs)
    categories = theirs if not rules.categories or narrows else rules.categories
    # A price level is relative to the categories it was read over: "a squeaky ball that
    # won't cost much" (the rules' "cheap" over the whole catalog, then Dog Toys from the
    # LLM), "the nicest camera Halcyon makes" (the LLM's "premium" over Camera Bags, its own
    # wrong category, where the rules' DSLR Cameras stand): re-read over the final ones.
    # Where no category is known, a level is read over the leaves of the brands asked for.
    brands = add(rules.brands, llm.brands, rules.exclude_brands)
    read_over = rules.categories if rules_priced or inverted else (llm.categories or rules.categories)
    if parser is not None:
        before, after = parser.price_reference(read_over, brands), parser.price_reference(categories, brands)
        if before != after and (level := parser.level_of(low, high, before)):
            low, high = parser.price_bounds({"kind": level}, "", after)
    return replace(
        rules, min_price=low, max_price=high,
        brands=brands,
        exclude_brands=add(rules.exclude_brands, llm.exclude_brands, rules.brands),
        categories=categories,
        exclude_categories=add(rules.exclude_categories, llm.exclude_categories, rules.categories),
        in_stock_only=rules.in_stock_only or llm.in_stock_only,
    )
