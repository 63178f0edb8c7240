"""Loader for MovieLens 100K in its original GroupLens layout.

Files read from the folder:

* ``u.data``  -- tab-separated ``user item rating timestamp`` (one rating a line, no header);
* ``u.item``  -- ``|``-separated ``id|title|release date|video release date|IMDb URL|<flags>``
  with one 0/1 flag per genre; Latin-1 encoded (a UTF-8 copy is also accepted);
* ``u.genre`` -- ``name|index`` (optional; without it the standard 19 genres are used).

``u.user`` (age, gender, occupation, zip) is not read: the Dataset model has no user
profiles. Nothing is dropped: every movie and every rating becomes an Item / Interaction.

Items: ``item_id`` is the movie id, ``title`` the title ("Toy Story (1995)"),
``category = ("Movies", <first genre>)``, ``also_in`` the other genres (a war film listed
Action, Drama, War is found by a War filter); ``attributes`` holds ``genres`` (all genres,
comma-separated), ``release_date``, ``year``, ``video_release_date`` and ``imdb_url`` when
known. The genre flag "unknown" (set on movies 267 and 1373) counts as no genre. Movie 267
has the title "unknown" and no dates in the source; it is kept as it is.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from recagent.catalog._files import read_lines
from recagent.catalog.errors import DataError
from recagent.catalog.model import Dataset, Interaction, Item

DATASET_NAME = "ml-100k"

STANDARD_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

_DATE_RE = re.compile(r"^\d{1,2}-[A-Za-z]{3}-(\d{4})$")
_TITLE_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")



def _read_genres(path: Path) -> tuple[str, ...]:
    by_index: dict[int, str] = {}
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 2:
            raise DataError(f"expected 2 '|'-separated fields (name|index), got {len(fields)}",
                            path, lineno)
        name, index = fields[0].strip(), fields[1].strip()
        if not name:
            raise DataError("empty genre name", path, lineno)
        try:
            idx = int(index)
        except ValueError:
            raise DataError(f"genre index {index!r} is not an integer", path, lineno) from None
        if idx in by_index:
            raise DataError(f"duplicate genre index {idx}", path, lineno)
        by_index[idx] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f"genre indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}",
                        path)
    return tuple(by_index[i] for i in range(len(by_index)))


def _read_items(path: Path, genres: tuple[str, ...]) -> dict[str, Item]:
    n_fields = 5 + len(genres)
    items: dict[str, Item] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(read_lines(path, ("utf-8", "latin-1")), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != n_fields:
            raise DataError(
                f"expected {n_fields} '|'-separated fields (id|title|release date|video release "
                f"date|IMDb URL|{len(genres)} genre flags), got {len(fields)}",
                path,
                lineno,
            )
        item_id, title, release_date, video_date, url = (f.strip() for f in fields[:5])
        if not item_id:
            raise DataError("empty movie id", path, lineno)
        if item_id in items:
            raise DataError(f"duplicate movie id {item_id!r} (first on line {first_line[item_id]})",
                            path, lineno)
        if not title:
            raise DataError(f"movie {item_id}: empty title", path, lineno)
        flags = fields[5:]
        item_genres: list[str] = []
        for name, flag in zip(genres, flags):
            flag = flag.strip()
            if flag not in ("0", "1"):
                raise DataError(f"movie {item_id}: genre flag for {name!r} must be 0 or 1, "
                                f"got {flag!r}", path, lineno)
            if flag == "1" and name.lower() != "unknown":
                item_genres.append(name)
        attributes: dict[str, str] = {}
        if item_genres:
            attributes["genres"] = ", ".join(item_genres)
        year = ""
        if release_date:
            m = _DATE_RE.match(release_date)
            if m is None:
                raise DataError(f"movie {item_id}: release date {release_date!r} is not "
                                f"DD-Mon-YYYY", path, lineno)
            attributes["release_date"] = release_date
            year = m.group(1)
        else:
            m = _TITLE_YEAR_RE.search(title)
            if m is not None:
                year = m.group(1)
        if year:
            attributes["year"] = year
        if video_date:
            attributes["video_release_date"] = video_date
        if url:
            attributes["imdb_url"] = url
        category = ("Movies", item_genres[0]) if item_genres else ("Movies",)
        items[item_id] = Item(
            item_id=item_id,
            title=title,
            category=category,
            attributes=attributes,
            also_in=tuple(item_genres[1:]),
        )
        first_line[item_id] = lineno
    return items


def _read_ratings(path: Path, items: dict[str, Item]) -> list[Interaction]:
    interactions: list[Interaction] = []
    append = interactions.append
    isfinite = math.isfinite
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if len(fields) != 4:
            if not fields:
                continue
            raise DataError(f"expected 4 tab-separated fields (user item rating timestamp), "
                            f"got {len(fields)}", path, lineno)
        user, item, rating_s, ts_s = fields
        try:
            rating = float(rating_s)
        except ValueError:
            raise DataError(f"rating {rating_s!r} is not a number", path, lineno) from None
        try:
            ts = float(ts_s)
        except ValueError:
            raise DataError(f"timestamp {ts_s!r} is not a number", path, lineno) from None
        if not (isfinite(rating) and isfinite(ts)):
            raise DataError("rating and timestamp must be finite numbers", path, lineno)
        if item not in items:
            raise DataError(f"unknown movie id {item!r} (not in u.item)", path, lineno)
        append(Interaction(user, item, ts, rating, "rating"))
    return interactions


def load_movielens(path: Path | str) -> Dataset:
    """Load MovieLens 100K from a folder holding ``u.data`` and ``u.item`` (and ``u.genre``)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("MovieLens folder not found", path)
    genre_file = path / "u.genre"
    genres = _read_genres(genre_file) if genre_file.exists() else STANDARD_GENRES
    items = _read_items(path / "u.item", genres)
    interactions = _read_ratings(path / "u.data", items)
    return Dataset(DATASET_NAME, items.values(), interactions, has_timestamps=True)
