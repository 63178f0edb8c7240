"""``recagent train-reader``: a LoRA adapter that reads shopping requests as the labels do."""

from __future__ import annotations

import json
import shutil
from typing import Annotated

import typer

from recagent.catalog.errors import RecAgentError
from recagent.cli._common import app, err, out, safe, user_errors
from recagent.evals.reader_training import READ_SETS, VALID_SET


@app.command("train-reader")
def train_reader_command(
    train_sets: Annotated[str, typer.Option(help="Comma-separated request sets to train on "
                          "(those whose misses have been read).")] = ",".join(READ_SETS),
    valid_set: Annotated[str, typer.Option(help="The request set that validates the adapter "
                         "(the adapter is used only if it reads more of it right).")] = VALID_SET,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (the epoch that reads most of the "
                      "validation set right is kept).")] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of the adapter.")] = 2e-4,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    max_minutes: Annotated[float, typer.Option(help="Stop training after this long.")] = 40.0,
    seed: Annotated[int, typer.Option()] = 42,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over: discard the adapter "
                     "checkpoint.")] = False,
) -> None:
    """LoRA-tune the instruct model to read requests (the JSON of prompts/parse_constraints)
    as the labelled request sets do, on every catalog at once; keep the adapter (used by every
    turn that reads a request with the embedded instruct model) only if the rules plus the
    adapted reading get more of the validation set's requests exactly right than the rules
    plus the model alone."""
    from tqdm.auto import tqdm

    from recagent.agent.constraints import READER
    from recagent.app.llm_backend import READER_DIR
    from recagent.app.settings import Settings
    from recagent.evals.reader_training import own_products, reading_examples, reading_set, validate
    from recagent.llm.answer_adapter import (
        ADAPTER_DIR,
        AdapterTrainConfig,
        epoch_dir,
        read_adapter_meta,
        train_answer_adapter,
        update_adapter_meta,
    )
    from recagent.llm.instruct import InstructLLM
    from recagent.retrieval.encoder import TextEncoder

    with user_errors():
        settings = Settings.from_env()
        if settings.llm_dtype == "int8":
            raise RecAgentError("train-reader needs the bf16 or fp32 model: unset --llm-dtype int8")
        names = [n.strip() for n in train_sets.split(",") if n.strip()]
        if valid_set in names:
            raise RecAgentError(f"--valid-set {valid_set} is also a training set")
        echo = lambda m: err().print(safe(m), highlight=False)
        # Read as the agent reads: the parsers find categories by meaning with the search encoder.
        encoder = TextEncoder(settings.encoder, dtype=settings.encoder_dtype)
        train = reading_set(names, encoder=encoder, echo=echo)
        valid = reading_set([valid_set], encoder=encoder, echo=echo)
        if not train.requests or not valid.requests:
            raise RecAgentError("no requests to train or validate on (are the datasets there? "
                                "set RECAGENT_DATA_DIR)")
        folder = settings.home / "models" / READER_DIR
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        llm = InstructLLM(settings.home / "models", dtype=settings.llm_dtype)

        def check(model, adapter=None, what="the base model"):
            bar = tqdm(total=len(valid.requests), desc=f"Validating {what}", unit="request")
            try:
                return validate(model, valid, adapter=adapter, progress=lambda: bar.update(1))
            finally:
                bar.close()

        base = check(llm)
        # The model's own product words per training message (None: the label's category
        # name), kept so that a resumed run or one with another set reads only new messages.
        products_file = folder / "own_products.json"
        known = json.loads(products_file.read_text()) if products_file.is_file() else {}
        bar = tqdm(total=len(train.requests), desc="Reading the training requests", unit="request")
        products = own_products(llm, train, known=known, progress=lambda: bar.update(1))
        bar.close()
        products_file.write_text(json.dumps(products, indent=1) + "\n")
        earlier_meta = read_adapter_meta(folder)  # empty after --fresh
        result = train_answer_adapter(
            llm, reading_examples(train, products), reading_examples(valid), folder,
            config=AdapterTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, rank=lora_r,
                                      alpha=2 * lora_r, seed=seed, max_minutes=max_minutes),
            resume=not fresh, show_progress=True, keep_epochs=True,
            metadata={"train_sets": names, "valid_set": valid_set,
                      "own_products": sum(p is not None for p in products.values())})
        del llm  # the trained copy (peft layers in place): each epoch is validated as a turn loads it
        # The validation answers carry the labels' category names where training carries the
        # model's own product words, so the loss does not compare epochs: reading does.
        def with_adapter(path):
            return InstructLLM(settings.home / "models", dtype=settings.llm_dtype, adapters={READER: path})

        by_epoch = {}
        for epoch in range(1, result.epochs_run + 1):
            if epoch_dir(folder, epoch).is_dir():
                by_epoch[epoch] = check(with_adapter(epoch_dir(folder, epoch)), READER, f"epoch {epoch}")
        if by_epoch:
            best = max(by_epoch, key=lambda e: (by_epoch[e]["share"] or 0, e))
            shutil.rmtree(folder / ADAPTER_DIR, ignore_errors=True)
            shutil.copytree(epoch_dir(folder, best), folder / ADAPTER_DIR)
            for epoch in by_epoch:
                shutil.rmtree(epoch_dir(folder, epoch), ignore_errors=True)
        else:  # a run resumed from a finished one: its adapter is the epoch that run chose
            # by reading (or, from a run that kept no epochs, its best by loss)
            best = earlier_meta.get("read_epoch") or result.best_epoch
            by_epoch[best] = check(with_adapter(folder / ADAPTER_DIR), READER, "with the adapter")
        adapted = by_epoch[best]
        use = (adapted["share"] or 0) > (base["share"] or 0)
        update_adapter_meta(folder, {"valid_base": base, "valid_adapter": adapted, "use": use,
                                     "read_epoch": best,
                                     "valid_by_epoch": {str(e): v for e, v in by_epoch.items()}})
    out().print(
        f"[green]trained[/] the request-reading adapter ({len(train.requests)} requests, "
        f"{result.steps} steps, {result.seconds:.0f}s; epoch {best} reads best). "
        f"Validation ({valid_set}, {len(valid.requests)} requests) read exactly right: "
        f"{base['share']:.1%} with the model alone, {adapted['share']:.1%} with the adapter -> "
        f"{'used' if use else 'NOT used'} ({safe(str(folder))})", soft_wrap=True, highlight=False)
