"""Outside libraries as Retrievers, so our harness measures them on our split and metrics.

* ``ImplicitALS`` ("als"): implicit's CPU AlternatingLeastSquares on the binary user × item
  matrix of the training histories. At scoring time each input history is folded in with
  ``recalculate_user`` (one least-squares solve against the fixed item factors), so items in
  the input that were not in training (the validation item, for the test stage) count.
* ``ImplicitItemKNN`` ("implicit-itemknn"): implicit's Cosine/BM25/TF-IDF item-item model;
  score = input history row @ the model's item × item similarity (what its ``recommend`` does).
* ``RecToolsSASRec`` ("sasrec") and ``RecToolsBERT4Rec`` ("bert4rec"): RecTools transformers.
  They are fit on the training interactions; to score, the input histories become the only
  users of a fresh RecTools ``Dataset`` and ``recommend(k=all known items,
  filter_viewed=False)`` runs the network on exactly those sequences. The ranked lists are
  scattered back into dense rows; items the model never saw get the row's minimum minus 1.

implicit and rectools are imported lazily: the project works without the ``peers`` extra,
and asking for a peer then raises a RecAgentError that says how to install it. The harness
builds them through the retriever registry (``recagent.evals.models`` registers them) with
the settings tuned for the dataset (``TUNED``).
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Dataset
from recagent.protocol.scorer import History
from recagent.retrieval.base import Retriever
from recagent.retrieval.registry import RetrieverContext

__all__ = [
    "PEERS",
    "ImplicitALS",
    "ImplicitItemKNN",
    "RecToolsBERT4Rec",
    "RecToolsSASRec",
    "peer_scorer",
]

PEERS = ("als", "implicit-itemknn", "sasrec", "bert4rec")

INSTALL_HINT = (
    "install the peers extra: pip install -e '.[peers]' && pip install --no-deps rectools==0.19.0"
)


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RecAgentError(f"{module} is not installed ({exc}); {INSTALL_HINT}") from None


def _user_items(histories: Sequence[History], index: dict[str, int]) -> sp.csr_matrix:
    """Binary (len(histories), n_items) CSR matrix: 1 where the history holds the item."""
    rows, cols = [], []
    for r, history in enumerate(histories):
        for item in sorted({index[x.item_id] for x in history}):
            rows.append(r)
            cols.append(item)
    return sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(histories), len(index)),
    )


class _Peer(Retriever):
    """A peer library's model; ``requires`` names the module it needs."""

    requires = ""

    @classmethod
    def from_context(cls, ctx: RetrieverContext) -> _Peer:
        """The registry's factory: the peer with the settings tuned for ``ctx.dataset``."""
        _require(cls.requires)  # fail early, with the install hint
        return cls(ctx.dataset, **TUNED.get(ctx.dataset.name, {}).get(cls.name, {}))


class ImplicitALS(_Peer):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) from the implicit library.

    Confidence = 1 + ``alpha`` for observed pairs (implicit multiplies the binary matrix by
    ``alpha``). ``num_threads`` defaults to 1 (0 = all cores).
    """

    name = "als"
    requires = "implicit"

    def __init__(
        self,
        dataset: Dataset,
        *,
        factors: int = 64,
        regularization: float = 0.01,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.dataset = dataset
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.seed = seed
        self.num_threads = num_threads
        self.model: Any = None
        self.fit_seconds_detail: dict[str, float] = {}

    def fit(self, train: Sequence[History]) -> None:
        als = _require("implicit.cpu.als")
        start = time.perf_counter()
        self.model = als.AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.num_threads,
        )
        threadpoolctl = _require("threadpoolctl")
        # implicit warns (and slows down) when BLAS runs its own threads next to its own
        with threadpoolctl.threadpool_limits(1, "blas"):
            self.model.fit(_user_items(train, self.dataset.item_index), show_progress=False)
        self.fit_seconds_detail = {"train": time.perf_counter() - start}

    def score(self, histories: Sequence[History]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ImplicitALS.score called before fit")
        if not histories:
            return np.zeros((0, len(self.dataset.item_index)), dtype=np.float32)
        query = _user_items(histories, self.dataset.item_index)
        users = self.model.recalculate_user(np.arange(len(histories)), query)
        users = np.asarray(users, dtype=np.float32).reshape(len(histories), -1)
        return users @ np.asarray(self.model.item_factors, dtype=np.float32).T


class ImplicitItemKNN(_Peer):
    """implicit's item-item nearest neighbours (``kind``: "cosine", "bm25" or "tfidf")."""

    name = "implicit-itemknn"
    requires = "implicit"

    def __init__(
        self,
        dataset: Dataset,
        *,
        K: int = 20,  # implicit's own parameter name
        kind: str = "cosine",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        num_threads: int = 1,
    ) -> None:
        if kind not in ("cosine", "bm25", "tfidf"):
            raise ValueError(f"kind must be 'cosine', 'bm25' or 'tfidf', not {kind!r}")
        self.dataset = dataset
        self.K = K
        self.kind = kind
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.num_threads = num_threads
        self.similarity: sp.csr_matrix | None = None
        self.fit_seconds_detail: dict[str, float] = {}

    def fit(self, train: Sequence[History]) -> None:
        nn = _require("implicit.nearest_neighbours")
        start = time.perf_counter()
        if self.kind == "cosine":
            model = nn.CosineRecommender(K=self.K, num_threads=self.num_threads)
        elif self.kind == "bm25":
            model = nn.BM25Recommender(
                K=self.K, K1=self.bm25_k1, B=self.bm25_b, num_threads=self.num_threads
            )
        else:
            model = nn.TFIDFRecommender(K=self.K, num_threads=self.num_threads)
        with warnings.catch_warnings():
            # implicit's own normalisation hands its kNN a COO matrix and warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(_user_items(train, self.dataset.item_index), show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        self.fit_seconds_detail = {"train": time.perf_counter() - start}

    def score(self, histories: Sequence[History]) -> np.ndarray:
        if self.similarity is None:
            raise RuntimeError("ImplicitItemKNN.score called before fit")
        query = _user_items(histories, self.dataset.item_index)
        return np.asarray((query @ self.similarity).todense(), dtype=np.float32)


