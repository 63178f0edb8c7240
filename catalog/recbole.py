"""Loader for RecBole atomic files, including the UniSRec / LLMRank-style sequential layout.

All files are tab-separated UTF-8 and share one prefix (``<P>``), detected from the folder;
the dataset is named after the prefix, lowercased. Columns are mapped by their header names
(``name:type``), in any order.

Sequential layout (e.g. UniSRec's Amazon "Scientific"):

* ``<P>.train.inter``, ``<P>.valid.inter``, ``<P>.test.inter`` -- header
  ``user_id:token  item_id_list:token_seq  item_id:token``: a user, the chronological history
  (space-separated, possibly capped to the last N items) and the next item (the target);
* ``<P>.item2index`` / ``<P>.user2index`` (optional, no header) -- ``original id<TAB>index``;
  the ``.inter`` files then hold indices, mapped back to ASINs / reviewer ids;
* ``<P>.text`` -- ``item_id:token  text:token_seq`` with text ``"<title>. <category>. <brand>. "``.

Each user's full sequence is rebuilt from all rows of all splits: the shortest history, then
the targets of the rows in order of history length. A row whose history does not continue
the sequence built so far raises DataError (file, line). Where histories were capped, the
rows at the cap are chained by matching their history to the last items of the sequence, so
the items the cap dropped from the test rows are recovered from the shorter training rows.
Timestamps are positions (0, 1, 2, ...), ``has_timestamps=False``, event ``"interaction"``.
Users are named by their original id (from ``user2index``), with the index as an alias.

Classic layout: ``<P>.inter`` with ``user_id:token item_id:token`` and optionally
``rating:float`` / ``timestamp:float`` (e.g. RecBole's ``ml-100k.inter``). With a timestamp
column ``has_timestamps=True``; without one, the timestamp is the position of the row among
the user's rows. Event is ``"rating"`` when there is a rating column, else ``"interaction"``.
When both ``<P>.inter`` and split files exist in this layout, only ``<P>.inter`` is read.
Other ``.inter`` columns (e.g. review text) have no place in the model and are not read.

Item features: ``<P>.text`` (above) or ``<P>.item`` with ``item_id:token`` and fields such
as ``title`` / ``movie_title``, ``categories`` / ``class``, ``brand``, ``price:float``,
``description``; other fields become attributes. Items listed in ``item2index`` but without
features get their id as title; without any feature file, items are the ids that occur in
the interactions. Catalog order follows ``item2index`` indices when present.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from recagent.catalog._files import read_lines
from recagent.catalog.errors import DataError
from recagent.catalog.model import Dataset, Interaction, Item

_SPLITS = ("train", "valid", "test")
_TITLE_FIELDS = ("title", "movie_title", "item_name", "name")
_DESCRIPTION_FIELDS = ("description", "desc")
_PATH_CATEGORY_FIELDS = ("categories", "category")
_GENRE_FIELDS = ("class", "genre", "genres")
_SEP = "\t"


# --------------------------------------------------------------------------- file helpers


@dataclass
class _Table:
    path: Path
    fields: list[str]  # names without the ":type"
    types: list[str]
    rows: list[tuple[int, list[str]]]  # (line number, cells)

    def col(self, name: str) -> int | None:
        return self.fields.index(name) if name in self.fields else None


def _read_table(path: Path, required: tuple[str, ...] = ()) -> _Table:
    """An atomic file with a ``name:type`` header; checks the field count of every row."""
    lines = read_lines(path)
    header = lines[0].split(_SEP)
    fields, types = [], []
    for cell in header:
        name, colon, typ = cell.strip().partition(":")
        if not colon or not name or not typ:
            raise DataError(f"header field {cell!r} is not of the form name:type", path, 1)
        fields.append(name)
        types.append(typ)
    if len(set(fields)) != len(fields):
        raise DataError(f"duplicate header fields in {header}", path, 1)
    for name in required:
        if name not in fields:
            raise DataError(f"header lacks the required field {name!r} (has {', '.join(fields)})",
                            path, 1)
    rows = []
    n = len(fields)
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(_SEP)
        if len(cells) != n:
            raise DataError(f"expected {n} tab-separated fields ({', '.join(fields)}), "
                            f"got {len(cells)}", path, lineno)
        rows.append((lineno, cells))
    return _Table(path, fields, types, rows)


def _read_index(path: Path) -> tuple[dict[str, str], list[str]]:
    """``original<TAB>index`` lines -> ({index: original}, originals in index order)."""
    by_index: dict[str, str] = {}
    seen: dict[str, int] = {}
    entries: list[tuple[str, str]] = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        cells = line.split(_SEP)
        if lineno == 1 and ":" in cells[0] and cells[0].split(":", 1)[1] in ("token", "float"):
            continue  # a header line
        if len(cells) != 2:
            raise DataError(f"expected 2 tab-separated fields (id, index), got {len(cells)}",
                            path, lineno)
        original, index = cells[0].strip(), cells[1].strip()
        if not original or not index:
            raise DataError("empty id or index", path, lineno)
        if original in seen:
            raise DataError(f"duplicate id {original!r} (first on line {seen[original]})",
                            path, lineno)
        if index in by_index:
            raise DataError(f"duplicate index {index!r}", path, lineno)
        seen[original] = lineno
        by_index[index] = original
        entries.append((index, original))
    if all(index.lstrip("-").isdigit() for index, _ in entries):
        entries.sort(key=lambda e: int(e[0]))
    return by_index, [original for _, original in entries]


# --------------------------------------------------------------------------- prefix detection


def _file_prefix(name: str) -> str | None:
    for ext in (".inter", ".text", ".item", ".item2index", ".user2index"):
        if name.endswith(ext) and len(name) > len(ext):
            stem = name[: -len(ext)]
            if ext == ".inter":
                for split in _SPLITS:
                    if stem.endswith("." + split):
                        return stem[: -len(split) - 1] or None
            return stem
    return None


def detect_prefix(path: Path) -> str:
    """The one prefix shared by the folder's RecBole files; DataError if none or several."""
    prefixes = sorted({p for f in path.iterdir() if f.is_file()
                       if (p := _file_prefix(f.name)) is not None})
    if not prefixes:
        raise DataError("no RecBole atomic files (*.inter, *.text, *.item) found", path)
    if len(prefixes) > 1:
        raise DataError(f"several RecBole dataset prefixes in one folder: {', '.join(prefixes)}",
                        path)
    return prefixes[0]


