"""Explanations that are true: LLM prose checked against the evidence, or the evidence itself.

The LLM writes one sentence from an item's evidence (``prompts/explain_prose.yaml``). The
faithfulness check then accepts it only when everything it names is in that evidence:

- quoted text must be the item's title, a related history title, or a shared attribute value;
- a title of any other item the user has or was offered must not appear;
- a catalog brand must appear in the evidence text; a price must be the item's price or a
  bound the user set; an item id must be the item's own;
- the sentence must be non-empty and short.

Prose that fails is replaced by a clean rendering of the evidence
(``prompts/explanation_evidence.yaml``), and the reasons are kept for the trace and the eval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from recagent.agent.llm import LLM
from recagent.catalog.model import Dataset
from recagent.prompts import render
from recagent.tools.explain import ItemEvidence

__all__ = ["Explanation", "ExplanationWriter", "faithfulness_problems"]

_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,})[\"“”]")
_PRICE = re.compile(r"\$\s*(\d+(?:,\d{3})*(?:\.\d+)?)")
_MIN_TITLE = 8  # shorter titles ("Up", "Heat") are too likely to occur as plain words


@dataclass(frozen=True)
class Explanation:
    text: str
    source: str  # "llm" (checked prose) or "evidence" (rendered from the evidence)
    problems: tuple[str, ...] = ()  # why the LLM's sentence was rejected, if it was

    @property
    def faithful(self) -> bool:
        return self.source == "llm"


def evidence_text(evidence: ItemEvidence) -> str:
    return render(
        "explanation_evidence",
        related=[e.title for e in evidence.related],
        shared=evidence.shared,
        satisfies=list(evidence.satisfies),
    )


def faithfulness_problems(
    text: str,
    evidence: ItemEvidence,
    *,
    other_titles: Iterable[str] = (),
    brands: Iterable[str] = (),
    item_ids: Iterable[str] = (),
    price_bounds: Iterable[float] = (),
    max_chars: int = 300,
) -> list[str]:
    """Everything in ``text`` that the evidence does not support (empty list: faithful)."""
    problems: list[str] = []
    if not text.strip():
        return ["empty"]
    if len(text) > max_chars:
        problems.append(f"longer than {max_chars} characters")
    own_words = _QUOTED.sub(" ", text)
    for title in (evidence.title, *(e.title for e in evidence.related)):
        own_words = re.sub(re.escape(title), " ", own_words, flags=re.IGNORECASE)
    if len(own_words.split()) < 4:
        problems.append("not a sentence (only titles)")
    if evidence.title.casefold() not in text.casefold() and not _names_item(text, evidence.title):
        problems.append("does not name the item")
    allowed_titles = [evidence.title, *(e.title for e in evidence.related)]
    allowed_text = " ".join([*allowed_titles, *evidence.shared.values(), *evidence.satisfies]).casefold()
    for quoted in _QUOTED.findall(text):
        q = quoted.strip().casefold()
        if not any(q == t.casefold() or (len(q) >= _MIN_TITLE and q in t.casefold()) for t in allowed_titles) \
                and q not in {v.casefold() for v in evidence.shared.values()}:
            problems.append(f'quotes "{quoted.strip()}", which is not in the evidence')
    lowered = text.casefold()
    allowed_lower = {t.casefold() for t in allowed_titles}
    for title in set(other_titles):
        t = title.casefold()
        if len(t) >= _MIN_TITLE and t not in allowed_lower and t in lowered \
                and not any(t in a for a in allowed_lower):
            problems.append(f'names "{title}", which is not in the evidence')
    for brand in set(brands):
        if re.search(rf"(?<!\w){re.escape(brand)}(?!\w)", text) and brand.casefold() not in allowed_text:
            problems.append(f"names brand {brand}, which is not in the evidence")
    prices = {round(p, 2) for p in price_bounds}
    if evidence.price is not None:
        prices.add(round(evidence.price, 2))
    for amount in _PRICE.findall(text):
        if round(float(amount.replace(",", "")), 2) not in prices:
            problems.append(f"states a price ${amount} that is not the item's")
    for token in set(re.findall(r"\b[A-Za-z0-9]{4,}\b", text)) & set(item_ids):
        if token != evidence.item_id:
            problems.append(f"names item id {token}")
    return problems


def _names_item(text: str, title: str) -> bool:
    """True when ``text`` names the item by the start of its title (brand and model)."""
    words = title.split()
    return len(words) >= 2 and " ".join(words[:2]).rstrip(",").casefold() in text.casefold()


class ExplanationWriter:
    """Writes each recommendation's explanation; with no LLM, renders the evidence."""

    def __init__(self, dataset: Dataset, llm: LLM | None, *, max_tokens: int = 48) -> None:
        self.dataset = dataset
        self.llm = llm
        self.max_tokens = max_tokens

    @cached_property
    def brands(self) -> set[str]:
        return {i.brand for i in self.dataset.items.values() if i.brand and len(i.brand) >= 3}

    @cached_property
    def letter_ids(self) -> set[str]:
        """Item ids with a letter in them (numeric ids such as MovieLens' are plain numbers)."""
        return {i for i in self.dataset.items if any(c.isalpha() for c in i)}

    def write(
        self,
        evidence: ItemEvidence,
        *,
        other_titles: Iterable[str] = (),
        price_bounds: Iterable[float] = (),
        on_delta: Callable[[str], None] | None = None,
    ) -> Explanation:
        """The checked LLM sentence, or the evidence rendering.

        With ``on_delta``, the LLM's words are passed to it as they are decoded (before the
        check: the caller shows the returned explanation in their place when it differs).
        Raises :class:`~recagent.agent.llm.LLMUnavailable` when the LLM fails; the caller
        degrades to evidence for the rest of the turn.
        """
        fallback = evidence_text(evidence)
        if self.llm is None or not evidence.related:
            return Explanation(fallback, "evidence")
        prompt = render(
            "explain_prose",
            title=evidence.title,
            related=[e.title for e in evidence.related],
            shared=evidence.shared,
            satisfies=list(evidence.satisfies),
        )
        if on_delta is None:
            prose = self.llm.generate(prompt, max_tokens=self.max_tokens, stop=["\n"])
        else:
            pieces = []
            for piece in self.llm.stream(prompt, max_tokens=self.max_tokens, stop=["\n"]):
                pieces.append(piece)
                on_delta(piece)
            prose = "".join(pieces).strip()
        problems = faithfulness_problems(
            prose, evidence, other_titles=other_titles, brands=self.brands,
            item_ids=self.letter_ids, price_bounds=price_bounds,
        )
        if problems:
            return Explanation(fallback, "evidence", tuple(problems))
        return Explanation(prose, "llm")