class _RecToolsTransformer(_Peer):
    """Shared fit/score plumbing for RecTools' SASRec and BERT4Rec.

    The defaults (100 epochs, sequences cut to the last 100 items, 64 factors, 2 blocks,
    full softmax loss) train in about 10 minutes on ML-100K with one CPU thread.
    """

    name = "rectools-transformer"
    requires = "rectools"
    model_class = ""  # attribute of rectools.models

    def __init__(
        self,
        dataset: Dataset,
        *,
        epochs: int = 100,
        n_factors: int = 64,
        n_blocks: int = 2,
        n_heads: int = 2,
        session_max_len: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        dropout_rate: float = 0.2,
        loss: str = "softmax",
        seed: int = 0,
        accelerator: str = "cpu",
        verbose: int = 0,
        **model_kwargs: Any,
    ) -> None:
        self.dataset = dataset
        self.epochs = epochs
        self.params: dict[str, Any] = dict(
            n_factors=n_factors,
            n_blocks=n_blocks,
            n_heads=n_heads,
            session_max_len=session_max_len,
            batch_size=batch_size,
            lr=lr,
            dropout_rate=dropout_rate,
            loss=loss,
            **model_kwargs,
        )
        self.seed = seed
        self.accelerator = accelerator
        self.verbose = verbose
        self.model: Any = None
        self.fit_seconds_detail: dict[str, float] = {}

    def _frame(self, histories: Sequence[History], prefix: str) -> Any:
        """Interactions table: one synthetic user per history (row order = history order).

        Datetime = the real timestamp when the dataset has them, else the position; RecTools
        sorts with a stable sort, so equal timestamps keep the history's order.
        """
        pd = _require("pandas")
        users, items, times = [], [], []
        for r, history in enumerate(histories):
            for pos, inter in enumerate(history):
                users.append(f"{prefix}{r}")
                items.append(inter.item_id)
                times.append(inter.timestamp if self.dataset.has_timestamps else pos)
        return pd.DataFrame(
            {
                "user_id": users,
                "item_id": items,
                "weight": np.ones(len(users), dtype=np.float32),
                "datetime": pd.to_datetime(np.asarray(times, dtype=np.float64), unit="s"),
            }
        )

    def fit(self, train: Sequence[History]) -> None:
        rectools = _require("rectools.dataset")
        models = _require("rectools.models")
        pl = _require("pytorch_lightning")
        torch = _require("torch")
        start = time.perf_counter()
        pl.seed_everything(self.seed, workers=True, verbose=False)
        verbose = self.verbose

        def trainer() -> Any:
            return pl.Trainer(
                max_epochs=self.epochs,
                min_epochs=self.epochs,
                deterministic=True,
                accelerator=self.accelerator,
                devices=1,
                enable_progress_bar=verbose > 0,
                enable_model_summary=verbose > 0,
                logger=False,
                enable_checkpointing=False,
            )

        self.model = getattr(models, self.model_class)(
            epochs=self.epochs,
            deterministic=True,
            verbose=verbose,
            get_trainer_func=trainer,
            recommend_torch_device="cuda" if self.accelerator in ("gpu", "cuda") else "cpu",
            **self.params,
        )
        data = rectools.Dataset.construct(self._frame(train, "u"))
        prepared = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model.fit(data)
        end = time.perf_counter()
        self.fit_seconds_detail = {
            "prepare": prepared - start,
            "train": end - prepared,
            "epochs": float(self.epochs),
        }

    def score(self, histories: Sequence[History]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}.score called before fit")
        rectools = _require("rectools.dataset")
        index = self.dataset.item_index
        out = np.full((len(histories), len(index)), np.nan, dtype=np.float32)
        if not histories:
            return out
        frame = self._frame(histories, "q")
        data = rectools.Dataset.construct(frame)
        users = [f"q{r}" for r in range(len(histories))]
        present = set(frame["user_id"])
        n_known = len(self.model.data_preparator.get_known_item_ids())
        if not present:  # only empty histories: nothing to run the model on
            return np.zeros_like(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "target users were considered cold"
            reco = self.model.recommend(
                users=[u for u in users if u in present],
                dataset=data,
                k=n_known,
                filter_viewed=False,
                add_rank_col=False,
                on_unsupported_targets="ignore",
            )
        rows = reco["user_id"].str.slice(1).astype(np.int64).to_numpy()
        cols = np.fromiter((index[i] for i in reco["item_id"]), dtype=np.int64, count=len(reco))
        out[rows, cols] = reco["score"].to_numpy(dtype=np.float32)
        # Items the model does not know (and cold rows): below everything it scored.
        missing = np.isnan(out)
        if missing.any():
            lowest = np.where(missing, np.inf, out).min(axis=1)
            lowest = np.where(np.isfinite(lowest), lowest - 1.0, 0.0).astype(np.float32)
            out = np.where(missing, lowest[:, None], out)
        return out


class RecToolsSASRec(_RecToolsTransformer):
    """RecTools SASRec (causal self-attention, next-item softmax loss by default)."""

    name = "sasrec"
    model_class = "SASRecModel"


class RecToolsBERT4Rec(_RecToolsTransformer):
    """RecTools BERT4Rec (bidirectional, masked-item objective)."""

    name = "bert4rec"
    model_class = "BERT4RecModel"


_CLASSES: dict[str, type[_Peer]] = {
    c.name: c for c in (ImplicitALS, ImplicitItemKNN, RecToolsSASRec, RecToolsBERT4Rec)
}


def peer_scorer(name: str, dataset: Dataset, **kwargs: Any) -> Retriever | None:
    """The peer model called ``name`` (see PEERS and recbole_peer.RECBOLE_PEERS) with the
    settings ``kwargs``, or None."""
    cls = _CLASSES.get(name)
    if cls is None:
        if name.startswith("recbole-"):  # RecBole runs in its own virtualenv
            from recagent.evals.recbole_peer import recbole_scorer

            return recbole_scorer(name, dataset, **kwargs)
        return None
    _require(cls.requires)  # fail early, with the install hint
    return cls(dataset, **kwargs)


# Settings chosen on the VALIDATION stage (never on test); keyed by Dataset.name.
# Transformers: epochs sized to ~10 min of one CPU thread, sequence length to the data.
TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "ml-100k": {
        "als": {"factors": 32, "regularization": 1.0, "alpha": 1.0, "iterations": 15},
        "implicit-itemknn": {"K": 10, "kind": "tfidf"},
        "sasrec": {"epochs": 100, "session_max_len": 100},
        "bert4rec": {"epochs": 100, "session_max_len": 100},
    },
    "scientific": {
        "als": {"factors": 256, "regularization": 100.0, "alpha": 80.0, "iterations": 30},
        "implicit-itemknn": {"K": 200, "kind": "tfidf"},
        "sasrec": {"epochs": 25, "session_max_len": 20},
        "bert4rec": {"epochs": 25, "session_max_len": 20},
    },
}


