"""Catalog model, loaders for public and user datasets, and the built-in demo shop."""

from recagent.catalog.errors import (
    DataError,
    IndexUnavailable,
    RecAgentError,
    UnknownItemError,
    UnknownUserError,
)
from recagent.catalog.model import Dataset, Interaction, Item

__all__ = [
    "DataError",
    "Dataset",
    "IndexUnavailable",
    "Interaction",
    "Item",
    "RecAgentError",
    "UnknownItemError",
    "UnknownUserError",
]