# --------------------------------------------------------------------------- item features


def _category_root(texts: list[str]) -> str | None:
    """The root category that starts most category segments (e.g. "Industrial & Scientific").

    Found from the naive split (second-to-last ". " segment): the most common first word,
    extended word by word while every candidate starting with that word shares it.
    """
    candidates = []
    for text in texts:
        segs = text.split(". ")
        if len(segs) >= 3 and segs[-2].strip():
            candidates.append(segs[-2].split())
    if not candidates:
        return None
    first, count = Counter(words[0] for words in candidates).most_common(1)[0]
    if count * 2 < len(candidates):
        return None
    group = [words for words in candidates if words[0] == first]
    root = [first]
    while all(len(w) > len(root) for w in group):
        nxt = group[0][len(root)]
        if any(w[len(root)] != nxt for w in group):
            break
        root.append(nxt)
    return " ".join(root)


def _strip_text(text: str) -> str:
    text = text.strip()
    return text.removesuffix(".")


def parse_item_text(text: str, root: str | None = None) -> tuple[str, tuple[str, ...], str | None]:
    """Split UniSRec text ``"<title>. <category path>. <brand>. "`` into its three parts.

    Titles and brands may contain ". " themselves ("Mr. Heater"), so the category segment is
    the rightmost one starting with ``root`` when given; otherwise the rightmost empty segment
    before the last (a missing category, "Title. . Brand."); otherwise the second-to-last. With fewer
    than three segments, the whole text is the title.
    """
    body = _strip_text(text)
    segs = body.split(". ")
    j = None
    if root is not None:
        for k in range(len(segs) - 1, 0, -1):
            if segs[k] == root or segs[k].startswith(root + " "):
                j = k
                break
    if j is None:
        for k in range(len(segs) - 2, 0, -1):
            if not segs[k].strip():
                j = k
                break
    if j is None:
        if len(segs) < 3:
            return body, (), None
        j = len(segs) - 2
    title = ". ".join(segs[:j]).strip()
    category = segs[j].strip()
    brand = ". ".join(segs[j + 1 :]).strip()
    if not title:
        return body, (), None
    return title, ((category,) if category else ()), (brand or None)


