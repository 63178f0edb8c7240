"""Loaders for MovieLens 100K, RecBole atomic files and the generic format (tiny fixtures)."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recagent.catalog.errors import DataError
from recagent.catalog.generic import load_generic, save_generic
from recagent.catalog.load import detect_format, load_dataset
from recagent.catalog.model import Dataset, Interaction, Item
from recagent.catalog.movielens import load_movielens
from recagent.catalog.recbole import load_recbole, parse_item_text


def expect_data_error(func, *args, file: str, line: int | None, match: str = "") -> DataError:
    """Call func(*args); assert it raises DataError naming ``file`` and ``line``."""
    with pytest.raises(DataError) as info:
        func(*args)
    err = info.value
    message = str(err)
    assert err.path is not None and err.path.name == file, message
    assert file in message
    if line is not None:
        assert err.line == line, message
        assert f"line {line}:" in message
    if match:
        assert match.lower() in message.lower(), message
    return err


# =========================================================================== MovieLens

FLAGS_TOY_STORY = "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0"  # Animation, Children's, Comedy
FLAGS_DRAMA = "0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0"
FLAGS_UNKNOWN = "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"

GENRES = ("unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\n"
          "Documentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\n"
          "Romance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n\n")


def ml_items() -> list[str]:
    return [
        (f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story|"
         f"{FLAGS_TOY_STORY}"),
        f"2|Misérables, Les (1995)|01-Jan-1995||http://x|{FLAGS_DRAMA}",
        f"267|unknown||||{FLAGS_UNKNOWN}",
    ]


def ml_data() -> list[str]:
    return [
        "10\t1\t5\t881250949",
        "10\t2\t3\t881250949",  # same timestamp: file order must be kept
        "10\t267\t1\t881250940",
        "11\t2\t4\t891717742",
    ]


def write_ml(folder: Path, items: list[str] | None = None, data: list[str] | None = None,
             genre: str | None = GENRES, encoding: str = "latin-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.item").write_bytes(
        ("\n".join(ml_items() if items is None else items) + "\n").encode(encoding))
    (folder / "u.data").write_text("\n".join(ml_data() if data is None else data) + "\n")
    if genre is not None:
        (folder / "u.genre").write_text(genre)
    (folder / "u.user").write_text("10|24|M|technician|85711\n11|53|F|other|94043\n")
    return folder


def test_movielens_happy_path(tmp_path):
    ds = load_movielens(write_ml(tmp_path / "ml"))
    assert ds.name == "ml-100k"
    assert len(ds.items) == 3 and len(ds.interactions) == 4 and set(ds.users) == {"10", "11"}
    toy = ds.item("1")
    assert toy.title == "Toy Story (1995)"
    assert toy.category == ("Movies", "Animation")
    assert toy.also_in == ("Children's", "Comedy")  # a Comedy filter finds it too
    assert toy.categories == ("Movies", "Animation", "Children's", "Comedy")
    assert toy.kinds == ("Animation", "Children's", "Comedy")  # what it is, without "Movies"
    assert toy.attributes["genres"] == "Animation, Children's, Comedy"
    assert toy.attributes["release_date"] == "01-Jan-1995"
    assert toy.attributes["year"] == "1995"
    assert toy.description == ""  # every fact is in a field; nothing is repeated
    assert toy.brand is None and toy.price is None
    first = ds.interactions[0]
    assert first == Interaction("10", "1", 881250949.0, 5.0, "rating")
    # history: oldest first, ties in file order
    assert [i.item_id for i in ds.history("10")] == ["267", "1", "2"]
    assert ds.has_timestamps


def test_movielens_latin1_title(tmp_path):
    ds = load_movielens(write_ml(tmp_path / "ml"))
    assert ds.item("2").title == "Misérables, Les (1995)"


def test_movielens_utf8_copy_is_also_read(tmp_path):
    ds = load_movielens(write_ml(tmp_path / "ml", encoding="utf-8"))
    assert ds.item("2").title == "Misérables, Les (1995)"


def test_movielens_unknown_movie(tmp_path):
    item = load_movielens(write_ml(tmp_path / "ml")).item("267")
    assert item.title == "unknown"
    assert item.category == ("Movies",)
    assert "genres" not in item.attributes and "year" not in item.attributes
    assert item.description == ""


def test_movielens_without_genre_file_uses_standard_genres(tmp_path):
    ds = load_movielens(write_ml(tmp_path / "ml", genre=None))
    assert ds.item("1").attributes["genres"] == "Animation, Children's, Comedy"


@pytest.mark.parametrize(
    ("items", "data", "file", "line", "match"),
    [
        (None, ["10\t1\t5\t881250949", "10\t2\t3"], "u.data", 2, "expected 4"),
        (None, ["10\t1\tfive\t881250949"], "u.data", 1, "rating"),
        (None, ["10\t1\t5\t881250949", "10\t1\t5\tyesterday"], "u.data", 2, "timestamp"),
        (None, ["10\t1\t5\t881250949", "10\t999\t5\t881250949"], "u.data", 2, "unknown movie"),
        (ml_items() + ["4|Too few|01-Jan-1995||x|0|1"], None, "u.item", 4, "expected 24"),
        (ml_items() + [ml_items()[0]], None, "u.item", 4, "duplicate movie id"),
        ([f"1|Toy Story (1995)|01-Jan-1995||x|{FLAGS_DRAMA.replace('1', 'y')}"], None,
         "u.item", 1, "genre flag"),
        ([f"1|Toy Story (1995)|January 1995||x|{FLAGS_DRAMA}"], None, "u.item", 1,
         "release date"),
    ],
)
def test_movielens_malformed(tmp_path, items, data, file, line, match):
    folder = write_ml(tmp_path / "ml", items=items, data=data)
    expect_data_error(load_movielens, folder, file=file, line=line, match=match)


def test_movielens_empty_and_missing_files(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "u.data").write_text("")
    expect_data_error(load_movielens, folder, file="u.data", line=None, match="empty")
    (folder / "u.item").unlink()
    expect_data_error(load_movielens, folder, file="u.item", line=None, match="missing")


def test_movielens_bad_genre_file(tmp_path):
    folder = write_ml(tmp_path / "ml", genre="unknown|0\nAction|x\n")
    expect_data_error(load_movielens, folder, file="u.genre", line=2, match="integer")


def test_movielens_bad_encoding_in_ratings(tmp_path):
    folder = write_ml(tmp_path / "ml")
    (folder / "u.data").write_bytes(b"10\t1\t5\t881250949\n10\t\xff\t5\t881250949\n")
    expect_data_error(load_movielens, folder, file="u.data", line=2, match="encoding")


# =========================================================================== RecBole

SEQ_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token"
TEXT_HEADER = "item_id:token\ttext:token_seq"

# Five items; titles/brands with ". " inside, one without category, one with only a title.
SCI_TEXT = {
    "ASIN0": "Sanding Roll 80 Grit. Industrial & Scientific Abrasive Products Sanding Rolls. "
             "PORTER-CABLE. ",
    "ASIN1": "24 Oz. Sprayer Bottles, Pack Of 3. Industrial & Scientific Lab Bottles. "
             "Continental. ",
    "ASIN2": "Gas Connector Kit. Industrial & Scientific Pipe Fittings. Mr. Heater. ",
    "ASIN3": "Crimp Connector (Pack of 100). . Ideal. ",
    "ASIN4": "Just a title",
}


def write_recbole(folder: Path, *, train: list[str], valid: list[str], test: list[str],
                  prefix: str = "Scientific", users: int = 3, text: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = SCI_TEXT if text is None else text
    (folder / f"{prefix}.text").write_text(
        TEXT_HEADER + "\n" + "".join(f"{k}\t{v}\n" for k, v in text.items()), encoding="utf-8")
    (folder / f"{prefix}.item2index").write_text(
        "".join(f"{asin}\t{i}\n" for i, asin in enumerate(text)))
    (folder / f"{prefix}.user2index").write_text(
        "".join(f"REVIEWER{u}\t{u}\n" for u in range(users)))
    for split, rows in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{prefix}.{split}.inter").write_text(
            SEQ_HEADER + "\n" + "".join(r + "\n" for r in rows))
    return folder


def simple_recbole(folder: Path) -> Path:
    # user 0: 0 1 2 3 4 ; user 1: 2 3 1 2
    return write_recbole(
        folder,
        train=["0\t0 1\t2", "0\t0\t1", "1\t2\t3"],
        valid=["0\t0 1 2\t3", "1\t2 3\t1"],
        test=["0\t0 1 2 3\t4", "1\t2 3 1\t2"],
        users=2,
    )


def test_recbole_sequences_and_users(tmp_path):
    ds = load_recbole(simple_recbole(tmp_path / "sci"))
    assert ds.name == "scientific"
    assert not ds.has_timestamps
    assert [i.item_id for i in ds.history("REVIEWER0")] == [f"ASIN{k}" for k in range(5)]
    assert [i.item_id for i in ds.history("REVIEWER1")] == ["ASIN2", "ASIN3", "ASIN1", "ASIN2"]
    # integer index works as an alias
    assert ds.history("1") == ds.history("REVIEWER1")
    first = ds.history("REVIEWER0")[0]
    assert first == Interaction("REVIEWER0", "ASIN0", 0.0, None, "interaction")
    assert [i.timestamp for i in ds.history("REVIEWER0")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(ds.interactions) == 9
    assert ds.item_ids == [f"ASIN{k}" for k in range(5)]


def test_recbole_item_text_parsing(tmp_path):
    ds = load_recbole(simple_recbole(tmp_path / "sci"))
    roll = ds.item("ASIN0")
    assert roll.title == "Sanding Roll 80 Grit"
    assert roll.category == ("Industrial & Scientific Abrasive Products Sanding Rolls",)
    assert roll.brand == "PORTER-CABLE"
    assert roll.description == ""  # the text is exactly title, category and brand
    assert ds.item("ASIN1").title == "24 Oz. Sprayer Bottles, Pack Of 3"
    assert ds.item("ASIN2").brand == "Mr. Heater"
    assert ds.item("ASIN2").title == "Gas Connector Kit"
    no_cat = ds.item("ASIN3")
    assert (no_cat.title, no_cat.category, no_cat.brand) == ("Crimp Connector (Pack of 100)", (),
                                                              "Ideal")
    only_title = ds.item("ASIN4")
    assert (only_title.title, only_title.category, only_title.brand) == ("Just a title", (), None)


def test_parse_item_text_without_root():
    assert parse_item_text("A. B. C. ") == ("A", ("B",), "C")
    assert parse_item_text("A. x. B. C. ") == ("A. x", ("B",), "C")
    assert parse_item_text("Title. Cat. . ") == ("Title", ("Cat",), None)
    assert parse_item_text("Title. . . ") == ("Title", (), None)
    assert parse_item_text("Only. Two") == ("Only. Two", (), None)


def test_recbole_capped_histories_are_recovered(tmp_path):
    # One user, full sequence 0 1 2 3 4 0 1 (items repeat), history capped at 3 items.
    seq = ["0", "1", "2", "3", "4", "0", "1"]
    rows = [f"0\t{' '.join(seq[max(0, p - 3):p])}\t{seq[p]}" for p in range(1, len(seq))]
    folder = write_recbole(tmp_path / "sci", train=rows[:-2][::-1], valid=[rows[-2]],
                           test=[rows[-1]], users=1)
    ds = load_recbole(folder)
    assert [i.item_id for i in ds.history("REVIEWER0")] == [f"ASIN{k}" for k in seq]
    # The test row alone (history capped at 3) would only give 4 of the 7 items.
    assert len(rows[-1].split("\t")[1].split()) + 1 == 4


def test_recbole_contradicting_rows(tmp_path):
    folder = write_recbole(
        tmp_path / "sci",
        train=["0\t0 1\t2", "0\t0\t1"],
        valid=["0\t0 1 3\t2"],  # history says 3 came third, the train row says 2
        test=["0\t0 1 3 2\t4"],
        users=1,
    )
    expect_data_error(load_recbole, folder, file="Scientific.valid.inter", line=2,
                      match="contradict")


def test_recbole_duplicate_rows_contradict(tmp_path):
    folder = write_recbole(tmp_path / "sci", train=["0\t0\t1", "0\t0\t2"], valid=[],
                           test=["0\t0 1\t2"], users=1)
    expect_data_error(load_recbole, folder, file="Scientific.train.inter", line=3,
                      match="contradict")


@pytest.mark.parametrize(
    ("test_rows", "line", "match"),
    [
        (["0\t0 1 2 3\t4", "1\t2 3\t9"], 3, "unknown item index"),
        (["0\t0 1 2 3\t4", "7\t2 3\t1"], 3, "unknown user index"),
        (["0\t0 1 2 3\t4", "1\t2 3"], 3, "expected 3"),
    ],
)
def test_recbole_malformed_inter(tmp_path, test_rows, line, match):
    folder = write_recbole(tmp_path / "sci", train=["0\t0\t1", "1\t2\t3"],
                           valid=["0\t0 1\t2"], test=test_rows, users=2)
    expect_data_error(load_recbole, folder, file="Scientific.test.inter", line=line,
                      match=match)


def test_recbole_bad_header_and_empty_file(tmp_path):
    folder = simple_recbole(tmp_path / "sci")
    (folder / "Scientific.test.inter").write_text("user_id\titem_id_list\titem_id\n0\t0\t1\n")
    expect_data_error(load_recbole, folder, file="Scientific.test.inter", line=1,
                      match="name:type")
    (folder / "Scientific.test.inter").write_text("")
    expect_data_error(load_recbole, folder, file="Scientific.test.inter", line=None,
                      match="empty")


def test_recbole_duplicate_item_and_bad_encoding(tmp_path):
    folder = simple_recbole(tmp_path / "sci")
    text = folder / "Scientific.text"
    text.write_text(text.read_text() + "ASIN1\tAgain. Cat. Brand. \n")
    expect_data_error(load_recbole, folder, file="Scientific.text", line=7, match="duplicate")
    text.write_bytes(b"item_id:token\ttext:token_seq\nASIN0\tSanding \xe9 Roll. C. B. \n")
    expect_data_error(load_recbole, folder, file="Scientific.text", line=2, match="encoding")


def test_recbole_item_file_and_classic_inter(tmp_path):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "2\tGoldenEye\t1995\tAction Adventure Thriller\n")
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t1\t3\t881250949\n196\t2\t4\t881250940\n")
    ds = load_recbole(folder)
    assert ds.name == "ml-100k" and ds.has_timestamps
    toy = ds.item("1")
    assert toy.title == "Toy Story"
    assert toy.category == ("Animation",)
    assert toy.attributes == {"genres": "Animation, Children's, Comedy", "release_year": "1995"}
    assert [i.item_id for i in ds.history("196")] == ["2", "1"]
    assert ds.interactions[0] == Interaction("196", "1", 881250949.0, 3.0, "rating")
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t1\t3\tnoon\n")
    expect_data_error(load_recbole, folder, file="ml-100k.inter", line=2, match="timestamp")
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t3\t3\t1\n")
    expect_data_error(load_recbole, folder, file="ml-100k.inter", line=2, match="unknown item")


def test_recbole_amazon_item_file_with_price(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "Amazon_Books.item").write_text(
        "item_id:token\ttitle:token_seq\tprice:float\tbrand:token\tcategories:token_seq\n"
        "B1\tA Book\t9.99\tPenguin\t'Books', 'Literature & Fiction'\n"
        "B2\tNo Price\t\t\t\n")
    (folder / "Amazon_Books.inter").write_text(
        "user_id:token\titem_id:token\nU1\tB1\nU1\tB2\n")
    ds = load_recbole(folder)
    book = ds.item("B1")
    assert (book.price, book.brand, book.category) == (9.99, "Penguin",
                                                       ("Books", "Literature & Fiction"))
    assert ds.item("B2").price is None and ds.item("B2").brand is None
    assert not ds.has_timestamps
    assert [(i.item_id, i.timestamp, i.event) for i in ds.history("U1")] == [
        ("B1", 0.0, "interaction"), ("B2", 1.0, "interaction")]
    (folder / "Amazon_Books.item").write_text(
        "item_id:token\ttitle:token_seq\tprice:float\nB1\tA Book\tcheap\nB2\tX\t1\n")
    expect_data_error(load_recbole, folder, file="Amazon_Books.item", line=2, match="price")


def test_recbole_without_index_files(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "Shop.text").write_text(TEXT_HEADER + "\nA\tThing A. Cat. Brand. \n"
                                      "B\tThing B. Cat. Brand. \n")
    (folder / "Shop.test.inter").write_text(SEQ_HEADER + "\nu1\tA\tB\n")
    ds = load_recbole(folder)
    assert [i.item_id for i in ds.history("u1")] == ["A", "B"]
    assert ds.user_aliases == {}


# =========================================================================== generic

ITEMS = [
    {"item_id": "sku-1", "title": "Trail Shoe", "description": "Light shoe.",
     "category": ["Sports", "Running", "Shoes"], "brand": "Acme", "price": 89.5,
     "attributes": {"color": "red", "size": 42, "waterproof": True}},
    {"item_id": "sku-2", "title": "Rain Jacket", "category": "Clothing > Jackets",
     "price": 120},
    {"item_id": 3, "title": "Sock", "material": "wool"},
]

INTERACTIONS_CSV = (
    "user_id,item_id,timestamp,rating,event\n"
    "alice,sku-1,1700000000,5,purchase\n"
    "alice,sku-2,2023-11-14T22:13:21Z,,click\n"
    "bob,3,2024-03-01T12:30:00+01:00,4.5,\n"
    "bob,sku-1,2024-03-01,,\n"
)


def write_generic(folder: Path, items: list | None = None, interactions: str = INTERACTIONS_CSV,
                  item_lines: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = item_lines if item_lines is not None else [json.dumps(o) for o in (items or ITEMS)]
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if interactions is not None:
        (folder / "interactions.csv").write_text(interactions, encoding="utf-8")
    return folder


def test_generic_happy_path(tmp_path):
    ds = load_generic(write_generic(tmp_path / "my-shop"))
    assert ds.name == "my-shop" and ds.has_timestamps
    shoe = ds.item("sku-1")
    assert shoe == Item("sku-1", "Trail Shoe", "Light shoe.", ("Sports", "Running", "Shoes"),
                        "Acme", 89.5, {"color": "red", "size": "42", "waterproof": "true"})
    jacket = ds.item("sku-2")
    assert jacket.category == ("Clothing", "Jackets") and jacket.price == 120.0
    assert jacket.brand is None and jacket.description == ""
    assert ds.item("3").attributes == {"material": "wool"}
    assert ds.interactions[0] == Interaction("alice", "sku-1", 1700000000.0, 5.0, "purchase")
    assert ds.interactions[1].rating is None and ds.interactions[1].event == "click"


def test_generic_iso_timestamps(tmp_path):
    ds = load_generic(write_generic(tmp_path / "shop"))
    ts = [i.timestamp for i in ds.interactions]
    assert ts[1] == datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC).timestamp()
    assert ts[2] == datetime(2024, 3, 1, 11, 30, tzinfo=UTC).timestamp()
    assert ts[3] == datetime(2024, 3, 1, tzinfo=UTC).timestamp()  # naive = UTC
    assert [i.item_id for i in ds.history("bob")] == ["sku-1", "3"]


def test_generic_interactions_jsonl_and_dataset_json(tmp_path):
    folder = write_generic(tmp_path / "shop", interactions=None)
    (folder / "interactions.jsonl").write_text(
        '{"user_id": "u1", "item_id": "sku-1", "timestamp": 10, "rating": 4}\n'
        '{"user_id": 7, "item_id": "3", "timestamp": "2024-01-01T00:00:00Z", "event": "view"}\n')
    (folder / "dataset.json").write_text('{"name": "Outdoor Shop"}')
    ds = load_generic(folder)
    assert ds.name == "Outdoor Shop"
    assert ds.interactions == [
        Interaction("u1", "sku-1", 10.0, 4.0, None),
        Interaction("7", "3", 1704067200.0, None, "view"),
    ]


def test_generic_without_interactions_is_a_catalog(tmp_path):
    ds = load_generic(write_generic(tmp_path / "shop", interactions=None))
    assert len(ds.items) == 3 and ds.interactions == []


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    assert a.name == b.name
    assert a.items == b.items
    assert list(a.items) == list(b.items)
    assert a.interactions == b.interactions
    assert a.has_timestamps == b.has_timestamps
    assert a.user_aliases == b.user_aliases


def test_generic_round_trip(tmp_path):
    original = load_generic(write_generic(tmp_path / "shop"))
    save_generic(original, tmp_path / "copy")
    assert_same_dataset(load_generic(tmp_path / "copy"), original)


def test_generic_round_trip_of_other_formats(tmp_path):
    for ds in (load_movielens(write_ml(tmp_path / "ml")),
               load_recbole(simple_recbole(tmp_path / "sci"))):
        out = save_generic(ds, tmp_path / f"out-{ds.name}")
        assert_same_dataset(load_generic(out), ds)


def test_generic_round_trip_awkward_values(tmp_path):
    ds = Dataset(
        "odd",
        [Item("a,b", 'Title with "quotes", commas\nand a newline', "d", ("X",), None, 0.1 + 0.2,
              {"k": "v"})],
        [Interaction("user, one", "a,b", 1.5e9 + 0.123456, 3.25, "add,to,cart"),
         Interaction("ü", "a,b", -1.0, None, None)],
        has_timestamps=False,
        user_aliases={"0": "user, one"},
    )
    save_generic(ds, tmp_path / "odd")
    assert_same_dataset(load_generic(tmp_path / "odd"), ds)


@pytest.mark.parametrize(
    ("item_lines", "line", "match"),
    [
        (['{"item_id": "a", "title": "A"}', '{"item_id": "b", "title": "B"'], 2, "invalid json"),
        (['{"item_id": "a", "title": "A"}', '{"item_id": "b"}'], 2, "missing required key 'title'"),
        (['{"title": "A"}'], 1, "missing required key 'item_id'"),
        (['{"item_id": "a", "title": "A"}', "", '{"item_id": "a", "title": "A2"}'], 3,
         "duplicate item_id"),
        (['{"item_id": "a", "title": "A", "price": "cheap"}'], 1, "'price' must be a json number"),
        (['{"item_id": "a", "title": "A", "also_in": "War"}'], 1, "'also_in' must be a list"),
        (['{"item_id": "a", "title": "A", "also_in": ["War", ""]}'], 1, "'also_in' must be a list"),
        # issue 14: a price given as a string was accepted; text fields had no limit
        (['{"item_id": "a", "title": "A", "price": "12.5"}'], 1, "'price' must be a json number"),
        (['{"item_id": "a", "title": "A", "description": "' + "d" * 50_001 + '"}'], 1,
         "description is 50,001 characters, over the limit of 50,000"),
        (['{"item_id": "a", "title": "' + "t" * 2_001 + '"}'], 1, "title is 2,001 characters"),
        (['{"item_id": "a", "title": "A", "description": "' + "d" * 600_000 + '"}'], 1,
         "line is 600,0"),
        (['{"item_id": "a", "title": "A", "price": -1}'], 1, ">= 0"),
        (['{"item_id": "a", "title": "A", "category": [1, 2]}'], 1, "category"),
        (['{"item_id": "a", "title": "A", "attributes": {"x": [1]}}'], 1, "attribute 'x'"),
        (['["a", "A"]'], 1, "expected a json object"),
    ],
)
def test_generic_malformed_items(tmp_path, item_lines, line, match):
    folder = write_generic(tmp_path / "shop", item_lines=item_lines, interactions=None)
    expect_data_error(load_generic, folder, file="items.jsonl", line=line, match=match)


HEADER = "user_id,item_id,timestamp,rating,event\n"


@pytest.mark.parametrize(
    ("csv_text", "line", "match"),
    [
        (HEADER + "alice,sku-1,1700000000,5,purchase\nbob,nope,1700000000,,\n", 3,
         "unknown item_id 'nope'"),
        (HEADER + "alice,sku-1,1700000000,5\n", 2, "expected 5"),
        (HEADER + "alice,sku-1,1700000000,great,\n", 2, "'rating' must be a number"),
        (HEADER + "alice,sku-1,1700000000,5,\nalice,sku-1,last tuesday,5,\n", 3, "timestamp"),
        (HEADER + "alice,sku-1,nan,5,\n", 2, "finite"),
        ("user_id,item_id,rating\nalice,sku-1,5\n", 1, "required column 'timestamp'"),
        ("alice,sku-1,1700000000\n", 1, "unknown column 'alice'"),
        ("user_id,item_id,timestamp,price\n", 1, "unknown column 'price'"),
        (HEADER + ",sku-1,1700000000,,\n", 2, "'user_id' is empty"),
    ],
)
def test_generic_malformed_interactions(tmp_path, csv_text, line, match):
    folder = write_generic(tmp_path / "shop", interactions=csv_text)
    expect_data_error(load_generic, folder, file="interactions.csv", line=line, match=match)


def test_generic_malformed_interactions_jsonl(tmp_path):
    folder = write_generic(tmp_path / "shop", interactions=None)
    path = folder / "interactions.jsonl"
    path.write_text('{"user_id": "u", "item_id": "sku-1", "timestamp": 1}\n'
                    '{"user_id": "u", "item_id": "sku-1"}\n')
    expect_data_error(load_generic, folder, file="interactions.jsonl", line=2,
                      match="missing required key 'timestamp'")
    path.write_text('{"user_id": "u", "item_id": "sku-1", "timestamp": 1, "rating": "5 stars"}\n')
    expect_data_error(load_generic, folder, file="interactions.jsonl", line=1, match="rating")


def test_generic_empty_files_and_bad_encoding(tmp_path):
    folder = write_generic(tmp_path / "shop", interactions="")
    expect_data_error(load_generic, folder, file="interactions.csv", line=None, match="empty")
    (folder / "interactions.csv").write_text(HEADER)  # header only: no interactions, fine
    assert load_generic(folder).interactions == []
    (folder / "items.jsonl").write_text("\n\n")
    expect_data_error(load_generic, folder, file="items.jsonl", line=None, match="empty")
    (folder / "items.jsonl").write_bytes(b'{"item_id": "a", "title": "A"}\n'
                                         b'{"item_id": "b", "title": "Caf\xe9"}\n')
    expect_data_error(load_generic, folder, file="items.jsonl", line=2, match="encoding")


def test_generic_bad_dataset_json(tmp_path):
    folder = write_generic(tmp_path / "shop")
    (folder / "dataset.json").write_text('{\n  "name": "x",\n}\n')
    expect_data_error(load_generic, folder, file="dataset.json", line=3, match="invalid json")


# =========================================================================== detection


def test_detect_format(tmp_path):
    assert detect_format(write_ml(tmp_path / "ml")) == "movielens"
    assert detect_format(simple_recbole(tmp_path / "sci")) == "recbole"
    assert detect_format(write_generic(tmp_path / "shop")) == "generic"
    assert detect_format(str(tmp_path / "ml" / "u.data")) == "movielens"  # a file -> its folder


def test_load_dataset_dispatches(tmp_path):
    assert load_dataset(write_ml(tmp_path / "ml")).name == "ml-100k"
    assert load_dataset(str(simple_recbole(tmp_path / "sci"))).name == "scientific"
    assert load_dataset(write_generic(tmp_path / "shop")).name == "shop"


def test_load_dataset_unknown_layout_and_missing_folder(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    err = expect_data_error(load_dataset, tmp_path / "junk", file="junk", line=None)
    for expected in ("u.data", "u.item", "items.jsonl", "interactions.csv", "*.inter"):
        assert expected in str(err)
    err = expect_data_error(load_dataset, tmp_path / "nowhere", file="nowhere", line=None,
                            match="not found")
    assert "items.jsonl" in str(err)


def test_load_dataset_none_returns_demo_shop(monkeypatch):
    demo = Dataset("demo", [Item("x", "X")], [])
    fake = types.ModuleType("recagent.catalog.demo_shop")
    fake.generate_demo_shop = lambda config=None: demo
    monkeypatch.setitem(sys.modules, "recagent.catalog.demo_shop", fake)
    assert load_dataset(None) is demo
