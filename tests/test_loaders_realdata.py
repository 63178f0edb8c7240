"""The loaders on the real datasets (MovieLens 100K, UniSRec's Amazon "Scientific")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recagent.catalog.load import detect_format, load_dataset

pytestmark = pytest.mark.realdata

# Full sequences rebuilt from all train/valid/test rows. The test rows alone give 59,384
# (their histories are capped at 50 items); the UniSRec paper reports 59,427.
SCIENTIFIC_INTERACTIONS = 59_427


def dataset_dir(real_data_dir: Path, name: str, marker: str) -> Path:
    folder = real_data_dir / name
    if not (folder / marker).is_file():
        pytest.skip(f"{folder / marker} not found (set RECAGENT_DATA_DIR to the data folder)")
    return folder


def test_movielens_100k(real_data_dir):
    folder = dataset_dir(real_data_dir, "ml-100k", "u.data")
    assert detect_format(folder) == "movielens"
    start = time.perf_counter()
    ds = load_dataset(folder)
    elapsed = time.perf_counter() - start
    assert (len(ds.users), len(ds.items), len(ds.interactions)) == (943, 1682, 100_000)
    assert elapsed < 2.0, f"loading ML-100K took {elapsed:.2f} s"
    assert ds.item("1").title == "Toy Story (1995)"
    assert ds.item("1").attributes["genres"] == "Animation, Children's, Comedy"
    assert any("Misérables" in item.title for item in ds.items.values())
    assert ds.item("267").title == "unknown"
    assert {i.rating for i in ds.interactions} == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_amazon_scientific(real_data_dir):
    folder = dataset_dir(real_data_dir, "amazon-scientific", "Scientific.test.inter")
    assert detect_format(folder) == "recbole"
    start = time.perf_counter()
    ds = load_dataset(folder)
    elapsed = time.perf_counter() - start
    assert ds.name == "scientific" and not ds.has_timestamps
    assert (len(ds.users), len(ds.items)) == (8442, 4385)
    assert len(ds.interactions) == SCIENTIFIC_INTERACTIONS >= 59_384
    assert elapsed < 5.0, f"loading Scientific took {elapsed:.2f} s"
    # every user is reachable by reviewer id and by integer index
    assert ds.history("0") == ds.history("ABW8NXS7SV55K")
    assert min(len(h) for h in ds.histories.values()) >= 5
    roll = ds.item("B0000223SI")
    assert roll.brand == "PORTER-CABLE"
    assert roll.title.endswith("Adhesive-Backed Sanding Roll")
    path = "Industrial & Scientific Abrasive & Finishing Products Manual Sanding Products Sanding Rolls"
    assert roll.category == (path,)
