"""Distilling the explanation adapter's data: training interactions only, and only sentences
that pass the faithfulness check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from recagent.agent.explanations import Explanation, ExplanationWriter, spoken_title
from recagent.agent.session import Session
from recagent.catalog.errors import RecAgentError
from recagent.evals.explain_distill import (
    collect,
    evaluation_users,
    evidence_from_dict,
    pass_rate,
    read_records,
    training_cases,
    training_only,
)
from recagent.llm.base import draw_in_two_batches
from recagent.protocol.split import leave_one_out
from recagent.retrieval.base import Evidence
from recagent.tools.constraints import Constraints
from recagent.tools.explain import ItemEvidence


def test_shoppers_see_and_seek_training_items_only(tiny_shop):
    split = leave_one_out(tiny_shop)
    cases = training_cases(tiny_shop, 10, seed=5)
    assert len(cases) == 10
    for user, history, target in cases:
        seq = split.sequences[user]
        assert target == seq[-3].item_id
        assert [x.item_id for x in history] == [x.item_id for x in seq[:-3]]
    train = training_only(tiny_shop)
    for user in split.users:
        assert [x.item_id for x in train.histories[user]] == [x.item_id for x in split.sequences[user][:-2]]
    held = evaluation_users(tiny_shop)
    assert held and not held & {u for u, _, _ in training_cases(tiny_shop, 60, exclude=held)}


def _evidence(tiny_shop, item_id: str, related_id: str) -> ItemEvidence:
    item, related = tiny_shop.items[item_id], tiny_shop.items[related_id]
    return ItemEvidence(item_id, item.title, item.price, (Evidence(related_id, related.title, 0.9),),
                        {}, (), tuple(item.category))


def _good(e: ItemEvidence) -> str:
    return f"{spoken_title(e.title)} pairs well with your {e.related[0].title}."


def _bad(e: ItemEvidence) -> str:
    return f"{spoken_title(e.title)} is a truly wonderful purchase overall."


class _Agent:
    """Answers every turn with the same four items: a passing sentence, two failed ones and
    one the LLM was not asked for (evidence only)."""

    def __init__(self, tiny_shop, history_item: str, items: list[str]) -> None:
        self.evidences = [_evidence(tiny_shop, i, history_item) for i in items]
        self.turns = 0

    def turn(self, session: Session, text: str):
        self.turns += 1
        e = self.evidences
        explanations = [Explanation(_good(e[0]), "llm"),
                        Explanation("evidence", "evidence", ("names no fact",)),
                        Explanation("evidence", "evidence", ("names no fact",)),
                        Explanation("evidence", "evidence")]
        recs = [SimpleNamespace(item=SimpleNamespace(item_id=ev.item_id), evidence=ev, explanation=ex)
                for ev, ex in zip(e, explanations, strict=True)]
        return SimpleNamespace(recommendations=recs, session=session, trace=[],
                               constraints=Constraints())


class _Sampler:
    """Draws, for the second item, a failing then a passing sentence; for the third, only
    failing ones."""

    adapters = frozenset()

    def __init__(self, evidences: list[ItemEvidence]) -> None:
        self.by_start = {spoken_title(e.title): e for e in evidences}
        self.second = spoken_title(evidences[1].title)
        self.calls = 0

    def sample_batch(self, prompts, n, *, starts, stop, seed):
        self.calls += 1
        [start] = starts
        e = self.by_start[start]
        return [[_bad(e), _good(e)] if start == self.second else [_bad(e)] * n]


def test_collect_keeps_passing_greedy_sentences_and_the_first_passing_draw(tiny_shop, tmp_path):
    user, history, target = training_cases(tiny_shop, 1, seed=5)[0]
    others = [i for i in tiny_shop.items if i != target][:4]
    agent = _Agent(tiny_shop, history[-1].item_id, others)
    sampler = _Sampler(agent.evidences)
    out = tmp_path / "distilled.jsonl"
    stats = collect(agent, sampler, tiny_shop, [(user, history, target)], out, samples=3, max_turns=2)
    records = read_records([out])
    assert stats.conversations == 1 and agent.turns == 2  # the target is never shown: every turn
    assert (stats.written, stats.greedy_passed, stats.rescued, stats.lost) == (6, 2, 2, 2)
    assert len(records) == 6 and sampler.calls == 4
    first, second, third = records[:3]
    assert first["source"] == "greedy" and first["sentence"] == _good(agent.evidences[0])
    assert second["source"] == "sample" and second["sentence"] == _good(agent.evidences[1])
    assert third["source"] is None and "sentence" not in third
    assert second["greedy_problems"] == ["names no fact"]
    writer = ExplanationWriter(tiny_shop, None)
    for r in (first, second):  # what the record keeps is enough to check the sentence again
        assert r["prompt"] == writer.prompt_for(evidence_from_dict(r["evidence"]))
        assert r["start"] == spoken_title(r["evidence"]["title"])
        assert not writer.check(r["sentence"], evidence_from_dict(r["evidence"]), **r["check"])


class _Rewriter:
    adapters = frozenset({"explainer"})
    stops_at_deadline = False

    def __init__(self, writes_good: bool) -> None:
        self.writes_good = writes_good
        self.adapter_seen: list[str | None] = []

    def generate_batch(self, prompts, *, max_tokens, stop, starts, adapter=None):
        self.adapter_seen.append(adapter)
        return [f"{s} pairs well with your {self.related[s]}." if self.writes_good
                else f"{s} is a truly wonderful purchase overall." for s in starts]

    def draw_batch(self, prompts, redraws, **kwargs):
        return draw_in_two_batches(self, prompts, redraws, **kwargs)


def test_pass_rate_writes_the_records_again_and_checks_them(tiny_shop):
    items = list(tiny_shop.items)
    evidences = [_evidence(tiny_shop, i, items[-1]) for i in items[:7]]
    writer = ExplanationWriter(tiny_shop, None)
    records = [{"prompt": writer.prompt_for(e), "start": spoken_title(e.title),
                "evidence": e.as_dict() | {"category": list(e.category)},
                "check": {"other_titles": [], "price_bounds": [], "price_floor": None,
                          "price_ceiling": None}} for e in evidences]
    good, bad = _Rewriter(True), _Rewriter(False)
    for llm in (good, bad):
        llm.related = {spoken_title(e.title): e.related[0].title for e in evidences}
    assert pass_rate(good, tiny_shop, records, adapter="explainer")["pass_rate"] == 1.0
    result = pass_rate(bad, tiny_shop, records, batch=3)
    assert result["pass_rate"] == 0.0 and result["items"] == 7 and result["problems"]
    assert good.adapter_seen == ["explainer", "explainer"] and bad.adapter_seen == [None] * 3


def test_the_writer_asks_for_the_explainer_adapter_only_where_the_llm_has_it(tiny_shop):
    items = list(tiny_shop.items)
    e = _evidence(tiny_shop, items[0], items[1])
    with_adapter = _Rewriter(True)
    with_adapter.related = {spoken_title(e.title): e.related[0].title}
    ExplanationWriter(tiny_shop, with_adapter).write_all([e])
    without = _Rewriter(True)
    without.adapters = frozenset()
    without.related = with_adapter.related
    ExplanationWriter(tiny_shop, without).write_all([e])
    assert with_adapter.adapter_seen == ["explainer"] and without.adapter_seen == [None]


@pytest.mark.slow
def test_train_explainer_command_distils_trains_and_validates(tiny_shop_dir):
    """The real instruct model on the tiny shop: a few shoppers, one epoch (minutes)."""
    import os
    from pathlib import Path

    from typer.testing import CliRunner

    from recagent.cli import app
    from recagent.llm.answer_adapter import read_adapter_meta

    # Two processes' worth of shoppers, distilled one shard at a time, then trained on together.
    for shard in ("1/2", "2/2"):
        part = CliRunner().invoke(app, ["train-explainer", "--data", str(tiny_shop_dir), "--users", "4",
                                        "--samples", "2", "--collect-only", "--shard", shard])
        assert part.exit_code == 0, part.output
    result = CliRunner().invoke(app, ["train-explainer", "--data", str(tiny_shop_dir), "--users", "4",
                                      "--samples", "2", "--epochs", "1", "--max-minutes", "3"])
    assert result.exit_code == 0, result.output
    assert "Distilling" not in result.output  # the shards had every shopper
    assert "trained the explanation adapter" in result.output
    folder = next((Path(os.environ["RECAGENT_HOME"]) / "models").glob("*-explainer"))
    meta = read_adapter_meta(folder)
    assert meta["train_examples"] > 0 and meta["shoppers"] == 4 and meta["valid_shoppers"] == 1
    assert isinstance(meta["use"], bool)
    assert meta["use"] == (meta["valid_pass_rate_adapter"]["pass_rate"] > meta["valid_pass_rate_base"]["pass_rate"])
    shards = sorted(folder.glob("distilled.shard-*-of-2.jsonl"))
    assert len(shards) == 2 and not (folder / "distilled.jsonl").exists()
    assert len(read_records(shards)) == meta["records"]
    assert len({r["user"] for r in read_records(shards[:1])} & {r["user"] for r in read_records(shards[1:])}) == 0
    again = CliRunner().invoke(app, ["train-explainer", "--data", str(tiny_shop_dir), "--users", "4",
                                     "--collect-only"])
    assert again.exit_code == 0 and f"distilled {meta['records']} sentences" in again.output


def test_a_shard_is_i_of_n_and_only_for_collecting(tiny_shop_dir):
    from typer.testing import CliRunner

    from recagent.cli import app
    from recagent.cli.train_explainer import _shard

    assert _shard(None) is None and _shard("1/2") == (0, 2) and _shard("3/3") == (2, 3)
    for bad in ("0/2", "3/2", "half", "1/2/3"):
        with pytest.raises(RecAgentError):
            _shard(bad)
    result = CliRunner().invoke(app, ["train-explainer", "--data", str(tiny_shop_dir), "--shard", "1/2"])
    assert result.exit_code != 0 and "--shard goes with --collect-only" in result.output
