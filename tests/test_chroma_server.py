"""The index and the CLI against a real Chroma server (`chroma run`) on loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recagent.catalog import IndexUnavailable
from recagent.catalog.load import load_dataset
from recagent.retrieval.index import ItemIndex, open_chroma
from recagent.retrieval.text import item_text

pytestmark = pytest.mark.integration

CHROMA = Path(sys.executable).parent / "chroma"
READY_DEADLINE_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def chroma_server(workdir: Path) -> Iterator[str]:
    """Run `chroma run` on a free loopback port until the block ends; yields its URL."""
    if not CHROMA.is_file():
        pytest.fail(f"Chroma server CLI not found at {CHROMA}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "chroma-server.log"
    cmd = [str(CHROMA), "run", "--path", str(workdir / "db"), "--host", "127.0.0.1",
           "--port", str(port)]
    with log.open("wb") as sink:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                open_chroma(url=url)
                break
            except IndexUnavailable:
                if time.monotonic() > deadline:
                    pytest.fail(f"chroma server not ready after {READY_DEADLINE_S}s:\n{_tail(log)}")
                time.sleep(0.2)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture(scope="module")
def server_index(server_url, tiny_shop, encoder) -> ItemIndex:
    index = ItemIndex(open_chroma(url=server_url), tiny_shop, encoder)
    stats = index.build()
    n = len(tiny_shop.items)
    assert (stats.total, stats.encoded, stats.deleted) == (n, n, 0)
    return index


def test_build_over_http_is_current_and_incremental(server_index, server_url, tiny_shop, encoder):
    assert server_index.is_current()
    # A second client (a new process would do the same) sees a complete index: nothing to encode.
    again = ItemIndex(open_chroma(url=server_url), tiny_shop, encoder).build()
    assert (again.encoded, again.deleted, again.unchanged) == (0, 0, len(tiny_shop.items))


def test_search_and_filters_over_http(server_index, tiny_shop, encoder):
    item = tiny_shop.items[tiny_shop.item_ids[7]]
    query = encoder.encode([item_text(item)])
    hits = server_index.search(query, 5)[0]
    assert hits[0].item_id == item.item_id and hits[0].score == pytest.approx(1.0, abs=1e-3)
    other = next(i for i in tiny_shop.items.values() if i.brand and i.brand != item.brand)
    branded = server_index.search(query, 10, where={"brand": other.brand})[0]
    assert branded and {h.metadata["brand"] for h in branded} == {other.brand}


def test_embeddings_over_http_are_aligned(server_index, tiny_shop, encoder):
    matrix = server_index.embeddings()
    assert matrix.shape == (len(tiny_shop.items), encoder.dimension)
    some = tiny_shop.item_ids[42]
    expected = encoder.encode([item_text(tiny_shop.items[some])])[0]
    sims = matrix @ expected  # equal up to bf16 rounding, and no other row is as close
    assert sims[tiny_shop.item_index[some]] > 0.999
    assert int(np.argmax(sims)) == tiny_shop.item_index[some]


def test_cli_index_and_recommend_against_the_server(server_index, server_url, tiny_shop_dir):
    from recagent.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["index", "--data", str(tiny_shop_dir), "--chroma-url", server_url])
    assert built.exit_code == 0, built.output
    n_items = len(load_dataset(tiny_shop_dir).items)
    # Same dataset and encoder as server_index: the CLI finds that collection on the server.
    assert f"{n_items} items (0 encoded, {n_items} unchanged" in built.stdout

    user = load_dataset(tiny_shop_dir).users[0]
    rec = runner.invoke(
        app,
        ["recommend", "--data", str(tiny_shop_dir), "--user", user, "--json",
         "--chroma-url", server_url],
    )
    assert rec.exit_code == 0, rec.output
    payload = json.loads(rec.stdout)
    assert payload["user"] == user
    recs = payload["recommendations"]
    assert len(recs) == 10 and len({r["item_id"] for r in recs}) == 10
    assert all(r["evidence"] for r in recs)


def test_a_stopped_server_is_a_clear_error(tmp_path):
    with chroma_server(tmp_path) as url:
        open_chroma(url=url).heartbeat()
    with pytest.raises(IndexUnavailable, match=f"cannot reach the Chroma server at {url}"):
        open_chroma(url=url)
