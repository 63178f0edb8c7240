"""The built-in demo shop: a deterministic, realistic product catalog with user histories.

It is the embedded default dataset of the demo, the chat and the tests. The vocabulary
(categories, brands, attribute values, title and description templates, price ranges and
the complement chains between categories) lives in ``demo_shop_vocab.json`` next to this
module; this module only draws from it with ``numpy.random.default_rng(config.seed)``.

How histories are drawn (by :mod:`recagent.catalog.demo_histories`, for many users at
once), so that the ORDER of a history carries signal that plain text similarity cannot see:

* Every user has latent tastes: 2-4 favourite top-level categories (Dirichlet weights), a
  preferred price tier (budget / mid / premium) and 1-3 favourite brands.
* The first purchase is taste-driven. Each next purchase is, with probability
  ``P_COMPLEMENT``, a complement of the previous item's category (camera -> memory card ->
  tripod -> camera bag, coffee maker -> beans -> grinder, ...), preferring the previous
  item's brand and price tier; otherwise it is another taste-driven item: a favourite
  category, weighted by tier match, brand affinity and a Zipf-like popularity prior.
* A user never buys the same item twice, and rarely a second camera or tent (each
  category's ``repeat`` in the vocabulary; consumables such as coffee beans repeat freely).
  Complement purchases follow sooner (hours to days) than unrelated ones (days to weeks).
  About 60% of purchases are rated, mostly highly, and lower when the item's tier is far
  from the user's preferred tier.

Same config -> the identical dataset (items and interactions in the same order) in every
process: nothing here iterates over a set or depends on hash order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from recagent.catalog.demo_histories import ShopTables, draw_histories
from recagent.catalog.model import Dataset, Interaction, Item

DEMO_SHOP_NAME = "demo-shop"
VOCAB_PATH = Path(__file__).with_name("demo_shop_vocab.json")

TIERS = ("budget", "mid", "premium")
# Affinity of an item's tier to a reference tier (the user's preference, or the tier of the
# item just bought): same tier 3, adjacent 1, opposite 0.25.
_TIER_AFFINITY = np.array([[3.0, 1.0, 0.25], [1.0, 3.0, 1.0], [0.25, 1.0, 3.0]])
_ZIPF_EXPONENT = 0.9  # popularity of the item ranked r in its category: 1 / r**0.9 + floor
_POP_FLOOR = 0.02  # keeps the long tail reachable
_MODEL_NUMBERS = ((100, 400), (400, 700), (700, 1000))  # model numbers by tier
_ROWS = 1 << 20  # interactions turned into objects at a time


@dataclass(frozen=True)
class DemoShopConfig:
    """Size and seed of the generated shop; the defaults give the built-in ``demo-shop``."""

    n_users: int = 3000
    n_items: int = 3000  # approximate: items are split over categories by weight
    seed: int = 7
    min_history: int = 5
    max_history: int = 40

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise ValueError(f"DemoShopConfig.n_users must be >= 1, got {self.n_users}")
        if self.n_items < 100:
            raise ValueError(f"DemoShopConfig.n_items must be >= 100, got {self.n_items}")
        if not 1 <= self.min_history <= self.max_history:
            raise ValueError(
                "DemoShopConfig needs 1 <= min_history <= max_history, got "
                f"{self.min_history} and {self.max_history}"
            )
        if self.max_history > self.n_items // 2:
            raise ValueError(
                f"DemoShopConfig.max_history ({self.max_history}) must be at most half of "
                f"n_items ({self.n_items})"
            )


def _dataset_name(config: DemoShopConfig) -> str:
    if config == DemoShopConfig():
        return DEMO_SHOP_NAME
    name = f"{DEMO_SHOP_NAME}-s{config.seed}-u{config.n_users}"
    if config.n_items != DemoShopConfig.n_items:
        name += f"-i{config.n_items}"
    if (config.min_history, config.max_history) != (
        DemoShopConfig.min_history,
        DemoShopConfig.max_history,
    ):
        name += f"-h{config.min_history}-{config.max_history}"
    return name


@lru_cache(maxsize=1)
def load_vocab() -> dict[str, Any]:
    """The demo shop's vocabulary (read once; callers must not modify it)."""
    return json.loads(VOCAB_PATH.read_text(encoding="utf-8"))


