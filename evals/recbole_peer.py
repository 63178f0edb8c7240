"""RecBole's SASRec and BERT4Rec as Scorers, trained and scored in RecBole's own virtualenv.

RecBole 1.2.1 (the latest release) cannot be imported for work in recagent's environment:
``Config()`` assigns ``np.float_`` / ``np.complex_`` / ``np.unicode_`` (removed in numpy 2),
its quick-start imports ray 2.6, which imports ``pkg_resources`` (gone from setuptools >= 82),
and its ``Trainer.evaluate(load_best_model=True)`` calls ``torch.load`` without
``weights_only=False`` (torch >= 2.6 refuses its pickled checkpoints). So it lives in a
virtualenv of its own (see ``INSTALL_HINT``) and this module talks to it through a subprocess:

* ``fit`` writes OUR training split (``LeaveOneOutSplit.train``: validation and test items
  removed) as a RecBole atomic file in a temporary folder, one synthetic user per history,
  ``timestamp`` = position so RecBole's time ordering is exactly ours, then starts
  ``_recbole_runner.py`` with the RecBole python. It trains with RecBole's Trainer: early
  stopping on RecBole's leave-one-out valid split carved from that training data (the last
  training item of each history), best epoch kept, a wall-clock cap.
* ``score`` sends the input histories to the same process, which runs the model's
  ``full_sort_predict`` on exactly those sequences (the last ``max_len`` items) and returns a
  dense score matrix in catalog order. Items RecBole never saw get the row's minimum minus 1.
  Masking and metrics are done by our harness, as for every other scorer.

RecBole has no CL4SRec (nor DuoRec) in 1.2.1, so there is no ``recbole-cl4srec``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recagent.catalog.errors import DataError, RecAgentError
from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.retrieval.registry import RetrieverContext

__all__ = [
    "RECBOLE_PEERS",
    "RecBolePeer",
    "find_recbole_python",
    "read_scores",
    "recbole_bert4rec",
    "recbole_sasrec",
    "recbole_scorer",
    "write_atomic",
]

RECBOLE_PEERS = ("recbole-sasrec", "recbole-bert4rec")
_MODELS = {"recbole-sasrec": "SASRec", "recbole-bert4rec": "BERT4Rec"}
RUNNER = Path(__file__).with_name("_recbole_runner.py")

INSTALL_HINT = (
    "RecBole needs its own virtualenv: python3.11 -m venv .venv-recbole && "
    ".venv-recbole/bin/pip install torch==2.13.0 && .venv-recbole/bin/pip install "
    "torch==2.13.0 numpy==1.26.4 pandas==2.1.4 'setuptools>=77.0.3,<81' recbole==1.2.1; then set "
    "RECAGENT_RECBOLE_PYTHON=$PWD/.venv-recbole/bin/python"
)

# Per dataset (Dataset.name): RecBole's model defaults (hidden 64, 2 layers, 2 heads, lr 1e-3,
# CE loss) and batch 256 (more updates per epoch than its 2048). Sequence length: RecBole's 50
# on ML-100K (RecTools used 100, but a RecBole epoch trains on every prefix of every history,
# ~100x a RecTools epoch, so 100 would double the cost of an epoch that already takes ~10
# minutes of one contended core) and the RecTools peers' 20 on Amazon. Not tuned on
# validation: 10 CPU-minutes buy 1 epoch on ML-100K and 6-9 on Amazon.
SETTINGS: dict[str, dict[str, Any]] = {
    "ml-100k": {"max_len": 50, "train_batch_size": 256},
    "scientific": {"max_len": 20, "train_batch_size": 256},
}


def find_recbole_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The RecBole virtualenv's python: ``python``, else $RECAGENT_RECBOLE_PYTHON."""
    configured = python or os.environ.get("RECAGENT_RECBOLE_PYTHON")
    if not configured:
        raise RecAgentError(f"RECAGENT_RECBOLE_PYTHON is not set. {INSTALL_HINT}")
    path = Path(configured)
    if not path.is_file():
        raise RecAgentError(f"RECAGENT_RECBOLE_PYTHON={path} is not a file. {INSTALL_HINT}")
    return path


