"""RecBole peers (evals/recbole_peer.py): export, read-back and the subprocess protocol.

Everything but the ``slow`` test runs without RecBole: a fake runner script stands in for
``_recbole_runner.py``. The ``slow`` test trains the real models in the RecBole virtualenv
named by RECAGENT_RECBOLE_PYTHON and skips when there is none.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from co_bought import ITEM_IDS, co_bought_dataset

from recagent.catalog.errors import DataError, RecAgentError
from recagent.catalog.model import Dataset, Interaction
from recagent.evals import recbole_peer
from recagent.evals.peers import peer_scorer
from recagent.evals.recbole_peer import (
    RECBOLE_PEERS,
    RecBolePeer,
    find_recbole_python,
    read_scores,
    write_atomic,
)
from recagent.protocol.ranking import evaluate_scorer
from recagent.protocol.split import leave_one_out


def _dataset() -> Dataset:
    return co_bought_dataset(tied_timestamps=True)


def _read_inter(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0].split("\t"), rows


def test_export_holds_exactly_the_training_split(tmp_path):
    split = leave_one_out(_dataset())
    path = write_atomic(split.train, tmp_path)
    assert path == tmp_path / "rb" / "rb.inter"
    header, rows = _read_inter(path)
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    exported: dict[str, list[tuple[str, float]]] = {}
    for user, item, ts in rows:
        exported.setdefault(user, []).append((item, float(ts)))
    assert len(exported) == len(split.sequences)
    held_out = 0
    for r, (user, seq) in enumerate(split.sequences.items()):
        got = exported[f"u{r}"]
        # our order, with the position as timestamp: RecBole's sort keeps it despite ties
        assert [t for _, t in got] == list(range(len(got)))
        if user in split.users:
            assert [i for i, _ in got] == [x.item_id for x in seq[:-2]]
            # no validation or test item of this user, at any position
            assert seq[-1].item_id not in [i for i, _ in got][len(seq) - 2:]
            held_out += 2
        else:
            assert [i for i, _ in got] == [x.item_id for x in seq]
    assert len(rows) == sum(len(s) for s in split.sequences.values()) - held_out
    # the stage's targets are nowhere in the file for users evaluated on them
    for stage in ("valid", "test"):
        users, histories, targets = split.cases(stage)
        for k, (user, target) in enumerate(zip(users, targets, strict=True)):
            r = list(split.sequences).index(user)
            assert len(exported[f"u{r}"]) <= len(histories[k])
            if target not in [x.item_id for x in histories[k]]:
                assert target not in [i for i, _ in exported[f"u{r}"]]


def test_export_refuses_ids_that_break_the_format(tmp_path):
    with pytest.raises(DataError, match="atomic file"):
        write_atomic([[Interaction("u", "a\tb", 0.0)]], tmp_path)


def test_read_scores_puts_unknown_items_below_everything(tmp_path):
    raw = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [0.5, -2.0, np.nan]],
                   dtype=np.float32)
    np.save(tmp_path / "s.npy", raw)
    scores = read_scores(tmp_path / "s.npy", 3, 3)
    np.testing.assert_array_equal(scores[0], [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(scores[1], [0.0, 0.0, 0.0])  # cold row: ties, catalog order
    np.testing.assert_array_equal(scores[2], [0.5, -2.0, -3.0])
    assert scores.dtype == np.float32
    with pytest.raises(RecAgentError, match="shape"):
        read_scores(tmp_path / "s.npy", 2, 3)


def test_missing_venv_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("RECAGENT_RECBOLE_PYTHON", raising=False)
    with pytest.raises(RecAgentError, match="RECAGENT_RECBOLE_PYTHON is not set.*recbole==1.2.1"):
        find_recbole_python()
    monkeypatch.setenv("RECAGENT_RECBOLE_PYTHON", str(tmp_path / "nope" / "python"))
    for name in RECBOLE_PEERS:
        with pytest.raises(RecAgentError, match="is not a file"):
            peer_scorer(name, _dataset())
    assert peer_scorer("recbole-cl4srec", _dataset()) is None  # RecBole 1.2.1 has no CL4SRec


def test_job_trains_on_a_valid_split_carved_from_training(tmp_path):
    peer = RecBolePeer(_dataset(), model="SASRec", python=sys.executable, max_len=7)
    job = peer.job(tmp_path)
    assert job["model"] == "SASRec"
    assert job["item_ids"] == ITEM_IDS
    config = job["config"]
    assert config["eval_args"]["split"] == {"LS": "valid_only"}
    assert config["eval_args"]["order"] == "TO"
    assert config["MAX_ITEM_LIST_LENGTH"] == 7
    assert config["data_path"] == str(tmp_path)


FAKE_RUNNER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    workdir = Path(sys.argv[1])
    job = json.loads((workdir / "job.json").read_text())
    lines = (workdir / "rb" / "rb.inter").read_text().splitlines()[1:]
    seen = sorted({line.split("\\t")[1] for line in lines})
    print(json.dumps({"ready": {"prepare_seconds": 0.1, "train_seconds": 0.2, "epochs_run": 3,
                                "best_epoch": 2, "best_valid_score": 0.5,
                                "valid_metric": "NDCG@10", "stopped": "early stopping",
                                "n_items_known": len(seen)}}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        histories = json.loads(Path(request["queries"]).read_text())["histories"]
        # score = 1 + how often the item follows the history's last item in training; NaN if unseen
        out = np.full((len(histories), len(job["item_ids"])), np.nan, dtype=np.float32)
        for r, h in enumerate(histories):
            for c, item in enumerate(job["item_ids"]):
                if item in seen and h:
                    out[r, c] = 1.0 + sum(
                        a.split("\\t")[1] == h[-1] and b.split("\\t")[1] == item
                        and a.split("\\t")[0] == b.split("\\t")[0]
                        for a, b in zip(lines, lines[1:]))
        np.save(request["out"], out)
        print(json.dumps({"done": request["out"]}), flush=True)
    """
)


