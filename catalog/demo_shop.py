"""The built-in demo shop: a deterministic, realistic product catalog with user histories.

It is the embedded default dataset of the demo, the chat and the tests. The vocabulary
(categories, brands, attribute values, title and description templates, price ranges and
the complement chains between categories) lives in ``demo_shop_vocab.json`` next to this
module; this module only draws from it with ``numpy.random.default_rng(config.seed)``.

How histories are drawn, so that the ORDER of a history carries signal that plain text
similarity cannot see:

* Every user has latent tastes: 2-4 favourite top-level categories (Dirichlet weights), a
  preferred price tier (budget / mid / premium) and 1-3 favourite brands.
* The first purchase is taste-driven. Each next purchase is, with probability
  ``P_COMPLEMENT``, a complement of the previous item's category (camera -> memory card ->
  tripod -> camera bag, coffee maker -> beans -> grinder, ...), preferring the previous
  item's brand and price tier; otherwise it is another taste-driven item: a favourite
  category, weighted by tier match, brand affinity and a Zipf-like popularity prior.
* A user never buys the same item twice, and rarely a second camera or tent (each category's
  ``repeat`` in the vocabulary; consumables such as coffee beans repeat freely). Complement purchases follow sooner (hours to
  days) than unrelated ones (days to weeks). About 60% of purchases are rated, mostly
  highly, and lower when the item's tier is far from the user's preferred tier.

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

from recagent.catalog.model import Dataset, Interaction, Item

DEMO_SHOP_NAME = "demo-shop"
VOCAB_PATH = Path(__file__).with_name("demo_shop_vocab.json")

TIERS = ("budget", "mid", "premium")
P_COMPLEMENT = 0.55  # chance that the next purchase is a complement of the previous one
RATED_SHARE = 0.6  # share of purchases that carry a 1-5 rating
_TIER_SHARE = (0.35, 0.45, 0.20)  # users' preferred tiers
# Affinity of an item's tier to a reference tier (the user's preference, or the tier of the
# item just bought): same tier 3, adjacent 1, opposite 0.25.
_TIER_AFFINITY = np.array([[3.0, 1.0, 0.25], [1.0, 3.0, 1.0], [0.25, 1.0, 3.0]])
_SAME_BRAND_BOOST = 5.0  # complement of the same brand as the item just bought
_FAV_BRAND_BOOST = 3.0  # one of the user's favourite brands
_ZIPF_EXPONENT = 0.9  # popularity of the item ranked r in its category: 1 / r**0.9 + floor
_POP_FLOOR = 0.02  # keeps the long tail reachable
_RATING_P = (0.04, 0.06, 0.13, 0.32, 0.45)  # P(rating = 1..5) before the tier penalty
_MODEL_NUMBERS = ((100, 400), (400, 700), (700, 1000))  # model numbers by tier
_START_EPOCH = 1_672_531_200  # 2023-01-01T00:00:00Z; first purchases spread over 2 years
_START_SPAN_S = 2 * 365 * 86_400
_DAY = 86_400.0


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


def _pick(
    leaf: _Leaf,
    ref_tier: int,
    same_brand: int | None,
    fav_brands: list[int],
    owned: dict[int, list[int]],
    leaf_index: int,
    u: float,
) -> int:
    """A local index in ``leaf`` drawn by weight, or -1 when every item there is owned."""
    w = leaf.tier_w[ref_tier].copy()
    if same_brand is not None:
        pos = leaf.brand_pos.get(same_brand)
        if pos is not None:
            w[pos] *= _SAME_BRAND_BOOST
    for b in fav_brands:
        pos = leaf.brand_pos.get(b)
        if pos is not None:
            w[pos] *= _FAV_BRAND_BOOST
    mine = owned.get(leaf_index)
    if mine:
        w[mine] = 0.0
    cum = np.cumsum(w)
    total = cum[-1]
    if total <= 0.0:
        return -1
    j = min(int(np.searchsorted(cum, u * total, side="right")), len(w) - 1)
    if w[j] == 0.0:  # u * total rounded onto the very top
        j = int(np.flatnonzero(w)[-1])
    return j


def _user_tastes(
    rng: np.random.Generator,
    leaves: list[_Leaf],
    top_w: np.ndarray,
    tops_of_leaf: np.ndarray,
    leaf_w: np.ndarray,
    brand_ids: dict[str, int],
) -> tuple[np.ndarray, int, list[int]]:
    """Cumulative leaf distribution, preferred tier and favourite brand ids of one user."""
    n_tops = len(top_w)
    k = int(rng.integers(2, 5))
    tops = rng.choice(n_tops, size=k, replace=False, p=top_w)
    share = rng.dirichlet(np.ones(k))
    leaf_p = np.zeros(len(leaves))
    for t, s in zip(tops, share, strict=True):
        in_top = tops_of_leaf == t
        leaf_p[in_top] += s * leaf_w[in_top] / leaf_w[in_top].sum()
    leaf_cum = np.cumsum(leaf_p)
    leaf_cum /= leaf_cum[-1]
    pref = int(rng.choice(3, p=_TIER_SHARE))
    favs: list[int] = []
    for _ in range(int(rng.integers(1, 4))):
        li = min(int(np.searchsorted(leaf_cum, rng.random(), side="right")), len(leaves) - 1)
        names = leaves[li].spec["brands"]
        b = brand_ids[names[int(rng.integers(len(names)))]]
        if b not in favs:
            favs.append(b)
    return leaf_cum, pref, favs


def generate_demo_shop(config: DemoShopConfig | None = None) -> Dataset:
    """Generate the demo shop for ``config`` (default: the built-in ``demo-shop``)."""
    config = config or DemoShopConfig()
    rng = np.random.default_rng(config.seed)
    vocab = load_vocab()
    items, leaves, item_leaf, item_tier, item_brand = _make_catalog(config, rng)
    item_ids = [it.item_id for it in items]
    item_local = [0] * len(items)
    for leaf in leaves:
        for j, pos in enumerate(leaf.items):
            item_local[pos] = j
    brand_ids = {name: i for i, name in enumerate(vocab["brands"])}
    top_names = list(vocab["top_level_weights"])
    top_w = np.array([float(vocab["top_level_weights"][t]) for t in top_names])
    top_w /= top_w.sum()
    tops_of_leaf = np.array([top_names.index(leaf.path[0]) for leaf in leaves])
    leaf_w = np.array([float(leaf.spec["weight"]) for leaf in leaves])
    pop_order = np.argsort(-np.concatenate([lf.tier_w[1] for lf in leaves]), kind="stable")
    pop_order = np.concatenate([np.asarray(lf.items) for lf in leaves])[pop_order]
    n_leaves = len(leaves)
    extra_mean = max(1.0, 0.25 * (config.max_history - config.min_history))

    interactions: list[Interaction] = []
    for user in range(1, config.n_users + 1):
        uid = str(user)
        leaf_cum, pref, favs = _user_tastes(rng, leaves, top_w, tops_of_leaf, leaf_w, brand_ids)
        length = config.min_history + int(rng.geometric(1.0 / (extra_mean + 1.0))) - 1
        length = min(length, config.max_history)
        draws = rng.random((length, 4))
        gap_z = rng.standard_normal(length)
        rated = rng.random(length) < RATED_SHARE
        base_rating = rng.choice(5, size=length, p=_RATING_P) + 1
        t = float(_START_EPOCH + int(rng.integers(_START_SPAN_S)))
        owned: dict[int, list[int]] = {}
        owned_items: set[int] = set()

        def wants_more(li: int, owned: dict[int, list[int]] = owned) -> bool:
            """Whether the user buys (again) in leaf ``li``: durable goods rarely twice."""
            n = len(owned.get(li, ()))
            return n == 0 or float(rng.random()) < leaves[li].repeat ** n

        prev = -1
        for s in range(length):
            u_kind, u_leaf, u_item, u_rate = draws[s]
            item, complement = -1, False
            if prev >= 0 and u_kind < P_COMPLEMENT:
                pl = leaves[item_leaf[prev]]
                u = u_leaf
                for _attempt in range(3):
                    c = min(
                        int(np.searchsorted(pl.next_cum, u, side="right")), len(pl.next_leaves) - 1
                    )
                    li = int(pl.next_leaves[c])
                    if wants_more(li):
                        j = _pick(
                            leaves[li], item_tier[prev], item_brand[prev], favs, owned, li, u_item
                        )
                        if j >= 0:
                            item, complement = leaves[li].items[j], True
                            break
                    u = float(rng.random())
            u = u_leaf
            for attempt in range(8):  # taste-driven purchase
                if item >= 0:
                    break
                li = min(int(np.searchsorted(leaf_cum, u, side="right")), n_leaves - 1)
                if attempt == 7 or wants_more(li):
                    j = _pick(leaves[li], pref, None, favs, owned, li, u_item)
                    if j >= 0:
                        item = leaves[li].items[j]
                        break
                u = float(rng.random())
            if item < 0:  # every item of the user's favourite categories is owned
                item = next(int(i) for i in pop_order if int(i) not in owned_items)
            owned.setdefault(item_leaf[item], []).append(item_local[item])
            owned_items.add(item)
            if s > 0:
                median_gap = 2.0 * _DAY if complement else 8.0 * _DAY
                sigma = 0.9 if complement else 1.0
                gap = median_gap * float(np.exp(sigma * gap_z[s]))
                t += float(int(min(max(gap, 3600.0), 60 * _DAY)))
            rating = None
            if rated[s]:
                dist = abs(item_tier[item] - pref)
                penalty = int(u_rate < 0.3) + int(dist == 2 and u_rate < 0.7) if dist else 0
                rating = float(max(1, int(base_rating[s]) - penalty))
            interactions.append(Interaction(uid, item_ids[item], t, rating, "purchase"))
            prev = item

    return Dataset(_dataset_name(config), items, interactions, has_timestamps=True)
