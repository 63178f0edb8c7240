"""Training data for the explanation adapter, distilled from the project itself.

Shoppers are simulated (:class:`~recagent.evals.simulator.RuleSimulator`) on the TRAINING part
of the leave-one-out split only: each sampled user's history is their training sequence
without its last item, the hidden item is that last training item, and the agent's models are
built from training interactions alone (:func:`training_only`). No validation or test item is
ever a target, a history item or a retrieval signal. The users of the conversation
evaluation's reported samples (``--users 10``, seeds 0 and 1) are left out as well.

Each turn's sentences are written as the product writes them (the instruct model, greedy, one
batch). A sentence that passes the faithfulness check (:meth:`ExplanationWriter.check`,
which also wants a concrete fact) is an example as it is; one the writer cut back to the part
that passes (:func:`~recagent.agent.explanations.clause_cuts`) is an example as cut
(``greedy-trimmed``), so the adapter learns to leave the invented tail off. For one that
fails, the model draws
``samples`` more (temperature sampling) and the first that passes becomes the example: the
adapter learns the sentences the model can write but does not choose. Items whose every draw
fails teach nothing and are only counted.

A record keeps the prompt, the start the answer opens with, the sentence, and what the check
needs (the evidence, the other titles, the price bounds), so the adapter can be validated by
writing the same items' sentences again (:func:`pass_rate`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recagent.agent.explanations import ExplanationWriter, cut_loop, spoken_title
from recagent.catalog.model import Dataset
from recagent.evals.conversation import converse, held_out_cases
from recagent.evals.simulator import RuleSimulator, TargetFacts, keyword_stats
from recagent.protocol.split import leave_one_out
from recagent.retrieval.base import Evidence
from recagent.tools.explain import ItemEvidence

__all__ = ["DistillStats", "collect", "evidence_from_dict", "pass_rate", "read_records",
           "training_cases", "training_only"]

# The conversation evaluation's reported samples (evals/reports/conversation-*-10users*.md).
EVAL_SAMPLES = ((10, 0), (10, 1))


def training_only(dataset: Dataset) -> Dataset:
    """``dataset`` without the validation and test interaction of every leave-one-out user."""
    split = leave_one_out(dataset)
    held = {id(x) for u in split.users for x in split.sequences[u][-2:]}
    return Dataset(dataset.name, dataset.items.values(),
                   [x for x in dataset.interactions if id(x) not in held],
                   has_timestamps=dataset.has_timestamps, user_aliases=dataset.user_aliases)


def training_cases(dataset: Dataset, n_users: int, *, seed: int = 100,
                   exclude: Iterable[str] = ()) -> list[tuple[str, list, str]]:
    """(user, training history without its last item, that last training item) for a seeded
    sample of users with at least two training items, none of them in ``exclude``."""
    split = leave_one_out(dataset)
    excluded = set(exclude)
    users = [u for u in split.users if len(split.sequences[u]) >= 4 and u not in excluded]
    users = sorted(random.Random(seed).sample(users, min(n_users, len(users))), key=split.users.index)
    return [(u, list(split.sequences[u][:-3]), split.sequences[u][-3].item_id) for u in users]


def evaluation_users(dataset: Dataset) -> set[str]:
    """The users of the conversation evaluation's reported samples."""
    return {u for n, seed in EVAL_SAMPLES for u, _, _ in held_out_cases(dataset, n, seed=seed)}