class _Leaf:
    """One leaf category with the arrays the history sampler needs."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.path: tuple[str, ...] = tuple(spec["path"])
        self.repeat = float(spec["repeat"])
        self.items: list[int] = []  # catalog positions, filled after the catalog shuffle
        self.tiers: list[int] = []
        self.brands: list[int] = []
        self.next_leaves = np.zeros(0, dtype=np.int64)
        self.next_cum = np.zeros(0)
        self.tier_w = np.zeros((3, 0))  # popularity x tier affinity, per reference tier
        self.brand_pos: dict[int, np.ndarray] = {}

    def finish(self, rng: np.random.Generator, leaf_of_key: dict[str, int]) -> None:
        n = len(self.items)
        ranks = rng.permutation(n)
        pop = 1.0 / (ranks + 1.0) ** _ZIPF_EXPONENT + _POP_FLOOR
        self.tier_w = pop[None, :] * _TIER_AFFINITY[:, np.asarray(self.tiers)]
        brands = np.asarray(self.brands)
        for b in dict.fromkeys(self.brands):  # first-seen order, deterministic
            self.brand_pos[b] = np.flatnonzero(brands == b)
        nxt = self.spec["next"]
        self.next_leaves = np.array([leaf_of_key[k] for k in nxt], dtype=np.int64)
        w = np.array([float(v) for v in nxt.values()])
        self.next_cum = np.cumsum(w / w.sum())


def _pick_value(values: list[str], tier: int, u: float) -> tuple[str, float]:
    """A value from a list ordered entry-level -> high-end, biased by the tier, and its
    position in the list from 0 (entry-level) to 1 (high-end)."""
    u = u**1.7 if tier == 0 else (u ** (1 / 1.7) if tier == 2 else u)
    i = min(int(u * len(values)), len(values) - 1)
    return values[i], i / max(1, len(values) - 1)


def _model_name(brand: str, tier: int, rng: np.random.Generator) -> str:
    words = [w for w in brand.replace("&", " ").split() if w[0].isalpha()]
    prefix = "".join(w[0] for w in words[:2]).upper()
    lo, hi = _MODEL_NUMBERS[tier]
    return f"{prefix}-{int(rng.integers(lo, hi)) // 10 * 10}"


def _price(spec: dict[str, Any], factor: float, rng: np.random.Generator) -> float:
    median, lo, hi = (float(x) for x in spec["price"])
    p = median * factor * float(np.exp(rng.normal(0.0, 0.22)))
    p = min(max(p, lo + 1.0), hi - 1.0)
    # Shop-style prices: 749.99, 12.49
    return round(p) - 0.01 if p >= 20 else round(p * 2) / 2 - 0.01


def _in_sentence(key: str, value: str, keep_case: list[str]) -> str:
    """An attribute value as it reads inside a sentence: "Rope Tug" -> "rope tug"."""
    if key in keep_case or any(c.isdigit() for c in value):
        return value
    if any(sum(c.isupper() for c in w) > 1 for w in value.split()):
        return value  # APS-C, USB, Kenya AA
    return value.lower()


def _describe(
    spec: dict[str, Any], fields: dict[str, str], tier_phrases: list[str], rng: np.random.Generator
) -> str:
    templates = spec["desc"]
    n_own = 1 + int(rng.random() < 0.6)
    order = rng.permutation(len(templates))[:n_own]
    sentences = [templates[i].format(**fields) for i in sorted(order)]
    if rng.random() < 0.6:
        sentences.append(tier_phrases[int(rng.integers(len(tier_phrases)))])
    return " ".join(s[0].upper() + s[1:] for s in sentences)


def _make_catalog(
    config: DemoShopConfig, rng: np.random.Generator
) -> tuple[list[Item], list[_Leaf], list[int], list[int], list[int]]:
    """The items in catalog order, the leaves, and each item's leaf, tier and brand id."""
    vocab = load_vocab()
    brand_ids = {name: i for i, name in enumerate(vocab["brands"])}
    tier_of_brand = {name: TIERS.index(t) for name, t in vocab["brands"].items()}
    specs = vocab["categories"]
    weights = np.array([float(s["weight"]) for s in specs])
    counts = np.maximum(3, np.rint(config.n_items * weights / weights.sum())).astype(int)
    leaves = [_Leaf(s) for s in specs]
    seen_titles: set[str] = set()
    drafts: list[tuple[dict[str, Any], int, int, int]] = []  # (Item fields, leaf, tier, brand)
    for li, spec in enumerate(specs):
        brands = spec["brands"]
        for k in range(int(counts[li])):
            brand = brands[k] if k < len(brands) else brands[int(rng.integers(len(brands)))]
            tier = tier_of_brand[brand]
            if rng.random() < 0.2:  # a brand's line reaches into the neighbouring tier
                tier = min(2, max(0, tier + (1 if rng.random() < 0.5 else -1)))
            for _attempt in range(8):
                picked = {a: _pick_value(v, tier, rng.random()) for a, v in spec["attrs"].items()}
                attrs = {a: v for a, (v, _) in picked.items()}
                model = _model_name(brand, tier, rng)
                template = spec["title"][int(rng.integers(len(spec["title"])))]
                title = template.format(brand=brand, model=model, **attrs)
                if title not in seen_titles:
                    break
            base, j = title, 2
            while title in seen_titles:
                title, j = f"{base} ({j})", j + 1
            seen_titles.add(title)
            attributes = {"tier": TIERS[tier]}
            if "{model}" in template:
                attributes["model"] = model
            attributes.update(attrs)
            text = {"brand": brand, "model": model}
            text.update({a: _in_sentence(a, v, vocab["keep_case"]) for a, v in attrs.items()})
            tier_info = vocab["tiers"][TIERS[tier]]
            spec_level = sum(x for _, x in picked.values()) / len(picked)
            factor = float(tier_info["price_factor"]) * (0.8 + 0.45 * spec_level)
            fields = {
                "title": title,
                "description": _describe(spec, text, tier_info["phrases"], rng),
                "category": leaves[li].path,
                "brand": brand,
                "price": _price(spec, factor, rng),
                "attributes": attributes,
            }
            drafts.append((fields, li, tier, brand_ids[brand]))

    order = rng.permutation(len(drafts))  # catalog order mixes the categories
    width = max(5, len(str(len(drafts))))
    items: list[Item] = []
    item_leaf, item_tier, item_brand = [], [], []
    for pos, d in enumerate(order):
        fields, li, tier, bid = drafts[int(d)]
        items.append(Item(item_id=f"P{pos + 1:0{width}d}", **fields))
        leaves[li].items.append(pos)
        leaves[li].tiers.append(tier)
        leaves[li].brands.append(bid)
        item_leaf.append(li)
        item_tier.append(tier)
        item_brand.append(bid)
    leaf_of_key = {s["key"]: i for i, s in enumerate(specs)}
    for leaf in leaves:
        leaf.finish(rng, leaf_of_key)
    return items, leaves, item_leaf, item_tier, item_brand


