"""Simulated shoppers for the conversation evaluation, in the spirit of InteRecAgent's.

The simulator knows a hidden target item. It opens with a request that carries no facts (the
one-shot baseline), and after every answer that misses the target it reveals one more of the
target's attributes, phrased as a shopper would (``prompts/simulated_user.yaml``):

1. what it is: the category (when the catalog has a category path) or, failing that, a
   descriptive keyword;
2. a price range around its price (when the catalog has prices);
3. its brand;
4. further keywords: words of the description (those most typical of its category first),
   then of the category path (most specific first), that are not words of the title, and
   common enough in the catalog (>= 3 items) not to identify the item on their own.

**Leak guard.** :class:`LeakGuard` refuses any utterance that contains the target's id, its
title, or a run of three or more consecutive title words (the brand's words aside, since the
brand is an attribute the shopper may state). A refused rule sentence is re-phrased without
the offending fact; a refused LLM reply is replaced by the rule sentence. Either way the count
is reported. The stated facts are also kept as :class:`Constraints`, the truth that every
shown item is checked against.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from recagent.catalog.model import Dataset, Item
from recagent.prompts import render
from recagent.tools.filter_items import Constraints

__all__ = ["LLMSimulator", "LeakGuard", "RuleSimulator", "TargetFacts", "Utterance", "keyword_stats"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into",
    "is", "it", "its", "of", "on", "or", "our", "that", "the", "their", "this", "to", "with",
    "without", "your", "you", "all", "any", "can", "more", "most", "other", "some", "such",
    "than", "too", "very", "will", "just", "also", "only", "each", "every", "both", "made",
    "make", "makes", "ideal", "great", "perfect", "quality", "products", "product", "item",
    "items", "comes", "includes", "pack", "set", "new", "plus", "about", "after", "before",
    "when", "where", "which", "while", "what", "over", "under", "down", "keeps", "keep", "even",
    "easy", "well", "used", "using", "days", "long", "lasting", "designed",
    "built", "features", "feature", "offers", "provides", "helps", "help", "them", "they",
    "there", "these", "those", "then", "onto", "within",
})


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


class LeakGuard:
    """Says whether an utterance gives away the target (its id, title, or 3+ title words)."""

    def __init__(self, item: Item, *, min_run: int = 3) -> None:
        self.item = item
        brand = set(_tokens(item.brand or ""))
        self.title = _tokens(item.title)
        self.rest = [t for t in self.title if t not in brand]  # title words but the brand's
        self.min_run = min_run

    def leaks(self, text: str) -> str | None:
        """Why ``text`` leaks the target, or None."""
        if re.search(rf"(?<![\w-]){re.escape(self.item.item_id)}(?![\w-])", text, re.IGNORECASE):
            return "names the item id"
        said = " " + " ".join(_tokens(text)) + " "
        if self.title and f" {' '.join(self.title)} " in said:
            return "names the title"
        n = self.min_run
        runs = ([self.rest] if 0 < len(self.rest) < n else
                [self.rest[i:i + n] for i in range(len(self.rest) - n + 1)])
        for run in runs:
            if f" {' '.join(run)} " in said:
                return f'repeats the title words "{" ".join(run)}"'
        return None


@dataclass(frozen=True)
class Utterance:
    text: str
    stated: Constraints  # what the shopper has asked for so far, as the filter's terms
    facts: tuple[str, ...]  # the facts revealed so far, e.g. ("category: Tents",)
    blocked: int = 0  # sentences the leak guard refused on the way to this one


def keyword_stats(dataset: Dataset) -> Counter:
    """How many items each word (stem) of descriptions and category paths occurs in, overall
    (key: the stem) and within each leaf category (key: (leaf, stem))."""
    df: Counter = Counter()
    for item in dataset.items.values():
        stems = set(map(_stem, _tokens(f"{item.description} {' '.join(item.category)}")))
        leaf = item.category[-1] if item.category else ""
        df.update(stems)
        df.update((leaf, s) for s in stems)
    return df


@dataclass
class TargetFacts:
    """What the shopper may say about ``item``, most telling first."""

    item: Item
    dataset: Dataset
    df: Counter = field(default_factory=Counter)
    max_keywords: int = 3

    @cached_property
    def category(self) -> str | None:
        # A real category path (demo shop, generic data) names a leaf a shopper would say;
        # a single flattened string (the Amazon data) does not.
        path = self.item.category
        return path[-1] if len(path) >= 2 and len(_tokens(path[-1])) <= 4 else None

    @cached_property
    def price(self) -> tuple[int, int] | None:
        p = self.item.price
        if p is None:
            return None
        return 5 * math.floor(p * 0.75 / 5), max(5, 5 * math.ceil(p * 1.25 / 5))

    @cached_property
    def keywords(self) -> list[str]:
        """Description words typical of its category, then category-path words, most specific
        first."""
        banned = set(map(_stem, _tokens(f"{self.item.title} {self.item.brand or ''} {self.category or ''}")))
        n = max(1, len(self.dataset.items))

        def usable(word: str) -> bool:
            count = self.df.get(_stem(word), 0)
            return (len(word) >= 4 and word.isalpha() and word not in _STOP
                    and _stem(word) not in banned and 3 <= count <= n / 3)

        # Words typical of the item's category (most of their uses are there), rarest first.
        leaf = self.item.category[-1] if self.item.category else ""
        described = sorted({w for w in _tokens(self.item.description) if usable(w)},
                           key=lambda w: (-self.df[(leaf, _stem(w))] / self.df[_stem(w)],
                                          self.df[_stem(w)], w))
        path = [w for w in reversed(_tokens(" ".join(self.item.category))) if usable(w)]
        return list(dict.fromkeys(described + path))[: self.max_keywords]

    def plan(self) -> list[str]:
        """The order in which facts are revealed."""
        order = []
        if self.category:
            order.append("category")
        elif self.keywords:
            order.append("keyword")
        if self.price:
            order.append("price")
        if self.item.brand:
            order.append("brand")
        order += ["keyword"] * (len(self.keywords) - order.count("keyword"))
        return order


class RuleSimulator:
    """The default shopper: one more fact per turn, phrased by ``prompts/simulated_user.yaml``."""

    kind = "rule"

    def __init__(self, facts: TargetFacts, *, reaction: str = "") -> None:
        self.facts = facts
        self.guard = LeakGuard(facts.item)
        self.reaction = reaction  # said before the facts after a miss, e.g. "Not these."
        self.plan = facts.plan()
        self.revealed: list[str] = []
        self.blocked = 0

    def next(self, shown: Sequence[Item] = ()) -> Utterance:
        """The opening (no facts) when nothing was shown yet, else one more fact."""
        if shown and len(self.revealed) < len(self.plan):
            self.revealed.append(self.plan[len(self.revealed)])
        return self._say(self.revealed, reaction=self.reaction if shown else "")

    def _say(self, revealed: list[str], *, reaction: str) -> Utterance:
        kinds = list(revealed)
        blocked = 0
        while True:
            values = self._values(kinds)
            text = render("simulated_user", reaction=reaction, **values)
            if self.guard.leaks(text) is None:
                break
            blocked += 1
            if not kinds:  # nothing left to drop: the opening itself cannot leak
                raise AssertionError(f"the opening leaks the target: {text!r}")
            kinds.pop()  # drop the newest fact and say the rest
        self.blocked += blocked
        return Utterance(text, self._stated(values), tuple(self._lines(values)), blocked)

    def _values(self, kinds: list[str]) -> dict:
        f = self.facts
        n_keywords = kinds.count("keyword")
        low, high = f.price if "price" in kinds and f.price else (None, None)
        return {
            "category": f.category if "category" in kinds else "",
            "price_low": low, "price_high": high,
            "brand": f.item.brand if "brand" in kinds else "",
            "keywords": f.keywords[:n_keywords],
        }

    @staticmethod
    def _stated(values: dict) -> Constraints:
        return Constraints(
            min_price=values["price_low"], max_price=values["price_high"],
            categories=(values["category"],) if values["category"] else (),
            brands=(values["brand"],) if values["brand"] else (),
        )

    @staticmethod
    def _lines(values: dict) -> list[str]:
        lines = []
        if values["category"]:
            lines.append(f"category: {values['category']}")
        if values["price_high"] is not None:
            lines.append(f"price: between ${values['price_low']} and ${values['price_high']}")
        if values["brand"]:
            lines.append(f"brand: {values['brand']}")
        if values["keywords"]:
            lines.append(f"keywords: {', '.join(values['keywords'])}")
        return lines


_OPENING = "I'm looking for"


def states(reply: str, fact: str) -> bool:
    """Whether ``reply`` says the fact line ``fact`` ("category: Board Games", "price: between
    $15 and $35", "brand: Dicehaven", "keywords: wool, merino"): every number and every word
    of the value, or, for keywords, at least one of them (plural "s" ignored)."""
    kind, _, value = fact.partition(":")
    said = {_stem(w) for w in _tokens(reply)}
    if kind.strip() == "price":
        numbers = re.findall(r"\d+(?:\.\d+)?", value)
        return all(re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", reply) for n in numbers)
    words = [_stem(w) for w in _tokens(value)]
    if kind.strip() == "keywords":
        return any(w in said for w in words)
    return all(w in said for w in words)


class LLMSimulator(RuleSimulator):
    """A shopper written by an LLM from the same facts (``prompts/simulated_user_llm.yaml``).

    Only worth it with a capable instruct model (``--sim-llm-url``): the embedded Gemma-3 270M
    base model does not follow the instruction. The rule simulator decides which facts are
    revealed, so the stated constraints stay known; the LLM only phrases them. A reply that
    leaks, is empty or is too long is replaced by the rule sentence.
    """

    kind = "llm"

    def __init__(self, facts: TargetFacts, llm, **kwargs) -> None:
        super().__init__(facts, **kwargs)
        self.llm = llm
        self.said: list[str] = []
        self.fallbacks = 0

    def next(self, shown: Sequence[Item] = ()) -> Utterance:
        rule = super().next(shown)
        if not rule.facts:  # the opening: nothing to phrase
            self.said.append(rule.text)
            return rule
        prompt = render("simulated_user_llm", facts=list(rule.facts),
                        shown=[i.title for i in shown], said=self.said)
        # The reply opens as a shopper's message: an instruct model, left to itself, answers
        # as the assistant ("Sure, I can recommend something for you!").
        reply = self.llm.generate_batch([prompt], max_tokens=60, stop=["\n"],
                                        starts=[_OPENING])[0].strip().strip('"')
        if not reply or len(reply) > 300 or self.guard.leaks(reply) is not None \
                or not all(states(reply, fact) for fact in rule.facts):
            # A reply that leaks, or leaves out a fact the evaluation counts as stated (the
            # filter's truth), is replaced by the rule sentence.
            self.fallbacks += 1
            self.blocked += bool(reply and self.guard.leaks(reply))
            self.said.append(rule.text)
            return rule
        self.said.append(reply)
        return Utterance(reply, rule.stated, rule.facts, rule.blocked)
