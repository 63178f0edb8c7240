"""The tiny co-purchase catalog the peer-adapter tests train outside libraries on."""

from __future__ import annotations

import numpy as np

from recagent.catalog.model import Dataset, Interaction, Item

# Catalog order deliberately not alphabetical: columns must follow Dataset.item_ids.
ITEM_IDS = ["zeta", "beta", "alpha", "mu", "kappa", "omega", "delta", "sigma"]


def co_bought_dataset(*, tied_timestamps: bool = False) -> Dataset:
    """Most users buy "alpha" then "beta" (every fifth the reverse), then two noise items.
    ``tied_timestamps``: consecutive pairs share a timestamp, so the order must come from the
    history's order, not from sorting by time."""
    rng = np.random.default_rng(0)
    sequences: list[list[str]] = []
    for u in range(40):
        noise = [
            str(x) for x in rng.choice(["mu", "kappa", "omega", "delta", "sigma"], 2, replace=False)
        ]
        sequences.append(["beta", "alpha", *noise] if u % 5 == 0 else ["alpha", "beta", *noise])
    sequences += [["zeta", "mu", "kappa"], ["sigma", "omega", "delta"]]
    interactions = [
        Interaction(f"u{u}", item, float(t // 2 if tied_timestamps else t))
        for u, seq in enumerate(sequences)
        for t, item in enumerate(seq)
    ]
    return Dataset("tiny", [Item(i, i.title()) for i in ITEM_IDS], interactions)
