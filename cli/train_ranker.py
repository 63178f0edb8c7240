"""``recagent train-ranker``: LoRA-tune an LLM to re-rank the retriever's top-N by letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recagent.catalog.errors import RecAgentError
from recagent.cli._common import DataOpt, EncoderOpt, app, err, make_runtime, out, user_errors

CANDIDATE_SOURCES = ("fusion", "seqrec", "itemknn")


@app.command("train-ranker")
def train_ranker_command(
    data: DataOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Adapter folder (default: "
                       "$RECAGENT_HOME/models/<dataset>-ranker).")] = None,
    base: Annotated[Path | None, typer.Option(help="HF checkpoint of the base LLM (default: the "
                    "embedded Gemma-3 270M, converted once under $RECAGENT_HOME/models).")] = None,
    candidates: Annotated[str, typer.Option(help="Candidate source: fusion (needs `recagent "
                          "train-retriever`), seqrec or itemknn.")] = "fusion",
    top_n: Annotated[int, typer.Option(min=2, max=26, help="Candidates per prompt (A..).")] = 20,
    history_tokens: Annotated[int, typer.Option(min=16, help="Token budget of the history.")] = 96,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (validation picks the best).")] = 2,
    examples_per_epoch: Annotated[int | None, typer.Option(help="Seeded sample of training "
                                  "examples per epoch (default: all).")] = None,
    positions: Annotated[int, typer.Option(min=1, help="Newest training positions per user.")] = 1,
    train_users: Annotated[int, typer.Option(min=0, help="Take training positions from a seeded "
                           "sample of this many users (0: all; building candidates costs a "
                           "retriever call per position).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of the adapter.")] = 3e-4,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    lora_layers: Annotated[int, typer.Option(min=0, help="Adapt the last N decoder layers "
                           "(0: all; fewer is faster on a CPU).")] = 6,
    valid_users: Annotated[int, typer.Option(min=0, help="Seeded sample of validation users "
                           "(0: all).")] = 200,
    max_minutes: Annotated[float, typer.Option(help="Stop training after this long.")] = 30.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="auto (bf16 where native), float32 or bfloat16.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore a checkpoint to resume from.")] = False,
    encoder: EncoderOpt = None,
) -> None:
    """Train the LLM ranker on the training split (validation picks the epoch and the blend)."""
    from recagent.evals.models import harness_model
    from recagent.llm.embedded import convert_gguf
    from recagent.llm.ranker import LetterRanker, RankerConfig
    from recagent.llm.ranker_train import RankerTrainConfig, train_ranker
    from recagent.protocol.split import leave_one_out

    with user_errors():
        if candidates not in CANDIDATE_SOURCES:
            raise RecAgentError(f"--candidates must be one of {', '.join(CANDIDATE_SOURCES)}")
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise RecAgentError("--device cuda, but torch sees no CUDA device")
        rt = make_runtime(data, encoder)
        with err().status("Loading dataset, candidates and the base LLM..."):
            split = leave_one_out(rt.dataset)
            if not split.users:
                raise RecAgentError(f"dataset {rt.dataset.name!r} has no user with 3+ interactions")
            scorer = harness_model(rt, candidates, split=split, show_progress=False)
            scorer.fit(split.train)
            checkpoint = base or convert_gguf(rt.settings.home / "models")
            config = RankerConfig(top_n=top_n, history_tokens=history_tokens, lora_r=lora_r,
                                  lora_alpha=2 * lora_r, lora_layers=lora_layers,
                                  noun="movies" if "ml-" in rt.dataset.name else "items")
            target = out_dir or rt.model_dir("ranker")
            ranker = LetterRanker.from_base(checkpoint, config, device=device, dtype=dtype,
                                            trainable=True)
        result = train_ranker(
            split, scorer, ranker, target,
            config=RankerTrainConfig(epochs=epochs, examples_per_epoch=examples_per_epoch,
                                     positions_per_user=positions, train_users=train_users,
                                     batch_size=batch_size, lr=lr,
                                     valid_users=valid_users, seed=seed, device=device,
                                     max_minutes=max_minutes),
            resume=not fresh, show_progress=True,
            extra_metadata={"candidates": candidates, "base_name": Path(checkpoint).name},
        )
    valid = result.best_valid
    out().print(
        f"[green]trained[/] the LLM ranker on {rt.dataset.name} ({result.n_examples} examples, "
        f"{result.steps} steps, {result.seconds:.0f}s): best epoch {result.best_epoch} of "
        f"{result.epochs_run}, blend {result.blend:g} with the {candidates} order, validation "
        f"N@10 {valid.get('ndcg@10', 0):.4f} -> {target}",
        soft_wrap=True, highlight=False,
    )
