"""``recagent train-retriever``: the contrastively trained sequence retriever."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recagent.catalog.errors import RecAgentError
from recagent.cli._common import (
    ChromaOpt,
    DataOpt,
    EncoderOpt,
    app,
    err,
    make_runtime,
    out,
    user_errors,
)


@app.command("train-retriever")
def train_retriever(
    data: DataOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Checkpoint folder "
                       "(default: $RECAGENT_HOME/models/<dataset>-seqrec).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs (early stopping ends sooner).")] = 200,
    max_minutes: Annotated[float, typer.Option(help="Stop after this much training time.")] = 15.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    patience: Annotated[int, typer.Option(min=1, help="Stop after this many epochs without a "
                        "better validation NDCG@10.")] = 30,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    schedule: Annotated[str, typer.Option(help="constant, or cosine: warm-up then cosine decay "
                        "to 0 at --epochs (set --epochs to what fits in --max-minutes).")] = "constant",
    negatives: Annotated[int | None, typer.Option(min=0, help="Negatives per batch: 0 = the "
                         "whole catalog (full softmax), N = the batch's items plus N drawn ones "
                         "(default: full up to 20,000 items, else 1,024).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, bf16 (autocast) or auto (bf16 where the "
                         "CPU has AVX-512 bf16 / AMX, or on a bf16 GPU).")] = "fp32",
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore a checkpoint to resume from.")] = False,
    encoder: EncoderOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Train the sequence retriever on the training split (validation picks the epoch)."""
    from recagent.protocol.split import leave_one_out
    from recagent.retrieval.registry import RETRIEVERS
    from recagent.retrieval.seq_train import TrainConfig, default_negatives, train_seq_retriever

    with user_errors():
        rt = make_runtime(data, encoder, chroma_url)
        with err().status("Loading dataset and encoder..."):
            split = leave_one_out(rt.dataset)
            _ = rt.encoder.model
        if not split.users:
            raise RecAgentError(f"dataset {rt.dataset.name!r} has no user with 3+ interactions")
        if schedule not in ("constant", "cosine"):
            raise RecAgentError(f"--schedule must be constant or cosine, not {schedule!r}")
        if precision not in ("fp32", "bf16", "auto"):
            raise RecAgentError(f"--precision must be fp32, bf16 or auto, not {precision!r}")
        rt.ensure_index(show_progress=True)
        target = out_dir or rt.model_dir("seqrec")
        result = train_seq_retriever(
            split,
            rt.index.embeddings(),
            target,
            config=TrainConfig(epochs=epochs, max_minutes=max_minutes, device=device, seed=seed,
                               patience=patience, lr=lr, schedule=schedule, precision=precision,
                               negatives=(default_negatives(len(rt.dataset.items))
                                          if negatives is None else negatives)),
            resume=not fresh,
            show_progress=True,
            extra_metadata={"encoder": rt.encoder.name, "encoder_version": rt.encoder.version},
        )
        # The product serves seqrec fused with item-kNN (text for items without interactions);
        # its weight and cold offset are tuned on validation once per checkpoint, here, so the
        # first `recommend` does not wait for it.
        with err().status("Tuning the fusion (item-kNN; text for new items) on validation..."):
            RETRIEVERS.create("fusion", rt.context(target, split))
        choice = json.loads((target / "fusion.json").read_text())
    valid = result.best_valid
    out().print(
        f"[green]trained[/] seqrec on {rt.dataset.name}: best epoch {result.best_epoch} of "
        f"{result.epochs_run}, validation R@10 {valid.get('recall@10', 0):.4f} "
        f"N@10 {valid.get('ndcg@10', 0):.4f}, {result.seconds:.0f}s -> {target}\n"
        f"[green]fusion[/] with {choice['variant']}, weight {choice['weight']:g}: validation "
        f"R@10 {choice['valid']['recall@10']:.4f} N@10 {choice['valid']['ndcg@10']:.4f}; "
        + ("new items (no interactions) at the floor" if choice["cold_offset"] is None else
           f"new items (no interactions) by text, offset {choice['cold_offset']:g}")
        + " (recommend uses it)",
        soft_wrap=True,
    )