def _tables(leaves: list[_Leaf], item_leaf: list[int], item_tier: list[int],
            item_brand: list[int]) -> ShopTables:
    vocab = load_vocab()
    brand_ids = {name: i for i, name in enumerate(vocab["brands"])}
    top_names = list(vocab["top_level_weights"])
    top_w = np.array([float(vocab["top_level_weights"][t]) for t in top_names])
    leaf_w = np.array([float(leaf.spec["weight"]) for leaf in leaves])
    tops_of_leaf = np.array([top_names.index(leaf.path[0]) for leaf in leaves])
    leaf_of_top = np.zeros((len(top_names), len(leaves)))
    for t in range(len(top_names)):
        in_top = tops_of_leaf == t
        leaf_of_top[t, in_top] = leaf_w[in_top] / leaf_w[in_top].sum()
    width = max(len(leaf.next_leaves) for leaf in leaves)
    next_leaf = np.zeros((len(leaves), width), dtype=np.int64)
    next_cum = np.ones((len(leaves), width))
    n_brands = max(len(leaf.spec["brands"]) for leaf in leaves)
    leaf_brands = np.zeros((len(leaves), n_brands), dtype=np.int64)
    for i, leaf in enumerate(leaves):
        k = len(leaf.next_leaves)
        next_leaf[i, :k], next_leaf[i, k:] = leaf.next_leaves, leaf.next_leaves[-1]
        next_cum[i, :k] = leaf.next_cum
        names = leaf.spec["brands"]
        leaf_brands[i, : len(names)] = [brand_ids[b] for b in names]
    flat = np.concatenate([np.asarray(leaf.items, dtype=np.int64) for leaf in leaves])
    prior = np.concatenate([leaf.tier_w for leaf in leaves], axis=1)  # (3, items) by leaf
    return ShopTables(
        flat=flat,
        start=np.concatenate([[0], np.cumsum([len(leaf.items) for leaf in leaves])]),
        cum=np.cumsum(prior, axis=1),
        item_leaf=np.asarray(item_leaf), item_tier=np.asarray(item_tier),
        item_brand=np.asarray(item_brand),
        repeat=np.array([leaf.repeat for leaf in leaves]),
        next_leaf=next_leaf, next_cum=next_cum,
        leaf_of_top=leaf_of_top, top_w=top_w / top_w.sum(),
        leaf_brands=leaf_brands,
        n_leaf_brands=np.array([len(leaf.spec["brands"]) for leaf in leaves]),
        pop_order=flat[np.argsort(-prior[1], kind="stable")],
    )


def generate_demo_shop(config: DemoShopConfig | None = None) -> Dataset:
    """Generate the demo shop for ``config`` (default: the built-in ``demo-shop``)."""
    config = config or DemoShopConfig()
    rng = np.random.default_rng(config.seed)
    items, leaves, item_leaf, item_tier, item_brand = _make_catalog(config, rng)
    drawn = draw_histories(rng, _tables(leaves, item_leaf, item_tier, item_brand),
                           config.n_users, config.min_history, config.max_history)
    item_ids = [it.item_id for it in items]
    user_ids = [str(u) for u in range(1, config.n_users + 1)]
    ratings = (None, 1.0, 2.0, 3.0, 4.0, 5.0)  # shared: one float object per value
    interactions: list[Interaction] = []
    for lo in range(0, len(drawn.item), _ROWS):  # a slice at a time: .tolist() copies are big
        part = slice(lo, lo + _ROWS)
        interactions.extend(
            Interaction(user_ids[u], item_ids[i], float(t), ratings[r], "purchase")
            for u, i, t, r in zip(drawn.user[part].tolist(), drawn.item[part].tolist(),
                                  drawn.timestamp[part].tolist(), drawn.rating[part].tolist(),
                                  strict=True)
        )
    return Dataset(_dataset_name(config), items, interactions, has_timestamps=True)