def _items_from_text(path: Path, id_of: dict[str, str] | None,
                     known: set[str] | None) -> dict[str, Item]:
    table = _read_table(path, required=("item_id",))
    id_col = table.col("item_id")
    text_col = next((i for i, f in enumerate(table.fields) if f != "item_id"), None)
    if text_col is None:
        raise DataError("header has no text field besides item_id", path, 1)
    root = _category_root([_strip_text(cells[text_col]) for _, cells in table.rows])
    items: dict[str, Item] = {}
    for lineno, item_id, cells in _item_rows(table, id_col, id_of, known):
        text = cells[text_col].strip()
        if text:
            title, category, brand = parse_item_text(text, root)
        else:
            title, category, brand = item_id, (), None
        # The text is exactly title, category and brand: nothing is left for a description.
        items[item_id] = Item(item_id, title, category=category, brand=brand)
    return items


def _item_rows(table: _Table, id_col: int, id_of: dict[str, str] | None,
               known: set[str] | None) -> Iterator[tuple[int, str, list[str]]]:
    """(line, item id, cells) of each row of an item feature file; duplicate ids raise."""
    first_line: dict[str, int] = {}
    for lineno, cells in table.rows:
        item_id = _item_key(cells[id_col].strip(), id_of, known, table.path, lineno)
        if item_id in first_line:
            raise DataError(
                f"duplicate item id {item_id!r} (first on line {first_line[item_id]})",
                table.path, lineno,
            )
        first_line[item_id] = lineno
        yield lineno, item_id, cells


def _item_key(key: str, id_of: dict[str, str] | None, known: set[str] | None,
              path: Path, lineno: int) -> str:
    """A feature file's item key: an original id, or an index mapped through item2index."""
    if not key:
        raise DataError("empty item id", path, lineno)
    if id_of is None or (known is not None and key in known):
        return key
    return id_of.get(key, key)


def _parse_categories(value: str) -> tuple[str, ...]:
    value = value.strip()
    if not value:
        return ()
    quoted = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", value)
    if quoted:
        parts = [a or b for a, b in quoted]
    elif ">" in value:
        parts = value.split(">")
    elif "|" in value:
        parts = value.split("|")
    elif "," in value:
        parts = value.split(",")
    else:
        parts = [value]
    return tuple(p.strip() for p in parts if p.strip())


def _items_from_item_file(path: Path, id_of: dict[str, str] | None,
                          known: set[str] | None) -> dict[str, Item]:
    table = _read_table(path, required=("item_id",))
    fields = table.fields
    title_col = next((fields.index(f) for f in _TITLE_FIELDS if f in fields), None)
    desc_col = next((fields.index(f) for f in _DESCRIPTION_FIELDS if f in fields), None)
    cat_col = next((fields.index(f) for f in _PATH_CATEGORY_FIELDS if f in fields), None)
    genre_col = next((fields.index(f) for f in _GENRE_FIELDS if f in fields), None)
    brand_col = table.col("brand")
    price_col = table.col("price")
    id_col = table.col("item_id")
    used = {id_col, title_col, desc_col, cat_col, genre_col, brand_col, price_col}
    items: dict[str, Item] = {}
    for lineno, item_id, cells in _item_rows(table, id_col, id_of, known):
        title = cells[title_col].strip() if title_col is not None else ""
        attributes: dict[str, str] = {}
        category: tuple[str, ...] = ()
        if cat_col is not None:
            category = _parse_categories(cells[cat_col])
        if genre_col is not None:
            genres = cells[genre_col].split()
            if genres:
                attributes["genres"] = ", ".join(genres)
                if not category:
                    category = (genres[0],)
        price = None
        if price_col is not None and cells[price_col].strip():
            raw = cells[price_col].strip()
            try:
                price = float(raw)
            except ValueError:
                raise DataError(f"price {raw!r} is not a number", path, lineno) from None
            if not math.isfinite(price) or price < 0:
                raise DataError(f"price {raw!r} must be a finite number >= 0", path, lineno)
        brand = cells[brand_col].strip() if brand_col is not None else ""
        for i, name in enumerate(fields):
            if i not in used and cells[i].strip():
                attributes[name] = cells[i].strip()
        items[item_id] = Item(
            item_id,
            title or item_id,
            description=cells[desc_col].strip() if desc_col is not None else "",
            category=category,
            brand=brand or None,
            price=price,
            attributes=attributes,
        )
    return items


