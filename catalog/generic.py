"""The generic folder format for bringing your own shop data.

A dataset is a folder with these files (UTF-8; a byte-order mark is tolerated):

``items.jsonl`` (required, at least one item)
    One JSON object per line; blank lines are skipped.

    ==============  =========  ============================================================
    key             required   value
    ==============  =========  ============================================================
    ``item_id``     yes        non-empty string (an integer is accepted and read as its
                               decimal string); unique in the file
    ``title``       yes        non-empty string
    ``description`` no         string (default ``""``)
    ``category``    no         category path from the root: a list of strings
                               (``["Electronics", "Cameras"]``) or one string with ``>``
                               between levels (``"Electronics > Cameras"``)
    ``also_in``     no         list of the other categories the item is in (a film's other
                               genres: ``["Drama", "War"]``); filters count them as its own
    ``brand``       no         string or null (``""`` counts as no brand)
    ``price``       no         JSON number >= 0, or null when unknown (``"12.5"`` is an error)
    ``attributes``  no         object whose values are strings, numbers or booleans; stored
                               as strings (``3`` -> ``"3"``, ``true`` -> ``"true"``); null
                               values are left out
    ==============  =========  ============================================================

    Any other key with a string, number or boolean value is kept as an attribute (as if it
    were inside ``attributes``); other unknown keys are an error. Text fields have length
    limits (``recagent.catalog.limits.FIELD_LIMITS``: title 2,000, description 50,000
    characters, ...); an item over one is an error naming the line.

``interactions.csv`` or ``interactions.jsonl`` (optional; at most one of them)
    Who interacted with what, when. ``interactions.csv`` is comma-separated with a header
    row naming the columns (any order): ``user_id``, ``item_id``, ``timestamp`` (required)
    and ``rating``, ``event`` (optional); other columns are an error. ``interactions.jsonl``
    holds one JSON object per line with the same keys.

    * ``user_id``: non-empty string (JSON: an integer is also accepted);
    * ``item_id``: the id of an item in ``items.jsonl``;
    * ``timestamp``: seconds since the Unix epoch (a number, e.g. ``1700000000`` or
      ``1700000000.5``) or an ISO-8601 date-time string (``2024-03-01T12:30:00+01:00``,
      ``2024-03-01T11:30:00Z``, ``2024-03-01``); without a UTC offset it is read as UTC;
    * ``rating``: a number, or empty / null for none;
    * ``event``: the kind of interaction (``purchase``, ``click``, ``rating``, ...), or
      empty / null for none.

    A user's history is ordered by timestamp; equal timestamps keep the file's order. Without
    an interactions file the dataset is a catalog with no users.

``dataset.json`` (optional)
    ``{"name": "my-shop"}`` names the dataset (default: the folder's name). It may also hold
    ``"has_timestamps": false`` (timestamps are only positions in each user's sequence) and
    ``"user_aliases": {"alias": "user id", ...}`` (other names users can be addressed by).

Every malformed line is reported as an error naming the file and the line; nothing is
skipped silently. ``save_generic`` writes this format (``items.jsonl``, ``interactions.csv``
and ``dataset.json``), and ``load_generic`` reads it back to an equal dataset.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recagent.catalog._files import read_text
from recagent.catalog.errors import DataError
from recagent.catalog.limits import MAX_LINE, item_problem
from recagent.catalog.model import Dataset, Interaction, Item

ITEMS_FILE = "items.jsonl"
INTERACTIONS_CSV = "interactions.csv"
INTERACTIONS_JSONL = "interactions.jsonl"
META_FILE = "dataset.json"

_ITEM_KEYS = ("item_id", "title", "description", "category", "also_in", "brand", "price", "attributes")
_REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
_OPTIONAL_COLUMNS = ("rating", "event")
_CSV_COLUMNS = _REQUIRED_COLUMNS + _OPTIONAL_COLUMNS


# --------------------------------------------------------------------------- reading helpers


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines file."""
    text = read_text(path)
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            raise DataError(f"line is {len(line):,} characters, over the limit of {MAX_LINE:,} "
                            "(see recagent.catalog.limits)", path, lineno)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path, lineno) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
        yield lineno, obj


