"""bench_train: saved item embeddings stand in for the index (a bare GPU machine has no
Chroma and no text encoder), and a CUDA run when a GPU is there."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from recagent.evals.bench_train import load_embeddings, main
from recagent.protocol.split import leave_one_out
from recagent.retrieval.seq_model import SeqConfig
from recagent.retrieval.seq_train import SeqScorer, TrainConfig, train_seq_retriever

# Run bench_train with the index stack unimportable, as on a machine that lacks it.
_BLOCKED = """
import sys
for name in ("chromadb", "sentence_transformers", "transformers", "fastapi", "langchain"):
    sys.modules[name] = None
from recagent.evals.bench_train import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_saved_embeddings_train_without_the_index_stack(tiny_shop_dir, tmp_path):
    saved = tmp_path / "emb.npz"
    args = ["--data", str(tiny_shop_dir), "--variants", "full-fp32", "--epochs", "1",
            "--valid-cases", "50", "--home", str(tmp_path / "home")]
    assert main([*args, "--save-embeddings", str(saved), "--out", str(tmp_path / "a.json")]) == 0
    with np.load(saved) as npz:
        assert npz["vectors"].shape == (len(npz["item_ids"]), 384) and npz["vectors"].dtype == np.float16

    out = tmp_path / "b.json"
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *args, "--embeddings", str(saved), "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    run = report["runs"]["full-fp32"]
    assert report["device"] == "cpu" and len(run["history"]) == 1
    assert run["best_valid_ndcg@10"] > 0
    assert "| full-fp32 | 1 | 1 |" in out.with_suffix(".md").read_text()


def test_embeddings_of_other_items_are_refused(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, item_ids=np.asarray(["a", "b"]), vectors=np.zeros((2, 4), np.float16))
    assert load_embeddings(path, ["a", "b"]).dtype == np.float32
    with pytest.raises(SystemExit, match="not this dataset's 2 items in order"):
        load_embeddings(path, ["b", "a"])
    with pytest.raises(SystemExit, match="cannot read"):
        load_embeddings(tmp_path / "missing.npz", ["a"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_learns_and_reloads_on_the_cpu(tiny_shop, tmp_path):
    split = leave_one_out(tiny_shop)
    text = np.random.default_rng(0).normal(size=(len(tiny_shop.items), 32)).astype(np.float32)
    seq = SeqConfig(max_len=16, dim=32, layers=1, heads=2)
    config = TrainConfig(epochs=6, patience=10, device="cuda", precision="bf16", valid_cases=80)
    result = train_seq_retriever(split, text, tmp_path, seq_config=seq, config=config,
                                 resume=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    users = [split.train[k] for k in range(5)]
    on_gpu = SeqScorer.load(tmp_path, tiny_shop, "cuda").score(users)
    on_cpu = SeqScorer.load(tmp_path, tiny_shop, "cpu").score(users)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)
