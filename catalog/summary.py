"""What a loaded dataset holds, and what in it will change how recagent treats it.

:func:`summarize` backs ``recagent validate DIR``: a folder that loads is valid (loaders report
every malformed line as a :class:`~recagent.catalog.errors.DataError`), and the summary adds
the counts and the notes a user wants before indexing or evaluating it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from recagent.catalog.model import Dataset

__all__ = ["DatasetSummary", "summarize"]


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    items: int
    users: int
    interactions: int
    # Share of items (0..1) that have each optional field.
    coverage: dict[str, float]
    notes: list[str] = field(default_factory=list)


def summarize(dataset: Dataset, *, min_history: int) -> DatasetSummary:
    """Counts, field coverage and notes; ``min_history``: the shortest history an evaluation
    split can hold out from (leave-one-out needs 3: training, validation, test)."""
    items = list(dataset.items.values())
    n = len(items) or 1
    coverage = {
        "description": sum(1 for x in items if x.description) / n,
        "category": sum(1 for x in items if x.category) / n,
        "brand": sum(1 for x in items if x.brand) / n,
        "price": sum(1 for x in items if x.price is not None) / n,
        "attributes": sum(1 for x in items if x.attributes) / n,
    }
    histories = dataset.histories
    notes: list[str] = []
    if not histories:
        notes.append("no interactions: a catalog without users; `index` works, but "
                     "recommending from a user's history, `eval` and `train-retriever` need "
                     "interactions")
    short = sum(1 for seq in histories.values() if len(seq) < min_history)
    if short:
        notes.append(f"{short} of {len(histories)} users have fewer than {min_history} "
                     "interactions: their histories train the models, but `eval` cannot hold "
                     "out a validation and a test item for them")
    used = {x.item_id for x in dataset.interactions}
    unused = sum(1 for item_id in dataset.items if item_id not in used)
    if histories and unused:
        notes.append(f"{unused} items have no interaction: retrieval scores them by their "
                     "text alone (cold start)")
    titles = Counter(x.title_key for x in items)
    shared = sum(c for c in titles.values() if c > 1)
    if shared:
        notes.append(f"{shared} items share a title with another item: each title is shown once")
    if coverage["price"] == 0:
        notes.append("no prices: price constraints (\"under $30\") are left out with a note")
    if not dataset.has_timestamps:
        notes.append("no timestamps: each history is ordered by its position in the file")
    return DatasetSummary(
        name=dataset.name,
        items=len(items),
        users=len(histories),
        interactions=len(dataset.interactions),
        coverage=coverage,
        notes=notes,
    )