def write_atomic(train: Sequence[History], directory: Path, name: str = "rb") -> Path:
    """Write ``train`` as RecBole's ``<directory>/<name>/<name>.inter``; returns the file.

    One synthetic user ``u<row>`` per history; ``timestamp`` is the position in the history,
    so RecBole's sort by (user, time) reproduces our order even where real timestamps tie.
    """
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    with path.open("w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for r, history in enumerate(train):
            for pos, inter in enumerate(history):
                item = inter.item_id
                if any(c in item for c in "\t\n\r") or item != item.strip() or not item:
                    raise DataError(f"item id {item!r} cannot be written to a RecBole atomic file")
                f.write(f"u{r}\t{item}\t{pos}\n")
    return path


def read_scores(path: Path, n_rows: int, n_items: int) -> np.ndarray:
    """The runner's score matrix, with NaN (items RecBole never saw) below each row's minimum.

    A row with no finite score (an empty history, or only unknown items) becomes all zeros.
    """
    scores = np.asarray(np.load(path), dtype=np.float32)
    if scores.shape != (n_rows, n_items):
        raise RecAgentError(f"RecBole runner returned shape {scores.shape}, "
                            f"expected {(n_rows, n_items)}")
    missing = np.isnan(scores)
    if missing.any():
        lowest = np.where(missing, np.inf, scores).min(axis=1)
        lowest = np.where(np.isfinite(lowest), lowest - 1.0, 0.0).astype(np.float32)
        scores = np.where(missing, lowest[:, None], scores)
    return scores


def _stop(process: subprocess.Popen, workdir: str) -> None:
    if process.poll() is None:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


class RecBolePeer(Retriever):
    """One RecBole sequential model (``model``: "SASRec" or "BERT4Rec") behind a subprocess."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        model: str,
        name: str | None = None,
        python: str | os.PathLike[str] | None = None,
        max_len: int = 50,
        epochs: int = 200,
        stopping_step: int = 5,
        train_batch_size: int = 256,
        learning_rate: float = 1e-3,
        max_minutes: float = 10.0,
        seed: int = 0,
        threads: int = 1,
        **model_config: Any,
    ) -> None:
        self.dataset = dataset
        self.model = model
        self.name = name or f"recbole-{model.lower()}"
        self.python = find_recbole_python(python)
        self.max_minutes = max_minutes
        self.threads = threads
        self.config: dict[str, Any] = {
            "MAX_ITEM_LIST_LENGTH": max_len,
            "epochs": epochs,
            "stopping_step": stopping_step,
            "train_batch_size": train_batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            **model_config,
        }
        self.fit_seconds_detail: dict[str, float] = {}
        self.fit_info: dict[str, Any] = {}
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize | None = None

    def job(self, workdir: Path) -> dict[str, Any]:
        """What the runner reads: model, full RecBole config, catalog order, time cap."""
        config = {
            "data_path": str(workdir),
            "checkpoint_dir": str(workdir / "saved"),
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "eval_args": {"split": {"LS": "valid_only"}, "order": "TO", "mode": "full",
                          "group_by": "user"},
            "metrics": ["Recall", "NDCG"],
            "topk": [10],
            "valid_metric": "NDCG@10",
            "eval_batch_size": 4096,
            "device": "cpu",
            "use_gpu": False,
            "reproducibility": True,
            "show_progress": False,
            "worker": 0,
            "save_dataset": False,
            "save_dataloaders": False,
            **self.config,
        }
        return {"model": self.model, "config": config, "item_ids": list(self.dataset.item_ids),
                "max_seconds": self.max_minutes * 60.0, "threads": self.threads}

    def fit(self, train: Sequence[History]) -> None:
        self.close()
        start = time.perf_counter()
        workdir = Path(tempfile.mkdtemp(prefix="recagent-recbole-"))
        write_atomic(train, workdir)
        (workdir / "job.json").write_text(json.dumps(self.job(workdir)), encoding="utf-8")
        exported = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads),
               "MKL_NUM_THREADS": str(self.threads), "PYTHONWARNINGS": "ignore"}
        env.pop("PYTHONPATH", None)  # recagent's path must not leak into RecBole's python
        log = (workdir / "runner.log").open("wb")
        process = subprocess.Popen(
            [str(self.python), str(RUNNER), str(workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=workdir, env=env,
            text=True, bufsize=1,
        )
        log.close()
        self._process, self._workdir = process, workdir
        self._finalizer = weakref.finalize(self, _stop, process, str(workdir))
        reply = self._reply()
        info = reply["ready"]
        self.fit_info = info
        self.fit_seconds_detail = {
            "export": exported - start,
            # start-up and imports of RecBole's python, RecBole's dataset and dataloaders
            "prepare": time.perf_counter() - exported - info["train_seconds"],
            "train": info["train_seconds"],
            "epochs": float(info["epochs_run"]),
            "best_epoch": float(info["best_epoch"]),
        }

    def _reply(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            tail = ""
            if self._workdir is not None and (self._workdir / "runner.log").is_file():
                text = (self._workdir / "runner.log").read_text(encoding="utf-8", errors="replace")
                tail = text[-3000:]
            self._process.wait()
            raise RecAgentError(f"the RecBole runner ({self.python}) exited with code "
                                f"{self._process.returncode}:\n{tail}")
        return json.loads(line)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        if self._process is None or self._workdir is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit")
        assert self._process.stdin is not None
        queries, out = self._workdir / "queries.json", self._workdir / "scores.npy"
        queries.write_text(json.dumps({"histories": [[x.item_id for x in h] for h in histories]}),
                           encoding="utf-8")
        self._process.stdin.write(json.dumps({"queries": str(queries), "out": str(out)}) + "\n")
        self._process.stdin.flush()
        self._reply()
        return read_scores(out, len(histories), len(self.dataset.item_ids))

    def close(self) -> None:
        """Stop the runner process and remove its temporary folder."""
        if self._finalizer is not None:
            self._finalizer()
        self._process = self._workdir = self._finalizer = None


def recbole_scorer(name: str, dataset: Dataset, **kwargs: Any) -> RecBolePeer | None:
    """The RecBole peer called ``name`` (see RECBOLE_PEERS), or None when it is not one."""
    model = _MODELS.get(name)
    if model is None:
        return None
    settings = {**SETTINGS.get(dataset.name, {}), **kwargs}
    return RecBolePeer(dataset, model=model, name=name, **settings)



def recbole_sasrec(ctx: RetrieverContext) -> RecBolePeer | None:
    """The registry's "recbole-sasrec"."""
    return recbole_scorer("recbole-sasrec", ctx.dataset)


def recbole_bert4rec(ctx: RetrieverContext) -> RecBolePeer | None:
    """The registry's "recbole-bert4rec"."""
    return recbole_scorer("recbole-bert4rec", ctx.dataset)
