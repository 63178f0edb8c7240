"""Leave-one-out by time: last interaction = test, second last = validation, rest = training.

Users with fewer than three interactions cannot give a training item, a validation item and a
test item; their interactions all go to training and they are not evaluated (the count is
reported as ``n_train_only_users``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recagent.catalog.model import Dataset, Interaction

__all__ = ["LeaveOneOutSplit", "leave_one_out"]


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
    users = [u for u, seq in sequences.items() if len(seq) >= 3]
    return LeaveOneOutSplit(
        dataset=dataset,
        users=users,
        sequences=sequences,
        n_train_only_users=len(sequences) - len(users),
    )
