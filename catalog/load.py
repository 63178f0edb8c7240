"""One entry point for every dataset source: detect a folder's layout and load it.

* ``"movielens"``: ``u.data`` + ``u.item`` (MovieLens 100K, GroupLens layout);
* ``"generic"``: ``items.jsonl`` (+ ``interactions.csv`` / ``.jsonl``), see
  :mod:`recagent.catalog.generic`;
* ``"recbole"``: RecBole atomic files ``*.inter`` / ``*.text`` / ``*.item``.

``load_dataset(None)`` returns the built-in demo shop.
"""

from __future__ import annotations

from pathlib import Path

from recagent.catalog.errors import DataError
from recagent.catalog.model import Dataset

FORMATS = ("movielens", "recbole", "generic")

_LOOKED_FOR = (
    "u.data + u.item (MovieLens 100K), "
    "items.jsonl with interactions.csv or interactions.jsonl (generic format), "
    "or RecBole atomic files *.inter / *.text / *.item"
)


def _folder(path: Path | str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"dataset folder not found (looked for {_LOOKED_FOR})", path)
    if path.is_file():
        path = path.parent  # e.g. .../ml-100k/u.data names its folder
    return path


def detect_format(path: Path | str) -> str:
    """The layout of a dataset folder: "movielens", "recbole" or "generic"."""
    folder = _folder(path)
    if (folder / "u.data").is_file() and (folder / "u.item").is_file():
        return "movielens"
    if (folder / "items.jsonl").is_file():
        return "generic"
    for f in folder.iterdir():
        if f.is_file() and f.suffix in (".inter", ".text", ".item") and f.stem:
            return "recbole"
    raise DataError(f"no known dataset layout: looked for {_LOOKED_FOR}", folder)


def load_dataset(path: Path | str | None = None) -> Dataset:
    """Load the dataset at ``path`` in whichever known layout it has; None -> the demo shop."""
    if path is None:
        from recagent.catalog.demo_shop import generate_demo_shop

        return generate_demo_shop()
    folder = _folder(path)
    fmt = detect_format(folder)
    if fmt == "movielens":
        from recagent.catalog.movielens import load_movielens

        return load_movielens(folder)
    if fmt == "generic":
        from recagent.catalog.generic import load_generic

        return load_generic(folder)
    from recagent.catalog.recbole import load_recbole

    return load_recbole(folder)