# --------------------------------------------------------------------------- interactions


@dataclass
class _Row:
    history: list[str]
    target: str
    path: Path
    line: int
    order: int  # position of the file among the .inter files read


def _rebuild_sequence(user: str, rows: list[_Row]) -> list[str]:
    """The user's full item sequence from its (history, target) rows of all splits.

    Rows are taken in order of history length. A row whose history equals the sequence so
    far extends it by its target. Rows of equal length (the rows at a history cap) are
    chained by looking up the last ``length`` items of the sequence among their histories.
    A row longer than the sequence so far must start with it (a shorter row is missing; its
    items are taken from this history). Anything else is a contradiction -> DataError.
    """
    rows = sorted(rows, key=lambda r: len(r.history))
    seq = list(rows[0].history) + [rows[0].target]
    i = 1
    n = len(rows)
    while i < n:
        length = len(rows[i].history)
        j = i
        while j < n and len(rows[j].history) == length:
            j += 1
        if j - i == 1:
            row = rows[i]
            if len(seq) == length and row.history == seq:
                seq.append(row.target)
                i = j
                continue
        # General case (gaps, capped histories, contradictions).
        by_history: dict[tuple[str, ...], list[_Row]] = {}
        for row in rows[i:j]:
            by_history.setdefault(tuple(row.history), []).append(row)
        remaining = j - i
        while remaining:
            if len(seq) >= length:
                key = tuple(seq[len(seq) - length :]) if length else ()
                bucket = by_history.get(key)
            else:
                bucket = None
                for key, cand in by_history.items():
                    if cand and list(key[: len(seq)]) == seq:
                        bucket = cand
                        seq = list(key)
                        break
            if not bucket:
                left = [r for b in by_history.values() for r in b]
                bad = min(left, key=lambda r: (r.order, r.line))
                raise DataError(
                    f"user {user}: the history in this row ({len(bad.history)} items, ending "
                    f"{' '.join(bad.history[-3:]) or '(empty)'}) does not continue the sequence "
                    f"built from the user's shorter rows ({len(seq)} items, ending "
                    f"{' '.join(seq[-3:])}): the rows contradict each other",
                    bad.path,
                    bad.line,
                )
            seq.append(bucket.pop(0).target)
            remaining -= 1
        i = j
    return seq