def measure(
    path: str, out: str, models: Sequence[str] = PEERS, *, stage: str = "test"
) -> dict[str, Any]:
    """Evaluate the peers on ``path`` with our harness and write the report to ``out``.

    The report is build_report's shape plus ``peer_settings`` and ``fit_seconds_detail``;
    it is rewritten after each model, so a long run keeps what it finished.
    """
    from recagent.catalog.load import load_dataset
    from recagent.evals.report import build_report, write_report
    from recagent.protocol.ranking import evaluate_scorer
    from recagent.protocol.split import leave_one_out

    split = leave_one_out(load_dataset(path))
    tuned = TUNED.get(split.dataset.name, {})
    results, settings, details = [], {}, {}
    report: dict[str, Any] = {}
    for name in models:
        kwargs = tuned.get(name, {})
        scorer = peer_scorer(name, split.dataset, **kwargs)
        assert scorer is not None, name
        results.append(evaluate_scorer(scorer, split, stage=stage))
        settings[name] = kwargs
        details[name] = {k: round(v, 2) for k, v in scorer.fit_seconds_detail.items()}
        report = build_report(split, results, stage=stage, n_users=len(split.users))
        report["peer_settings"] = settings
        report["fit_seconds_detail"] = details
        write_report(report, out)
        print(name, report["models"][name], flush=True)
    return report


if __name__ == "__main__":  # python -m recagent.evals.peers DATA_DIR OUT.json [MODEL ...]
    import sys

    import torch

    torch.set_num_threads(1)
    measure(sys.argv[1], sys.argv[2], sys.argv[3:] or PEERS)
