"""Leave-one-out by time: last interaction = test, second last = validation, rest = training;
and its cold-start variant, whose training histories never contain a held-out item.

Users with fewer than three interactions cannot give a training item, a validation item and a
test item; their interactions all go to training and they are not evaluated (the count is
reported as ``n_train_only_users``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recagent.catalog.model import Dataset, Interaction

__all__ = [
    "MIN_HISTORY", "ColdStartSplit", "LeaveOneOutSplit", "cold_start_split", "hold_out_items",
    "leave_one_out", "sample_cases",
]

# The shortest history that gives a training, a validation and a test item.
MIN_HISTORY = 3


@dataclass(frozen=True)
class LeaveOneOutSplit:
    dataset: Dataset
    users: list[str]  # evaluated users, in dataset order
    sequences: dict[str, list[Interaction]]  # every user's full history, oldest first
    n_train_only_users: int

    @property
    def train(self) -> list[list[Interaction]]:
        """Training histories of ALL users: validation and test items removed."""
        evaluated = set(self.users)
        return [
            seq[:-2] if user in evaluated else list(seq) for user, seq in self.sequences.items()
        ]

    def cases(self, stage: str) -> tuple[list[str], list[Sequence[Interaction]], list[str]]:
        """(users, input histories, target item ids) for ``stage`` 'valid' or 'test'.

        The test input is everything before the test item (training + validation item);
        the validation input is the training part.
        """
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")
        cut = 1 if stage == "test" else 2
        histories = [self.sequences[u][:-cut] for u in self.users]
        targets = [self.sequences[u][-cut].item_id for u in self.users]
        return list(self.users), histories, targets


def leave_one_out(dataset: Dataset) -> LeaveOneOutSplit:
    sequences = dataset.histories
    users = [u for u, seq in sequences.items() if len(seq) >= MIN_HISTORY]
    return LeaveOneOutSplit(
        dataset=dataset,
        users=users,
        sequences=sequences,
        n_train_only_users=len(sequences) - len(users),
    )


def sample_cases(n_cases: int, max_cases: int | None, seed: int = 0) -> np.ndarray | None:
    """Positions of a seeded sample of ``max_cases`` of ``n_cases`` cases, in their order;
    None when every case is kept (``max_cases`` None or at least ``n_cases``)."""
    if max_cases is None or n_cases <= max_cases:
        return None
    if max_cases < 1:
        raise ValueError(f"max_cases must be >= 1, not {max_cases}")
    return np.sort(np.random.default_rng(seed).choice(n_cases, max_cases, replace=False))


def hold_out_items(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> frozenset[str]:
    """A seeded random ``fraction`` of the catalog's item ids (at least one item)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    n = max(1, round(fraction * len(dataset.item_ids)))
    picked = np.random.default_rng(seed).choice(len(dataset.item_ids), size=n, replace=False)
    return frozenset(dataset.item_ids[i] for i in picked)


@dataclass(frozen=True)
class ColdStartSplit(LeaveOneOutSplit):
    """Leave-one-out whose training histories never contain a held-out (cold) item."""

    cold_items: frozenset[str] = field(default_factory=frozenset)

    @property
    def train(self) -> list[list[Interaction]]:
        return [[x for x in h if x.item_id not in self.cold_items] for h in super().train]

    def cold_targets(self, stage: str = "test") -> list[str]:
        """The targets of ``stage`` that are cold items."""
        return [t for t in self.cases(stage)[2] if t in self.cold_items]


def cold_start_split(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> ColdStartSplit:
    base = leave_one_out(dataset)
    return ColdStartSplit(
        dataset=base.dataset, users=base.users, sequences=base.sequences,
        n_train_only_users=base.n_train_only_users,
        cold_items=hold_out_items(dataset, fraction, seed),
    )
