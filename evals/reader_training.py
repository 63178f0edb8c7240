"""The request-reading adapter's examples and its validation (``recagent train-reader``).

The examples are the labelled requests of the sets whose misses have been read (see
:mod:`recagent.evals.requests`), each as the ``parse_constraints`` prompt the agent renders for
its catalog and the reading its labels give (:func:`~recagent.evals.request_readings.reading_of`),
decoded as :meth:`InstructLLM.generate_json` decodes (``Answer(as_json=True)``).

Validation reads a held-out set's requests as the agent does (the rules completed by the
LLM's reading, :func:`~recagent.agent.constraints.combine`) and counts the requests read
exactly right: every labelled field, and nothing more (:func:`read_right`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from recagent.agent.constraints import ConstraintParser
from recagent.catalog.model import Dataset
from recagent.evals.data import data_root
from recagent.evals.request_readings import reading_of
from recagent.evals.requests import (
    Request,
    _Prices,
    agent_reading,
    as_the_agent_prices,
    load_requests,
    read_right,
)
from recagent.llm.answer_adapter import Answer
from recagent.prompts import render

__all__ = ["READ_SETS", "VALID_SET", "ReadingSet", "admitted_reading", "own_products", "reading_examples", "reading_set", "validate"]

# The request sets whose misses have been read (the reader trains on them), the one that
# validates it (chooses the epoch and whether to use it), and after it the unseen one.
# (The reader in use since session 36 was trained on the first twenty; heldout21-25 were
# read after and join at the next `recagent train-reader`.)
READ_SETS = ("labelled", "heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6",
             "heldout7", "heldout8", "heldout9", "heldout10", "heldout12", "heldout13",
             "heldout14", "heldout15", "heldout16", "heldout17", "heldout18", "heldout19",
             "heldout20", "heldout21", "heldout22", "heldout23", "heldout24", "heldout25")
VALID_SET = "heldout11"


class ReadingSet:
    """Labelled requests with the parser of each one's catalog (built once per catalog)."""

    def __init__(self, requests: Sequence[Request], parsers: dict[str, ConstraintParser]) -> None:
        self.requests = list(requests)
        self.parsers = parsers

    def prompt(self, r: Request) -> str:
        p = self.parsers[r.dataset]
        return render("parse_constraints", message=r.message, categories=p.llm_categories,
                      has_prices=p.has_prices)


def _catalog(folder: str | None, root: Path) -> Dataset:
    from recagent.catalog.demo_shop import generate_demo_shop
    from recagent.catalog.load import load_dataset

    return generate_demo_shop() if folder is None else load_dataset(root / folder)


def reading_set(names: Sequence[str], *, root: Path | None = None, encoder=None,
                echo: Callable[[str], None] = lambda _: None) -> ReadingSet:
    """The requests of the sets ``names`` whose catalog is here (a dataset folder missing
    under ``root`` is skipped, with a word to ``echo``), each read by a parser with the
    search ``encoder`` as the agent's is (categories by meaning)."""
    root = root or data_root()
    requests: list[Request] = []
    parsers: dict[str, ConstraintParser] = {}
    for name in names:
        folders, rs = load_requests(name)
        for dataset, folder in folders.items():
            if dataset not in parsers:
                if folder is not None and not (root / folder).is_dir():
                    echo(f"skipping the {dataset} requests: no data at {root / folder}")
                    parsers[dataset] = None  # type: ignore[assignment]
                    continue
                parsers[dataset] = ConstraintParser(_catalog(folder, root), encoder=encoder)
            if parsers[dataset] is not None:
                requests += [r for r in rs if r.dataset == dataset]
    return ReadingSet(requests, {k: v for k, v in parsers.items() if v is not None})


def admitted_reading(r: Request, parser: ConstraintParser, product: str | None = None) -> dict:
    """:func:`reading_of` ``r`` (with ``product`` in place of the labels' where given) as
    the agent's schema admits it: the schema offers only the
    categories the message names to exclude, so "no books" excludes "Books", the named
    category above the labelled "Cookbooks" and "Travel Guides" (but not "Movies" above the
    "Horror" of "a sci-fi movie, nothing scary": a wanted category lies under it too)."""
    reading = reading_of(r, has_prices=parser.has_prices)
    if product is not None:
        reading["product"] = product
    named = parser.mentioned(r.message, parser.categories)
    labelled = reading["exclude_categories"]
    reading["exclude_categories"] = [
        c for c in named if c in labelled
        or (labelled and all(parser.within(x, c) for x in labelled)
            and not any(parser.within(w, c) for w in r.categories))]
    return reading


def reading_examples(s: ReadingSet, products: dict[str, str | None] | None = None) -> list[Answer]:
    """Each request as a JSON answer the adapter learns to write (``products``: the product
    to write per message, where not None and not the labels', see :func:`own_products`)."""
    products = products or {}
    return [Answer(s.prompt(r), "", json.dumps(admitted_reading(r, s.parsers[r.dataset], products.get(r.message))),
                   as_json=True) for r in s.requests]


class _Recording:
    """An LLM's JSON answers, recorded as the agent's reading asks for them."""

    def __init__(self, llm) -> None:
        self.llm, self.last = llm, None
        self.structured_output, self.adapters = True, frozenset()

    def generate_json(self, prompt, schema, *, max_tokens: int = 256, adapter=None):
        self.last = self.llm.generate_json(prompt, schema, max_tokens=max_tokens)
        return self.last


def own_products(llm, s: ReadingSet, *, known: dict[str, str | None] | None = None,
                 progress: Callable[[], None] = lambda: None) -> dict[str, str | None]:
    """Per message, the product the model alone names for it where the agent's reading of
    it finds a labelled category (or the labels name none), else None (``known``: the
    answers of an earlier run, not read again): the adapter then learns to name
    products in the model's own words, from which the agent's categories by meaning work,
    and the labels' category name only where those words missed. (Trained on the category
    names alone, the adapter wrote "Dog Food" for "a lead for walking two dogs" and
    "Notebooks" for "a 13 inch notebook computer".)"""
    recording = _Recording(llm)
    own: dict[str, str | None] = dict(known or {})
    for r in s.requests:
        if r.message in own:
            progress()
            continue
        own[r.message] = None
        c = agent_reading(s.parsers[r.dataset], recording, r.message)
        product = recording.last.get("product") if isinstance(recording.last, dict) else None
        if isinstance(product, str) and (not r.categories or set(c.categories) & set(r.categories)):
            own[r.message] = product
        progress()
    return own


def validate(llm, s: ReadingSet, *, adapter: str | None = None,
             progress: Callable[[], None] = lambda: None) -> dict:
    """The share of ``s``'s requests the rules plus ``llm`` (with ``adapter``) read exactly."""
    prices = {name: _Prices(p.dataset) for name, p in s.parsers.items()}
    right = 0
    for r in s.requests:
        p = s.parsers[r.dataset]
        c = as_the_agent_prices(p, agent_reading(p, llm, r.message, adapter=adapter))
        right += read_right(r, c, prices[r.dataset])
        progress()
    return {"requests": len(s.requests), "read_right": right,
            "share": round(right / len(s.requests), 4) if s.requests else None}