def test_subprocess_protocol_with_a_fake_runner(tmp_path, monkeypatch):
    runner = tmp_path / "fake_runner.py"
    runner.write_text(FAKE_RUNNER, encoding="utf-8")
    monkeypatch.setattr(recbole_peer, "RUNNER", runner)
    dataset = _dataset()
    split = leave_one_out(dataset)
    peer = RecBolePeer(dataset, model="SASRec", python=sys.executable)
    result = evaluate_scorer(peer, split, stage="test")
    assert peer.fit_seconds_detail["epochs"] == 3.0
    in_train = {x.item_id for h in split.train for x in h}
    assert peer.fit_info["n_items_known"] == len(in_train) == 4  # the noise items are held out
    assert 0.0 <= result.metrics["recall@10"] <= 1.0
    scores = peer.score([[Interaction("q", "alpha", 0.0)], []])
    omega, beta = dataset.item_index["omega"], dataset.item_index["beta"]
    assert "omega" not in in_train
    assert int(np.argmax(scores[0])) == beta
    known = [dataset.item_index[i] for i in in_train]
    assert scores[0, omega] == pytest.approx(scores[0, known].min() - 1.0)
    np.testing.assert_array_equal(scores[1], 0.0)
    workdir = peer._workdir
    peer.close()
    assert workdir is not None and not workdir.exists()
    with pytest.raises(RuntimeError, match="before fit"):
        peer.score([[Interaction("q", "alpha", 0.0)]])


def test_a_crashing_runner_is_reported_with_its_log(tmp_path, monkeypatch):
    runner = tmp_path / "bad_runner.py"
    runner.write_text("import sys\nprint('numpy boom', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(recbole_peer, "RUNNER", runner)
    peer = RecBolePeer(_dataset(), model="SASRec", python=sys.executable)
    with pytest.raises(RecAgentError, match=r"(?s)exited with code 3.*numpy boom"):
        peer.fit(leave_one_out(_dataset()).train)
    peer.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", RECBOLE_PEERS)
def test_real_recbole_scores_the_given_sequences(name):
    python = os.environ.get("RECAGENT_RECBOLE_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("set RECAGENT_RECBOLE_PYTHON to a RecBole 1.2.1 virtualenv's python "
                    "(see recbole_peer.INSTALL_HINT)")
    dataset = _dataset()
    peer = peer_scorer(name, dataset, max_len=5, epochs=30, stopping_step=30,
                       train_batch_size=32, learning_rate=1e-2, max_minutes=3,
                       topk=[3], valid_metric="NDCG@3",  # RecBole's top-10 needs > 10 items
                       # BERT4Rec masks int(ratio * max_len) slots: at 0.2 a batch of these
                       # short sequences can have nothing masked (loss 0/0 = NaN)
                       **({"mask_ratio": 0.6} if name == "recbole-bert4rec" else {}))
    # "zeta" is never in training: the model does not know it.
    train = [[x for x in seq if x.item_id != "zeta"] for seq in dataset.histories.values()]
    try:
        peer.fit(train)
        assert peer.fit_seconds_detail["train"] > 0
        assert peer.fit_info["n_items_known"] == len(ITEM_IDS) - 1
        query = [
            [Interaction("a", "alpha", 0.0)],
            [Interaction("b", "zeta", 0.0)],  # only an unknown item: a cold row
            [Interaction("c", "mu", 0.0), Interaction("c", "zeta", 1.0),
             Interaction("c", "beta", 2.0)],
        ]
        scores = peer.score(query)
        assert scores.shape == (3, len(ITEM_IDS))
        assert np.isfinite(scores).all()
        zeta = dataset.item_index["zeta"]
        assert scores[0, zeta] == pytest.approx(np.delete(scores[0], zeta).min() - 1.0)
        np.testing.assert_array_equal(scores[1], 0.0)
        if name == "recbole-sasrec":  # next item after "alpha" is "beta" for most users
            row = scores[0].copy()
            row[dataset.item_index["alpha"]] = -np.inf
            assert dataset.item_ids[int(np.argmax(row))] == "beta"
        assert not np.allclose(scores[0], scores[2])
        again = peer.score(query[:1])
        np.testing.assert_allclose(again[0], scores[0], rtol=1e-5, atol=1e-5)
    finally:
        peer.close()
