"""The reading a labelled request asks of the LLM: the JSON of ``prompts/parse_constraints``.

A labelled request (:class:`~recagent.evals.requests.Request`) says what a message asks for in
the catalog's terms (bounds, price levels, categories, brands). :func:`reading_of` writes it as
the answer the ``parse_constraints`` prompt asks the LLM for, under the schema the agent decodes
with (:func:`~recagent.agent.constraints.constraint_schema`):

- ``product``: the first labelled category ("DSLR Cameras"; for "a tearjerker" the genre
  "Drama"), or where the labels name none (Amazon, whose labels are keywords) the keywords in
  the order the message has them;
- ``price``: ``under``/``over``/``between`` for stated bounds, ``around`` for "about X", the
  level ("cheap", "mid-range", "premium") for price words, ``none`` otherwise;
- brands and exclusions as labelled; ``in_stock_only`` false (no label asks for it).

These readings are the training answers of the request-reading adapter
(``recagent train-reader``).
"""

from __future__ import annotations

from typing import Any

from recagent.evals.requests import Request

__all__ = ["reading_of"]


def _price(r: Request) -> dict[str, Any]:
    if r.min_price is not None and r.max_price is not None:
        return {"kind": "between", "amount": r.min_price, "amount2": r.max_price}
    if r.max_price is not None:
        return {"kind": "under", "amount": r.max_price, "amount2": None}
    if r.min_price is not None:
        return {"kind": "over", "amount": r.min_price, "amount2": None}
    if r.around is not None:
        return {"kind": "around", "amount": r.around, "amount2": None}
    if r.price_level:
        return {"kind": r.price_level, "amount": None, "amount2": None}
    return {"kind": "none", "amount": None, "amount2": None}


def _number(x: float | None) -> float | int | None:
    return int(x) if x is not None and float(x).is_integer() else x


def _product(r: Request) -> str:
    if r.categories:
        return r.categories[0]
    text = r.message.casefold()
    said = sorted((text.find(k.casefold()), k) for k in r.keywords if k.casefold() in text)
    return " ".join(k for _, k in said)[:40]


def reading_of(r: Request, *, has_prices: bool) -> dict[str, Any]:
    """The JSON answer ``prompts/parse_constraints`` asks for ``r.message``, from its labels
    (``has_prices``: whether the catalog has prices, as the prompt and schema have a price
    field only then)."""
    out: dict[str, Any] = {"product": _product(r), "exclude_categories": list(r.exclude_categories)}
    if has_prices:
        price = _price(r)
        out["price"] = {k: _number(v) if k != "kind" else v for k, v in price.items()}
    out |= {"brands": list(r.brands), "exclude_brands": list(r.exclude_brands), "in_stock_only": False}
    return out
