"""The demo shop's purchase histories, drawn for many users at once (numpy, no per-user loop).

Users are drawn in chunks of ``CHUNK``; within a chunk every user takes purchase ``s`` at the
same time, so the cost is a few array operations per (chunk, step): 100,000 users took 10 s
on one shared core, where the per-user loop before it took about 80 s.

What a history looks like (see :mod:`recagent.catalog.demo_shop`):

* Every user has latent tastes: 2-4 favourite top-level categories (Dirichlet shares), a
  preferred price tier and 1-3 favourite brands.
* Each purchase after the first is, with probability ``P_COMPLEMENT``, a complement of the
  previous item's category, drawn with the previous item's price tier as reference and its
  brand boosted; otherwise (or when no complement is wanted) a taste-driven item: a
  favourite category and the user's preferred tier. Within a category an item is drawn from
  its popularity x tier prior (``CANDIDATES`` draws), re-weighted by the brand boosts, with
  the items the user owns struck out (sampling-importance-resampling: exact in the limit of
  many draws, close at eight).
* A user never buys an item twice and rarely a second item of a durable category (each
  category's ``repeat``); complements follow sooner than unrelated purchases; about 60% of
  purchases are rated, lower when the item's tier is far from the user's.

The result is columnar: a user's row index, item positions, timestamps and ratings, in user
order and oldest first within a user. Deterministic for a given generator state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CHUNK", "P_COMPLEMENT", "DrawnHistories", "ShopTables", "draw_histories"]

CHUNK = 32_768  # users drawn together
CANDIDATES = 8  # prior draws per pick, re-weighted by brand and ownership
P_COMPLEMENT = 0.55  # chance that the next purchase is a complement of the previous one
RATED_SHARE = 0.6  # share of purchases that carry a 1-5 rating
_TIER_SHARE = (0.35, 0.45, 0.20)  # users' preferred tiers
_SAME_BRAND_BOOST = 5.0  # complement of the same brand as the item just bought
_FAV_BRAND_BOOST = 3.0  # one of the user's favourite brands
_RATING_P = (0.04, 0.06, 0.13, 0.32, 0.45)  # P(rating = 1..5) before the tier penalty
_START_EPOCH = 1_672_531_200  # 2023-01-01T00:00:00Z; first purchases spread over 2 years
_START_SPAN_S = 2 * 365 * 86_400
_DAY = 86_400.0


@dataclass(frozen=True)
class ShopTables:
    """The catalog as flat arrays. Items are listed leaf by leaf in ``flat`` (leaf ``l`` owns
    ``flat[start[l]:start[l + 1]]``); ``cum[t]`` is the running sum, over ``flat``, of each
    item's popularity x affinity to reference tier ``t``."""

    flat: np.ndarray  # (n_items,) catalog positions, grouped by leaf
    start: np.ndarray  # (n_leaves + 1,)
    cum: np.ndarray  # (3, n_items)
    item_leaf: np.ndarray  # (n_items,) by catalog position
    item_tier: np.ndarray
    item_brand: np.ndarray
    repeat: np.ndarray  # (n_leaves,) chance of buying again in a leaf, per item owned there
    next_leaf: np.ndarray  # (n_leaves, width) complement leaves, padded with the last one
    next_cum: np.ndarray  # (n_leaves, width) their cumulative probabilities, padded with 1
    leaf_of_top: np.ndarray  # (n_tops, n_leaves) each top-level category's leaf shares
    top_w: np.ndarray  # (n_tops,) top-level weights, summing to 1
    leaf_brands: np.ndarray  # (n_leaves, width) brand ids named by each leaf, padded
    n_leaf_brands: np.ndarray  # (n_leaves,)
    pop_order: np.ndarray  # catalog positions, most popular (mid-tier prior) first

    @property
    def n_leaves(self) -> int:
        return len(self.start) - 1

    def leaf_base_mass(self, tier: np.ndarray, leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prior mass before leaf ``leaf`` in ``cum[tier]``, and the leaf's own mass."""
        lo = self.start[leaf]
        hi = self.start[leaf + 1] - 1
        base = np.where(lo > 0, self.cum[tier, np.maximum(lo - 1, 0)], 0.0)
        return base, self.cum[tier, hi] - base


@dataclass(frozen=True)
class DrawnHistories:
    """Columnar histories: row ``r`` is user ``user[r]`` (0-based, in order) buying catalog
    position ``item[r]`` at ``timestamp[r]`` (seconds), rated ``rating[r]`` (0 = unrated)."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    timestamp: np.ndarray  # int64
    rating: np.ndarray  # int8


def draw_histories(
    rng: np.random.Generator, tables: ShopTables, n_users: int, min_history: int,
    max_history: int,
) -> DrawnHistories:
    """Histories of ``n_users`` users of ``min_history`` to ``max_history`` purchases."""
    parts = []
    for lo in range(0, n_users, CHUNK):
        n = min(CHUNK, n_users - lo)
        part = _draw_chunk(rng, tables, n, min_history, max_history)
        parts.append(DrawnHistories(part.user + lo, part.item, part.timestamp, part.rating))
    return DrawnHistories(*(np.concatenate([getattr(p, f) for p in parts])
                            for f in ("user", "item", "timestamp", "rating")))


def _row_pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row, the first column whose cumulative probability exceeds ``u`` (row's draw)."""
    return np.minimum((cum <= u[:, None]).sum(1), cum.shape[1] - 1)


def _tastes(rng: np.random.Generator, t: ShopTables, n: int):
    """Each user's cumulative leaf distribution, preferred tier and favourite brands."""
    n_tops = len(t.top_w)
    k = rng.integers(2, 5, size=n)
    # Gumbel top-k: k distinct top-level categories drawn by weight, without replacement.
    keys = np.log(t.top_w)[None, :] + rng.gumbel(size=(n, n_tops))
    chosen = np.argsort(-keys, axis=1, kind="stable")[:, :4]
    share = rng.exponential(size=(n, 4)) * (np.arange(4)[None, :] < k[:, None])  # Dirichlet(1)
    share /= share.sum(1, keepdims=True)
    top_share = np.zeros((n, n_tops))
    np.put_along_axis(top_share, chosen, share, axis=1)
    leaf_cum = np.cumsum(top_share @ t.leaf_of_top, axis=1)
    leaf_cum /= leaf_cum[:, -1:]
    pref = np.searchsorted(np.cumsum(_TIER_SHARE), rng.random(n), side="right").clip(0, 2)
    n_favs = rng.integers(1, 4, size=n)
    favs = np.full((n, 3), -1, dtype=np.int64)
    for f in range(3):
        leaf = _row_pick(leaf_cum, rng.random(n))
        j = (rng.random(n) * t.n_leaf_brands[leaf]).astype(np.int64)
        brand = t.leaf_brands[leaf, j]
        fresh = (f < n_favs) & ~(favs[:, :f] == brand[:, None]).any(1)
        favs[:, f] = np.where(fresh, brand, -1)
    return leaf_cum, pref, favs


def _pick_items(rng, t: ShopTables, leaf, ref_tier, same_brand, favs, owned) -> np.ndarray:
    """One item per row from leaf ``leaf``, or -1 where every candidate drawn is owned.

    ``CANDIDATES`` draws from the leaf's popularity x tier prior; each is weighted by the
    brand boosts (``same_brand``, -1 for none; ``favs``) and 0 when in ``owned`` (rows' items
    so far, -1 padded); one of them is kept by weight."""
    n = len(leaf)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    base, mass = t.leaf_base_mass(ref_tier, leaf)
    x = base[:, None] + rng.random((n, CANDIDATES)) * mass[:, None]
    j = np.empty((n, CANDIDATES), dtype=np.int64)
    for tier in range(3):
        rows = ref_tier == tier
        j[rows] = np.searchsorted(t.cum[tier], x[rows], side="right")
    j = j.clip(t.start[leaf][:, None], t.start[leaf + 1][:, None] - 1)
    cand = t.flat[j]
    brand = t.item_brand[cand]
    w = np.ones((n, CANDIDATES))
    w[brand == same_brand[:, None]] *= _SAME_BRAND_BOOST
    w[(brand[:, :, None] == favs[:, None, :]).any(-1)] *= _FAV_BRAND_BOOST
    if owned.shape[1]:
        w[(cand[:, :, None] == owned[:, None, :]).any(-1)] = 0.0
    cw = np.cumsum(w, axis=1)
    total = cw[:, -1]
    k = np.minimum((cw <= (rng.random(n) * total)[:, None]).sum(1), CANDIDATES - 1)
    return np.where(total > 0, cand[np.arange(n), k], -1)


def _draw_chunk(rng: np.random.Generator, t: ShopTables, n: int, min_history: int,
                max_history: int) -> DrawnHistories:
    extra_mean = max(1.0, 0.25 * (max_history - min_history))
    lengths = np.minimum(min_history + rng.geometric(1.0 / (extra_mean + 1.0), size=n) - 1,
                         max_history)
    leaf_cum, pref, favs = _tastes(rng, t, n)
    steps = int(lengths.max())
    hist = np.full((n, steps), -1, dtype=np.int64)
    complement = np.zeros((n, steps), dtype=bool)
    counts = np.zeros((n, t.n_leaves), dtype=np.int64)  # items owned per leaf

    def wants_more(users: np.ndarray, leaf: np.ndarray) -> np.ndarray:
        """Whether each user buys (again) in its leaf: durable goods rarely twice."""
        c = counts[users, leaf]
        return (c == 0) | (rng.random(len(users)) < t.repeat[leaf] ** c)

    for s in range(steps):
        act = np.flatnonzero(lengths > s)
        item = np.full(len(act), -1, dtype=np.int64)
        owned = hist[act, :s]
        if s > 0:
            prev = hist[act, s - 1]
            todo = np.flatnonzero(rng.random(len(act)) < P_COMPLEMENT)
            for _attempt in range(3):
                pl = t.item_leaf[prev[todo]]
                c = _row_pick(t.next_cum[pl], rng.random(len(todo)))
                leaf = t.next_leaf[pl, c]
                ok = wants_more(act[todo], leaf)
                rows, leaf = todo[ok], leaf[ok]
                p = prev[rows]
                item[rows] = _pick_items(rng, t, leaf, t.item_tier[p], t.item_brand[p],
                                         favs[act[rows]], owned[rows])
                todo = todo[item[todo] < 0]
            complement[act, s] = item >= 0
        for attempt in range(8):  # taste-driven purchases
            todo = np.flatnonzero(item < 0)
            if len(todo) == 0:
                break
            leaf = _row_pick(leaf_cum[act[todo]], rng.random(len(todo)))
            ok = wants_more(act[todo], leaf) | (attempt == 7)
            rows, leaf = todo[ok], leaf[ok]
            item[rows] = _pick_items(rng, t, leaf, pref[act[rows]], np.full(len(rows), -1),
                                     favs[act[rows]], owned[rows])
        for r in np.flatnonzero(item < 0):  # the favourite categories' draws are all owned
            mine = set(owned[r].tolist())
            item[r] = next(int(i) for i in t.pop_order if int(i) not in mine)
        hist[act, s] = item
        np.add.at(counts, (act, t.item_leaf[item]), 1)

    valid = np.arange(steps)[None, :] < lengths[:, None]
    median_gap = np.where(complement, 2.0 * _DAY, 8.0 * _DAY)
    sigma = np.where(complement, 0.9, 1.0)
    gap = median_gap * np.exp(sigma * rng.standard_normal((n, steps)))
    gap = np.floor(np.clip(gap, 3600.0, 60 * _DAY)).astype(np.int64)
    gap[:, 0] = _START_EPOCH + rng.integers(_START_SPAN_S, size=n)
    stamps = np.cumsum(gap, axis=1)

    rated = rng.random((n, steps)) < RATED_SHARE
    base = np.searchsorted(np.cumsum(_RATING_P), rng.random((n, steps)), side="right")
    base = base.clip(0, 4) + 1
    u = rng.random((n, steps))
    dist = np.abs(t.item_tier[hist.clip(min=0)] - pref[:, None])
    penalty = np.where(dist > 0, (u < 0.3).astype(int) + ((dist == 2) & (u < 0.7)), 0)
    rating = np.where(rated, np.maximum(1, base - penalty), 0)

    users = np.broadcast_to(np.arange(n)[:, None], (n, steps))
    return DrawnHistories(users[valid].astype(np.int32), hist[valid].astype(np.int32),
                          stamps[valid], rating[valid].astype(np.int8))