@dataclass
class DistillStats:
    written: int = 0  # sentences the LLM wrote
    greedy_passed: int = 0
    rescued: int = 0  # failed greedily, a sample passed
    lost: int = 0  # failed greedily and in every sample
    conversations: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def collect(agent, llm, dataset: Dataset, cases: Sequence, out: Path, *, samples: int = 6,
            max_turns: int = 5, seed: int = 0, max_minutes: float | None = None,
            progress: Callable[[DistillStats], None] | None = None) -> DistillStats:
    """Converse with each case's simulated shopper and append a record per LLM-written
    sentence to the JSON-lines file ``out`` (see the module's docstring); after
    ``max_minutes``, stop before the next shopper."""
    started = time.perf_counter()
    writer = ExplanationWriter(dataset, llm)
    stats = DistillStats()
    df = keyword_stats(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:
        for user, history, target in cases:
            if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes:
                break
            turn_no = 0

            def on_answer(session, answer, user=user) -> None:
                nonlocal turn_no
                turn_no += 1
                items = dataset.items
                others = [items[x.item_id].title for x in session.history[-50:]]
                others += [items[r.evidence.item_id].title for r in answer.recommendations]
                c = answer.constraints
                check = {"other_titles": others,
                         "price_bounds": [b for b in (c.min_price, c.max_price) if b is not None],
                         "price_floor": c.min_price, "price_ceiling": c.max_price}
                for r in answer.recommendations:
                    e, ex = r.evidence, r.explanation
                    if ex.source != "llm" and not ex.problems:
                        continue  # the LLM was not asked (no related history, nothing asked for)
                    stats.written += 1
                    prompt, start = writer.prompt_for(e), spoken_title(e.title)
                    record = {"dataset": dataset.name, "user": user, "turn": turn_no,
                              "item_id": e.item_id, "prompt": prompt, "start": start,
                              "evidence": evidence_dict(e), "check": check}
                    if ex.source == "llm":
                        stats.greedy_passed += 1
                        record |= {"sentence": ex.text, "greedy_problems": [],
                                   "source": "greedy-trimmed" if ex.trimmed else "greedy"}
                    else:
                        record |= {"source": None, "greedy_problems": list(ex.problems)}
                        [draws] = llm.sample_batch([prompt], samples, starts=[start], stop=["\n"],
                                                   seed=seed + stats.written)
                        for draw in draws:
                            draw = cut_loop(draw, start)
                            if not writer.check(draw, e, **check):
                                record |= {"sentence": draw, "source": "sample"}
                                stats.rescued += 1
                                break
                        else:
                            stats.lost += 1
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()

            facts = TargetFacts(dataset.items[target], dataset, df)
            converse(agent, dataset, user, history, target, RuleSimulator(facts),
                     max_turns=max_turns, on_answer=on_answer)
            stats.conversations += 1
            if progress is not None:
                progress(stats)
    return stats


def evidence_dict(e: ItemEvidence) -> dict[str, Any]:
    return e.as_dict() | {"category": list(e.category)}


def evidence_from_dict(d: dict[str, Any]) -> ItemEvidence:
    return ItemEvidence(d["item_id"], d["title"], d["price"],
                        tuple(Evidence(r["item_id"], r["title"], r["similarity"]) for r in d["related"]),
                        dict(d["shared"]), tuple(d["satisfies"]), tuple(d.get("category", ())))


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The records of the JSON-lines files, in order; a malformed line is an error with its place."""
    records = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON record ({exc.msg})") from None
    return records


def pass_rate(llm, dataset: Dataset, records: Sequence[dict[str, Any]], *, adapter: str | None = None,
              batch: int = 5) -> dict[str, Any]:
    """The share of ``records``' items whose sentence, written again greedily (with the LoRA
    ``adapter``, or the base model), passes the check; batched as a turn is."""
    writer = ExplanationWriter(dataset, llm)
    passed, problems = 0, {}
    for lo in range(0, len(records), batch):
        chunk = records[lo: lo + batch]
        texts = llm.generate_batch([r["prompt"] for r in chunk], max_tokens=writer.max_tokens,
                                   stop=["\n"], starts=[r["start"] for r in chunk], adapter=adapter)
        for r, text in zip(chunk, texts, strict=True):
            found = writer.check(cut_loop(text, r["start"]), evidence_from_dict(r["evidence"]), **r["check"])
            passed += not found
            for p in found:
                key = p.split(":")[0].split(",")[0][:40]
                problems[key] = problems.get(key, 0) + 1
    return {"items": len(records), "passed": passed,
            "pass_rate": round(passed / len(records), 4) if records else None,
            "problems": dict(sorted(problems.items(), key=lambda kv: -kv[1]))}