def _parse_float(raw: str, what: str, path: Path, lineno: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{what} {raw!r} is not a number", path, lineno) from None
    if not math.isfinite(value):
        raise DataError(f"{what} {raw!r} is not a finite number", path, lineno)
    return value


# --------------------------------------------------------------------------- the loader


def load_recbole(path: Path | str) -> Dataset:
    """Load a folder of RecBole atomic files (sequential UniSRec layout or classic .inter)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("RecBole folder not found", path)
    prefix = detect_prefix(path)
    name = prefix.lower()

    def f(ext: str) -> Path:
        return path / f"{prefix}.{ext}"

    item_of: dict[str, str] | None = None  # index token -> original item id
    item_order: list[str] = []
    if f("item2index").is_file():
        item_of, item_order = _read_index(f("item2index"))
    user_of: dict[str, str] | None = None
    if f("user2index").is_file():
        user_of, _ = _read_index(f("user2index"))
    known = set(item_order) if item_of is not None else None

    feature_items: dict[str, Item] | None = None
    if f("text").is_file() and f("item").is_file():
        raise DataError(f"both {prefix}.text and {prefix}.item exist; keep one", path)
    if f("text").is_file():
        feature_items = _items_from_text(f("text"), item_of, known)
    elif f("item").is_file():
        feature_items = _items_from_item_file(f("item"), item_of, known)

    items: dict[str, Item] = {}
    for item_id in item_order:
        items[item_id] = (feature_items or {}).get(item_id) or Item(item_id, item_id)
    for item_id, item in (feature_items or {}).items():
        if item_id not in items:
            items[item_id] = item

    split_files = [f(f"{s}.inter") for s in _SPLITS if f(f"{s}.inter").is_file()]
    full_file = f("inter")
    inter_files = ([full_file] if full_file.is_file() else []) + split_files
    open_catalog = feature_items is None and item_of is None  # items come from interactions

    def item_id_of(token: str, p: Path, lineno: int) -> str:
        item_id = item_of.get(token) if item_of is not None else token
        if item_id is None:
            raise DataError(f"unknown item index {token!r} (not in {prefix}.item2index)",
                            p, lineno)
        if item_id not in items:
            if open_catalog and item_id:
                items[item_id] = Item(item_id, item_id)
            else:
                what = f"{prefix}.text" if f("text").is_file() else f"{prefix}.item"
                raise DataError(f"unknown item id {item_id!r} (not in {what})", p, lineno)
        return item_id

    def user_id_of(token: str, p: Path, lineno: int) -> str:
        if not token:
            raise DataError("empty user id", p, lineno)
        if user_of is None:
            return token
        user = user_of.get(token)
        if user is None:
            raise DataError(f"unknown user index {token!r} (not in {prefix}.user2index)",
                            p, lineno)
        return user

    interactions: list[Interaction] = []
    has_timestamps = True
    if inter_files:
        tables = [_read_table(p, required=("user_id",)) for p in inter_files]
        sequential = [t for t in tables if "item_id_list" in t.fields]
        if sequential and len(sequential) != len(tables):
            plain = [t.path.name for t in tables if "item_id_list" not in t.fields]
            raise DataError(f"mixes sequential files (with item_id_list) and plain ones: "
                            f"{', '.join(plain)}", path)
        if sequential:
            has_timestamps = False
            by_user: dict[str, list[_Row]] = {}
            valid_tokens = item_of.keys() if item_of is not None else items.keys()
            for order, t in enumerate(tables):
                if "item_id" not in t.fields:
                    raise DataError("header lacks the required field 'item_id'", t.path, 1)
                u_col, h_col, i_col = t.col("user_id"), t.col("item_id_list"), t.col("item_id")
                for lineno, cells in t.rows:
                    user = user_id_of(cells[u_col].strip(), t.path, lineno)
                    history = cells[h_col].split()
                    target = cells[i_col].strip()
                    if not open_catalog and not (target in valid_tokens
                                                 and valid_tokens >= set(history)):
                        for tok in [*history, target]:
                            item_id_of(tok, t.path, lineno)  # raises for the unknown one
                    elif open_catalog:
                        for tok in [*history, target]:
                            item_id_of(tok, t.path, lineno)
                    by_user.setdefault(user, []).append(
                        _Row(history, target, t.path, lineno, order))
            for user, rows in by_user.items():
                seq = _rebuild_sequence(user, rows)
                for pos, tok in enumerate(seq):
                    item_id = item_of[tok] if item_of is not None else tok
                    interactions.append(Interaction(user, item_id, float(pos), None,
                                                    "interaction"))
        else:
            chosen = tables[:1] if full_file.is_file() else tables
            positions: dict[str, int] = {}
            for t in chosen:
                if "item_id" not in t.fields:
                    raise DataError("header lacks the required field 'item_id'", t.path, 1)
                u_col, i_col = t.col("user_id"), t.col("item_id")
                r_col, ts_col = t.col("rating"), t.col("timestamp")
                has_timestamps = ts_col is not None
                event = "rating" if r_col is not None else "interaction"
                for lineno, cells in t.rows:
                    user = user_id_of(cells[u_col].strip(), t.path, lineno)
                    item_id = item_id_of(cells[i_col].strip(), t.path, lineno)
                    rating = None
                    if r_col is not None and cells[r_col].strip():
                        rating = _parse_float(cells[r_col].strip(), "rating", t.path, lineno)
                    if ts_col is not None:
                        ts = _parse_float(cells[ts_col].strip(), "timestamp", t.path, lineno)
                    else:
                        ts = float(positions.get(user, 0))
                        positions[user] = int(ts) + 1
                    interactions.append(Interaction(user, item_id, ts, rating, event))
    elif feature_items is None and not items:
        raise DataError(f"no interactions ({prefix}.inter or {prefix}.train/valid/test.inter) "
                        f"and no item features", path)

    aliases = {index: original for index, original in user_of.items()} if user_of else None
    return Dataset(name, items.values(), interactions, has_timestamps=has_timestamps,
                   user_aliases=aliases)
