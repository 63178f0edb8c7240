"""Train a RecBole sequential model and score histories for ``evals.recbole_peer``.

This script runs with the RecBole virtualenv's python (numpy < 2, pandas 2.1, RecBole 1.2.1),
never inside recagent's: it imports nothing from recagent. Usage::

    python _recbole_runner.py WORKDIR

WORKDIR holds ``job.json`` (model, RecBole config, item ids in catalog order, time cap) and
``rb/rb.inter`` (the training split as a RecBole atomic file). The script trains with RecBole's
own Trainer (early stopping on RecBole's leave-one-out valid split carved from that training
data), keeps the best epoch's weights in memory, and prints one JSON line ``{"ready": ...}`` to
stdout. It then answers requests on stdin, one JSON line each: ``{"queries": PATH, "out":
PATH}`` where PATH holds ``{"histories": [[item id, ...], ...]}``; it writes a float32
(n_histories, n_catalog_items) matrix to ``out`` (``.npy``; NaN for items RecBole never saw
and for empty histories) and prints ``{"done": out}``. EOF ends it.

Checkpoints are never written or read, so torch >= 2.6's ``torch.load(weights_only=True)``
default (which cannot load RecBole's pickled checkpoints) does not come into it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path


class _TimeUp(Exception):
    """Raised from the epoch callback when the next epoch would end past the time cap."""


def _log(message: str) -> None:
    print(f"[recbole-runner] {message}", file=sys.stderr, flush=True)


def _exit_with_parent(workdir: Path, interval: float = 2.0) -> None:
    """End this process, removing ``workdir``, when recagent (the parent) is gone (killed
    before it could clean up): nobody will ask for scores."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                shutil.rmtree(workdir, ignore_errors=True)
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(workdir: Path) -> None:
    _exit_with_parent(workdir)
    protocol = sys.stdout
    sys.stdout = sys.stderr  # RecBole and its dependencies print; keep stdout for the protocol
    job = json.loads((workdir / "job.json").read_text(encoding="utf-8"))

    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(int(job.get("threads", 1)))
    start = time.perf_counter()
    config = Config(model=job["model"], dataset="rb", config_dict=job["config"])
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    prepared = time.perf_counter()

    cap = float(job["max_seconds"])
    best: dict = {"score": -float("inf"), "epoch": -1, "state": None}
    epochs_run = [0]

    def on_epoch(epoch: int, valid_score: float) -> None:
        epochs_run[0] = epoch + 1
        if valid_score > best["score"]:
            best.update(score=float(valid_score), epoch=epoch,
                        state=copy.deepcopy(model.state_dict()))
        elapsed = time.perf_counter() - prepared
        _log(f"epoch {epoch} valid {config['valid_metric']} {valid_score:.4f} "
             f"({elapsed:.0f} s)")
        if elapsed + elapsed / (epoch + 1) > cap:  # the next epoch would end past the cap
            raise _TimeUp

    stopped = "epochs"
    try:
        trainer.fit(train_data, valid_data, verbose=False, saved=False, callback_fn=on_epoch)
        if epochs_run[0] < config["epochs"]:
            stopped = "early stopping"
    except _TimeUp:
        stopped = "time cap"
    trained = time.perf_counter()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()

    token_id = dataset.field2token_id[config["ITEM_ID_FIELD"]]  # token -> RecBole's id
    n_items = len(job["item_ids"])
    # column of each RecBole id in our catalog order (-1: padding / unknown)
    rb_to_ours = np.full(dataset.item_num, -1, dtype=np.int64)
    for ours, item in enumerate(job["item_ids"]):
        rb = token_id.get(item)
        if rb is not None:
            rb_to_ours[rb] = ours
    known = rb_to_ours >= 0
    max_len = int(config["MAX_ITEM_LIST_LENGTH"])
    ready = {
        "prepare_seconds": prepared - start,
        "train_seconds": trained - prepared,
        "epochs_run": epochs_run[0],
        "best_epoch": best["epoch"] + 1,
        "best_valid_score": best["score"],
        "valid_metric": config["valid_metric"],
        "stopped": stopped,
        "n_items_known": int(known.sum()),
    }
    print(json.dumps({"ready": ready}), file=protocol, flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        histories = json.loads(Path(request["queries"]).read_text(encoding="utf-8"))["histories"]
        out = np.full((len(histories), n_items), np.nan, dtype=np.float32)
        seqs = [[token_id[i] for i in h if i in token_id][-max_len:] for h in histories]
        rows = [r for r, s in enumerate(seqs) if s]
        for lo in range(0, len(rows), 512):
            batch = rows[lo : lo + 512]
            item_seq = torch.zeros((len(batch), max_len), dtype=torch.long)
            for k, r in enumerate(batch):
                item_seq[k, : len(seqs[r])] = torch.tensor(seqs[r])
            lengths = torch.tensor([len(seqs[r]) for r in batch], dtype=torch.long)
            inter = Interaction({model.ITEM_SEQ: item_seq, model.ITEM_SEQ_LEN: lengths})
            with torch.no_grad():
                scores = model.full_sort_predict(inter).reshape(len(batch), -1).numpy()
            out[np.asarray(batch)[:, None], rb_to_ours[known][None, :]] = scores[:, known]
        np.save(request["out"], out)
        print(json.dumps({"done": request["out"]}), file=protocol, flush=True)


if __name__ == "__main__":
    workdir = Path(sys.argv[1])
    del sys.argv[1:]  # RecBole's Config reads command-line arguments as settings
    main(workdir)