def _id(value: Any, key: str, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{key!r} must be a string, got {json.dumps(value)}", path, lineno)
    value = str(value)
    if not value:
        raise DataError(f"{key!r} is empty", path, lineno)
    return value


def _number(value: Any, key: str, path: Path, lineno: int) -> float:
    """A finite number from a JSON number or a CSV cell."""
    if isinstance(value, bool):
        raise DataError(f"{key!r} must be a number, got {json.dumps(value)}", path, lineno)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise DataError(f"{key!r} must be a number, got {value!r}", path, lineno) from None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise DataError(f"{key!r} must be a number, got {json.dumps(value)}", path, lineno)
    if not math.isfinite(number):
        raise DataError(f"{key!r} must be a finite number, got {value!r}", path, lineno)
    return number


def _timestamp(value: Any, path: Path, lineno: int) -> float:
    """Epoch seconds from a number, a numeric string or an ISO-8601 date-time string."""
    if isinstance(value, str):
        raw = value.strip()
        try:
            number = float(raw)
        except ValueError:
            try:
                dt = datetime.fromisoformat(raw)
            except ValueError:
                raise DataError(
                    f"timestamp {value!r} is neither epoch seconds nor an ISO-8601 date-time",
                    path, lineno) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
        if not math.isfinite(number):
            raise DataError(f"timestamp {value!r} is not a finite number", path, lineno)
        return number
    if value is None:
        raise DataError("'timestamp' is missing (null)", path, lineno)
    return _number(value, "timestamp", path, lineno)


def _scalar_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _category(value: Any, path: Path, lineno: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(">")] if value.strip() else []
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = [p.strip() for p in value]
    else:
        raise DataError(f"'category' must be a list of strings or an \"A > B\" string, got "
                        f"{json.dumps(value)}", path, lineno)
    if any(not p for p in parts):
        raise DataError(f"'category' has an empty level: {json.dumps(value)}", path, lineno)
    return tuple(parts)


def _also_in(value: Any, path: Path, lineno: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise DataError(f"'also_in' must be a list of non-empty strings, got {json.dumps(value)}",
                        path, lineno)
    return tuple(c.strip() for c in value)


def _item(obj: dict[str, Any], path: Path, lineno: int) -> Item:
    for key in ("item_id", "title"):
        if key not in obj:
            raise DataError(f"missing required key {key!r}", path, lineno)
    item_id = _id(obj["item_id"], "item_id", path, lineno)
    title = obj["title"]
    if not isinstance(title, str) or not title.strip():
        raise DataError(f"'title' must be a non-empty string, got {json.dumps(title)}",
                        path, lineno)
    description = obj.get("description")
    if description is None:
        description = ""
    elif not isinstance(description, str):
        raise DataError(f"'description' must be a string, got {json.dumps(description)}",
                        path, lineno)
    brand = obj.get("brand")
    if brand is not None and not isinstance(brand, str):
        raise DataError(f"'brand' must be a string or null, got {json.dumps(brand)}",
                        path, lineno)
    price = obj.get("price")
    if price is not None:
        if not isinstance(price, (int, float)) or isinstance(price, bool):
            raise DataError(f"'price' must be a JSON number or null, got {json.dumps(price)[:80]}",
                            path, lineno)
        price = _number(price, "price", path, lineno)
        if price < 0:
            raise DataError(f"'price' must be >= 0, got {obj['price']}", path, lineno)
    raw_attrs = obj.get("attributes")
    if raw_attrs is None:
        raw_attrs = {}
    if not isinstance(raw_attrs, dict):
        raise DataError(f"'attributes' must be an object, got {json.dumps(raw_attrs)}",
                        path, lineno)
    extra = {k: v for k, v in obj.items() if k not in _ITEM_KEYS}
    attributes: dict[str, str] = {}
    for source, where in ((raw_attrs, "attribute"), (extra, "key")):
        for key, value in source.items():
            if value is None:
                continue
            if not isinstance(value, (str, int, float, bool)):
                raise DataError(f"{where} {key!r} must be a string, number or boolean, got "
                                f"{json.dumps(value)}", path, lineno)
            if key in attributes:
                raise DataError(f"attribute {key!r} given twice (inside and outside "
                                f"'attributes')", path, lineno)
            if isinstance(value, float) and not math.isfinite(value):
                raise DataError(f"{where} {key!r} is not a finite number", path, lineno)
            attributes[key] = _scalar_str(value)
    item = Item(
        item_id=item_id,
        title=title,
        description=description,
        category=_category(obj.get("category"), path, lineno),
        also_in=_also_in(obj.get("also_in"), path, lineno),
        brand=brand or None,
        price=price,
        attributes=attributes,
    )
    problem = item_problem(item)
    if problem is not None:
        raise DataError(problem, path, lineno)
    return item


def _read_items(path: Path) -> list[Item]:
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for lineno, obj in _json_lines(path):
        item = _item(obj, path, lineno)
        if item.item_id in first_line:
            raise DataError(f"duplicate item_id {item.item_id!r} (first on line "
                            f"{first_line[item.item_id]})", path, lineno)
        first_line[item.item_id] = lineno
        items.append(item)
    if not items:
        raise DataError("no items", path)
    return items


def _interaction(get: dict[str, Any], path: Path, lineno: int, item_ids: set[str],
                 csv_cells: bool) -> Interaction:
    for key in _REQUIRED_COLUMNS:
        if key not in get:
            raise DataError(f"missing required key {key!r}", path, lineno)
    user_id = _id(get["user_id"], "user_id", path, lineno)
    item_id = _id(get["item_id"], "item_id", path, lineno)
    if item_id not in item_ids:
        raise DataError(f"unknown item_id {item_id!r} (not in {ITEMS_FILE})", path, lineno)
    timestamp = _timestamp(get["timestamp"], path, lineno)
    rating = get.get("rating")
    if rating is None or (csv_cells and rating.strip() == ""):
        rating = None
    else:
        rating = _number(rating, "rating", path, lineno)
    event = get.get("event")
    if event is not None and not isinstance(event, str):
        raise DataError(f"'event' must be a string or null, got {json.dumps(event)}",
                        path, lineno)
    return Interaction(user_id, item_id, timestamp, rating, event or None)


def _read_interactions_csv(path: Path, item_ids: set[str]) -> list[Interaction]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path, 1) from None
    header = [h.strip() for h in header]
    for col in header:
        if col not in _CSV_COLUMNS:
            raise DataError(f"unknown column {col!r} (allowed: {', '.join(_CSV_COLUMNS)})",
                            path, 1)
    if len(set(header)) != len(header):
        raise DataError(f"duplicate column in header {header}", path, 1)
    for col in _REQUIRED_COLUMNS:
        if col not in header:
            raise DataError(f"header lacks the required column {col!r} (a header line "
                            f"{','.join(_REQUIRED_COLUMNS)}[,rating][,event] is required)",
                            path, 1)
    n = len(header)
    interactions: list[Interaction] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"malformed CSV: {exc}", path, reader.line_num) from None
        lineno = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != n:
            raise DataError(f"expected {n} comma-separated fields ({','.join(header)}), got "
                            f"{len(row)}", path, lineno)
        interactions.append(_interaction(dict(zip(header, row)), path, lineno, item_ids, True))
    return interactions


