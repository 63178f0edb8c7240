"""``recagent train-explainer``: a LoRA adapter that writes explanations the check accepts."""

from __future__ import annotations

import random
from typing import Annotated

import typer

from recagent.catalog.errors import RecAgentError
from recagent.cli._common import DataOpt, EncoderOpt, app, err, make_runtime, out, safe, user_errors

DISTILLED = "distilled.jsonl"
# Each ``--shard I/N`` process writes its own file beside DISTILLED; every run reads them all.
DISTILLED_FILES = "distilled*.jsonl"


def _shard(value: str | None) -> tuple[int, int] | None:
    """``"2/3"`` -> (1, 3): the second of three shards (None: all shoppers)."""
    if value is None:
        return None
    try:
        i, n = (int(p) for p in value.split("/"))
    except ValueError:
        raise RecAgentError(f"--shard wants I/N, like 1/2; got {value!r}") from None
    if not 1 <= i <= n:
        raise RecAgentError(f"--shard {value}: I must be from 1 to N")
    return i - 1, n


@app.command("train-explainer")
def train_explainer_command(
    data: DataOpt = None,
    users: Annotated[int, typer.Option(min=2, help="Simulated shoppers on the training split "
                     "(a seeded sample; about 90 s each on 2 cores).")] = 40,
    samples: Annotated[int, typer.Option(min=1, help="Sentences drawn for an item whose greedy "
                       "sentence fails the check (the first that passes is kept).")] = 6,
    valid_share: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share of the shoppers "
                           "whose items validate the adapter instead of training it.")] = 0.25,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (the lowest validation loss is kept).")] = 2,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate of the adapter.")] = 2e-4,
    lora_r: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    collect_minutes: Annotated[float | None, typer.Option(help="Stop distilling after this long "
                               "(between shoppers) and train on what there is; the next run "
                               "distils the rest.")] = None,
    max_minutes: Annotated[float, typer.Option(help="Stop training after this long.")] = 40.0,
    seed: Annotated[int, typer.Option(help="Seed of the shopper sample and the split.")] = 100,
    collect_only: Annotated[bool, typer.Option("--collect-only", help="Only distil the "
                            "sentences (resumable); train later.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over: discard the distilled "
                     "sentences and the adapter checkpoint.")] = False,
    shard: Annotated[str | None, typer.Option(help="With --collect-only: distil only shard I of N "
                     "of the shoppers (e.g. 1/2), into a file of its own, so that N processes "
                     "distil side by side; the run that trains reads every shard.")] = None,
    encoder: EncoderOpt = None,
) -> None:
    """Distil explanation sentences that pass the faithfulness check from simulated shoppers
    on the training split, LoRA-tune the instruct model on them, and keep the adapter (used
    by every turn on this dataset) only if more of the validation shoppers' sentences pass."""
    import shutil

    from recagent.agent.explanations import EXPLAINER
    from recagent.app.assistant import Assistant
    from recagent.evals.explain_distill import (
        collect,
        evaluation_users,
        pass_rate,
        read_records,
        training_cases,
        training_only,
    )
    from recagent.llm.answer_adapter import (
        ADAPTER_DIR,
        AdapterTrainConfig,
        Answer,
        train_answer_adapter,
        update_adapter_meta,
    )
    from recagent.llm.instruct import InstructLLM
    from recagent.tools.explain import Explain

    with user_errors():
        part = _shard(shard)
        if part is not None and not collect_only:
            raise RecAgentError("--shard goes with --collect-only: train in one run after the shards")
        rt = make_runtime(data, encoder)
        # Greedy sentences are distilled as written: a redraw would pass a sampled one as greedy.
        rt.settings = rt.settings.override(llm="instruct", agent="plan", explain_redraws=0)
        if rt.settings.llm_dtype == "int8":
            raise RecAgentError("train-explainer needs the bf16 or fp32 model: unset --llm-dtype int8")
        folder = rt.model_dir("explainer")
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        data_file = folder / (DISTILLED if part is None else f"distilled.shard-{part[0] + 1}-of-{part[1]}.jsonl")
        full = rt.dataset
        cases = training_cases(full, users, seed=seed, exclude=evaluation_users(full))
        if part is not None:
            cases = cases[part[0]::part[1]]
        done = {r["user"] for r in read_records(sorted(folder.glob(DISTILLED_FILES)))}
        todo = [c for c in cases if c[0] not in done]
        # The base model distils, validates and trains: loaded once (not through Assistant.llm,
        # which would switch on an adapter an earlier run chose).
        llm = InstructLLM(rt.settings.home / "models", dtype=rt.settings.llm_dtype)
        if todo:
            rt.dataset = dataset = training_only(full)
            assistant = Assistant(rt, k=5)
            assistant.llm = llm
            with err().status("Building the index and the retriever..."):
                assistant.prepare(show_progress=False)
            matrix = rt.index.embeddings()
            assistant.tools = assistant.tools.replaced(Explain(dataset, lambda: matrix))
            from tqdm.auto import tqdm

            bar = tqdm(total=len(cases), initial=len(cases) - len(todo), desc="Distilling", unit="shopper")

            def progress(stats) -> None:
                bar.update(1)
                bar.set_postfix(written=stats.written, passed=stats.greedy_passed,
                                rescued=stats.rescued, lost=stats.lost)

            collect(assistant.agent, llm, dataset, todo, data_file, samples=samples,
                    seed=seed, max_minutes=collect_minutes, progress=progress)
            bar.close()
            rt.dataset = full
            del assistant  # it holds the base model too: let the ``del llm`` below free it
        records = read_records(sorted(folder.glob(DISTILLED_FILES)))
        if collect_only:
            out().print(f"distilled {len(records)} sentences from {len({r['user'] for r in records})} "
                        f"shoppers -> {safe(str(data_file))}", soft_wrap=True, highlight=False)
            return
        shoppers = sorted({r["user"] for r in records})
        valid_users = set(random.Random(seed).sample(shoppers, max(1, round(valid_share * len(shoppers)))))
        train = [Answer(r["prompt"], r["start"], r["sentence"]) for r in records
                 if r["user"] not in valid_users and r.get("sentence")]
        valid_records = [r for r in records if r["user"] in valid_users]
        valid = [Answer(r["prompt"], r["start"], r["sentence"]) for r in valid_records if r.get("sentence")]
        with err().status(f"Writing the {len(valid_records)} validation sentences with the base model..."):
            base = pass_rate(llm, full, valid_records)
        result = train_answer_adapter(
            llm, train, valid, folder,
            config=AdapterTrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, rank=lora_r,
                                      alpha=2 * lora_r, seed=seed, max_minutes=max_minutes),
            resume=not fresh, show_progress=True,
            metadata={"dataset": full.name, "distilled": str(folder / DISTILLED_FILES), "records": len(records),
                      "shoppers": len(shoppers), "valid_shoppers": len(valid_users)})
        del llm  # the trained copy (peft layers in place): the adapter is validated as a turn loads it
        tuned = InstructLLM(rt.settings.home / "models", dtype=rt.settings.llm_dtype,
                            adapters={EXPLAINER: folder / ADAPTER_DIR})
        with err().status("Writing them again with the adapter..."):
            adapted = pass_rate(tuned, full, valid_records, adapter=EXPLAINER)
        use = (adapted["pass_rate"] or 0) > (base["pass_rate"] or 0)
        update_adapter_meta(folder, {"valid_pass_rate_base": base, "valid_pass_rate_adapter": adapted,
                                     "use": use})
    out().print(
        f"[green]trained[/] the explanation adapter on {safe(full.name)} ({len(train)} sentences, "
        f"{result.steps} steps, {result.seconds:.0f}s; best epoch {result.best_epoch}). Validation "
        f"({len(valid_records)} items of {len(valid_users)} shoppers): {base['pass_rate']:.1%} of the "
        f"base model's sentences pass, {adapted['pass_rate']:.1%} with the adapter -> "
        f"{'used' if use else 'NOT used'} ({safe(str(folder))})", soft_wrap=True, highlight=False)