def _read_interactions_jsonl(path: Path, item_ids: set[str]) -> list[Interaction]:
    interactions = []
    for lineno, obj in _json_lines(path):
        for key in obj:
            if key not in _CSV_COLUMNS:
                raise DataError(f"unknown key {key!r} (allowed: {', '.join(_CSV_COLUMNS)})",
                                path, lineno)
        interactions.append(_interaction(obj, path, lineno, item_ids, False))
    return interactions


def _read_meta(path: Path) -> dict[str, Any]:
    text = read_text(path)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(meta, dict):
        raise DataError("expected a JSON object", path)
    name = meta.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise DataError("'name' must be a non-empty string", path)
    has_ts = meta.get("has_timestamps", True)
    if not isinstance(has_ts, bool):
        raise DataError("'has_timestamps' must be true or false", path)
    aliases = meta.get("user_aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise DataError("'user_aliases' must be an object of strings", path)
    return meta


# --------------------------------------------------------------------------- public API


def load_generic(path: Path | str) -> Dataset:
    """Load a dataset folder in the generic format documented in this module."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("dataset folder not found", path)
    items_path = path / ITEMS_FILE
    if not items_path.is_file():
        raise DataError(f"missing {ITEMS_FILE}", items_path)
    items = _read_items(items_path)
    item_ids = {item.item_id for item in items}
    csv_path, jsonl_path = path / INTERACTIONS_CSV, path / INTERACTIONS_JSONL
    if csv_path.is_file() and jsonl_path.is_file():
        raise DataError(f"both {INTERACTIONS_CSV} and {INTERACTIONS_JSONL} exist; keep one", path)
    if csv_path.is_file():
        interactions = _read_interactions_csv(csv_path, item_ids)
    elif jsonl_path.is_file():
        interactions = _read_interactions_jsonl(jsonl_path, item_ids)
    else:
        interactions = []
    meta = _read_meta(path / META_FILE) if (path / META_FILE).is_file() else {}
    name = meta.get("name") or path.resolve().name
    return Dataset(
        name,
        items,
        interactions,
        has_timestamps=meta.get("has_timestamps", True),
        user_aliases=meta.get("user_aliases") or None,
    )


def _num_text(value: float) -> str:
    """Shortest text that reads back as the same float (integers without ".0")."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def save_generic(dataset: Dataset, path: Path | str) -> Path:
    """Write ``dataset`` as a generic folder (created if needed); returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ITEMS_FILE, "w", encoding="utf-8", newline="\n") as out:
        for item in dataset.items.values():
            obj: dict[str, Any] = {"item_id": item.item_id, "title": item.title}
            if item.description:
                obj["description"] = item.description
            if item.category:
                obj["category"] = list(item.category)
            if item.also_in:
                obj["also_in"] = list(item.also_in)
            if item.brand is not None:
                obj["brand"] = item.brand
            if item.price is not None:
                obj["price"] = item.price
            if item.attributes:
                obj["attributes"] = {str(k): str(v) for k, v in item.attributes.items()}
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    with open(path / INTERACTIONS_CSV, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for inter in dataset.interactions:
            writer.writerow([
                inter.user_id,
                inter.item_id,
                _num_text(inter.timestamp),
                "" if inter.rating is None else _num_text(inter.rating),
                inter.event or "",
            ])
    meta: dict[str, Any] = {"name": dataset.name, "has_timestamps": dataset.has_timestamps}
    if dataset.user_aliases:
        meta["user_aliases"] = dataset.user_aliases
    (path / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n",
                                  encoding="utf-8")
    return path
