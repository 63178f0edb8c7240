"""The conversation evaluation: simulated shoppers look for a hidden item, up to T turns.

Held-out users are the test users of the leave-one-out split (:mod:`recagent.protocol.split`):
the agent's session gets the user's history without the test item, the agent's models are
built from the dataset without any test interaction (:func:`without_held_out`), and the simulator
(:mod:`recagent.evals.simulator`) knows the test item. Each turn the agent shows k items; the
conversation ends at the turn whose answer contains the target (a hit) or after ``max_turns``.
After a miss the shopper dislikes what was shown (the agent then leaves it out) and reveals
one more attribute of the target.

Reported, for each k (a separate run of conversations, since k changes what the shopper sees):

- ``hit_rate``: share of conversations with a hit within the turns (HR@k within T turns);
- ``hit_by_turn``: share with a hit at or before turn t, t = 1..T; turn 1 has no facts, so
  it is the one-shot baseline (the user's history alone);
- ``avg_turns_to_hit``: mean turn of the hit, over conversations with one;
- ``constraint_satisfaction``: share of shown items, in turns where the shopper had stated
  constraints, that satisfy all of them;
- ``faithfulness``: share of LLM-written explanations that passed the check (None without LLM);
  ``faithfulness_first_draw``: the same for the first sentence alone (before any redraw);
  ``trimmed``: of those that passed, the ones shown without a trailing clause that failed;
- ``leaks_blocked``: sentences the leak guard refused (the simulator then said less).
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from recagent.agent.session import Session
from recagent.catalog.model import Dataset
from recagent.evals.report import percentile
from recagent.evals.simulator import LLMSimulator, RuleSimulator, TargetFacts, keyword_stats
from recagent.protocol.split import leave_one_out
from recagent.tools.explain import Explain
from recagent.tools.filter_items import FilterItems

__all__ = [
    "Conversation", "Turn", "converse", "evaluate", "held_out_cases", "markdown", "rejection_kind",
    "run_conversations", "summarize", "without_held_out",
]


@dataclass(frozen=True)
class Turn:
    said: str
    shown: list[str]
    hit_rank: int | None  # 1-based rank of the target in this answer, if shown
    satisfied: int  # shown items that meet the stated constraints
    constrained: int  # shown items checked (0 when nothing was stated yet)
    faithful: int
    llm_written: int
    seconds: float
    tool_errors: int = 0  # tool calls that failed (an invalid call from the LLM included)
    faithful_first: int = 0  # of ``faithful``, those whose first sentence passed (no redraw)
    rejected: tuple[str, ...] = ()  # why each rejected sentence was (its first problem, as a kind)
    trimmed: int = 0  # of ``faithful``, those shown cut back to the part that passed


@dataclass
class Conversation:
    user: str
    target: str
    turns: list[Turn] = field(default_factory=list)
    leaks_blocked: int = 0

    @property
    def hit_turn(self) -> int | None:
        return next((i for i, t in enumerate(self.turns, 1) if t.hit_rank is not None), None)


def held_out_cases(dataset: Dataset, n_users: int | None, *, seed: int = 0):
    """(user, history without the test item, test item id) for a seeded sample of test users."""
    split = leave_one_out(dataset)
    users = list(split.users)
    if n_users is not None and n_users < len(users):
        users = sorted(random.Random(seed).sample(users, n_users), key=split.users.index)
    return [(u, split.sequences[u][:-1], split.sequences[u][-1].item_id) for u in users]


def without_held_out(dataset: Dataset) -> Dataset:
    """``dataset`` without the test interaction of every leave-one-out test user.

    The agent's models are built from the runtime's dataset (the product's fusion retriever
    fits its item-kNN side on every history), so the evaluation gives them this copy: no model
    can have seen a held-out item next to its user's history. Same name, same catalog: the
    index and a trained checkpoint still apply.
    """
    split = leave_one_out(dataset)
    held = {id(split.sequences[u][-1]) for u in split.users}
    return Dataset(dataset.name, dataset.items.values(),
                   [x for x in dataset.interactions if id(x) not in held],
                   has_timestamps=dataset.has_timestamps, user_aliases=dataset.user_aliases)


def converse(agent, dataset: Dataset, user: str, history, target: str, simulator, *,
             max_turns: int = 5, react: bool = True,
             on_answer: Callable[[Session, object], None] | None = None) -> Conversation:
    """One conversation of ``agent`` (``.turn(session, message)``) with ``simulator``;
    ``on_answer(session, answer)`` sees each turn's session before it and its answer."""
    session = Session(user_id=user, history=list(history))
    conv = Conversation(user, target)
    shown_items = []
    for _ in range(max_turns):
        utterance = simulator.next(shown_items)
        started = time.perf_counter()
        answer = agent.turn(session, utterance.text)
        seconds = time.perf_counter() - started
        if on_answer is not None:
            on_answer(session, answer)
        session = answer.session
        shown = [r.item.item_id for r in answer.recommendations]
        stated = utterance.stated
        checked = 0 if stated.is_empty() else len(shown)
        satisfied = 0 if not checked else sum(
            FilterItems.violation(dataset.items[i], stated) is None for i in shown)
        llm_expl = [r.explanation for r in answer.recommendations
                    if r.explanation.source == "llm" or r.explanation.problems]
        conv.turns.append(Turn(
            utterance.text, shown, shown.index(target) + 1 if target in shown else None,
            satisfied, checked, sum(e.source == "llm" for e in llm_expl), len(llm_expl),
            round(seconds, 3), sum(c.error is not None for c in answer.trace),
            sum(e.source == "llm" and e.draws == 1 for e in llm_expl),
            tuple(rejection_kind(e.problems[0]) for e in llm_expl if e.source != "llm"),
            sum(e.source == "llm" and e.trimmed for e in llm_expl)))
        if target in shown:
            break
        shown_items = [dataset.items[i] for i in shown]
        if react:
            for item_id in shown:
                session.feedback(item_id, "dislike")
    conv.leaks_blocked = simulator.blocked
    return conv


def rejection_kind(problem: str) -> str:
    """A faithfulness problem without its particulars, to count rejections by kind:
    'names brand Nikon, which ...' -> 'names brand …, which ...', '$15' -> '$X', a quoted
    title -> '"…"', and what follows a colon dropped."""
    kind = problem.split(": ", 1)[0]
    kind = re.sub(r'"[^"]*"', '"…"', kind)
    kind = re.sub(r"\$\s*[\d.,]*\d", "$X", kind)
    kind = re.sub(r"\b(brand|item id|states) [^,]+", r"\1 …", kind)
    return kind


def run_conversations(agent, dataset: Dataset, cases: Sequence, *, max_turns: int = 5,
                      sim_llm=None, react: bool = True, reaction: str = "",
                      progress: Callable[[Conversation], None] | None = None) -> list[Conversation]:
    """A conversation per (user, history, target) case."""
    df = keyword_stats(dataset)
    out = []
    for user, history, target in cases:
        facts = TargetFacts(dataset.items[target], dataset, df)
        simulator = (LLMSimulator(facts, sim_llm, reaction=reaction) if sim_llm is not None
                     else RuleSimulator(facts, reaction=reaction))
        out.append(converse(agent, dataset, user, history, target, simulator,
                            max_turns=max_turns, react=react))
        if progress is not None:
            progress(out[-1])
    return out


def summarize(conversations: Sequence[Conversation], *, max_turns: int) -> dict:
    """The metrics of one run (one k) of conversations."""
    n = len(conversations)
    hits = [c.hit_turn for c in conversations]
    turns = [t for c in conversations for t in c.turns]
    constrained = sum(t.constrained for t in turns)
    written = sum(t.llm_written for t in turns)
    hit_turns = [h for h in hits if h is not None]
    return {
        "conversations": n,
        "hit_rate": _share(len(hit_turns), n),
        "hit_by_turn": {str(t): _share(sum(h is not None and h <= t for h in hits), n)
                        for t in range(1, max_turns + 1)},
        "avg_turns_to_hit": round(sum(hit_turns) / len(hit_turns), 3) if hit_turns else None,
        "constraint_satisfaction": _share(sum(t.satisfied for t in turns), constrained),
        "constrained_items": constrained,
        "faithfulness": _share(sum(t.faithful for t in turns), written),
        "faithfulness_first_draw": _share(sum(t.faithful_first for t in turns), written),
        "llm_explanations": written,
        "trimmed": sum(t.trimmed for t in turns),
        "leaks_blocked": sum(c.leaks_blocked for c in conversations),
        "empty_answers": sum(not t.shown for t in turns),
        "turns": len(turns),
        "tool_errors": sum(t.tool_errors for t in turns),
        "seconds_per_turn": round(sum(t.seconds for t in turns) / max(1, len(turns)), 3),
        "turn_p50_s": _seconds_percentile(turns, 50),
        "turn_p95_s": _seconds_percentile(turns, 95),
        "rejected_by": dict(Counter(r for t in turns for r in t.rejected).most_common()),
    }


def _seconds_percentile(turns: Sequence[Turn], q: float) -> float | None:
    return round(percentile([t.seconds for t in turns], q), 3) if turns else None


def _share(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def conversation_json(conv: Conversation) -> dict:
    return asdict(conv) | {"hit_turn": conv.hit_turn}


def evaluate(runtime, *, n_users: int | None = 200, ks: Sequence[int] = (5, 10), max_turns: int = 5,
             sim_llm=None, react: bool = True, reaction: str = "", rerank: str = "retriever",
             seed: int = 0, examples: int = 3,
             progress: Callable[[int, Conversation], None] | None = None) -> dict:
    """The whole evaluation on ``runtime``'s dataset and LLM: one run of conversations per k."""
    from recagent.app.assistant import Assistant

    started = time.perf_counter()
    cases = held_out_cases(runtime.dataset, n_users, seed=seed)
    runtime.dataset = dataset = without_held_out(runtime.dataset)
    first = Assistant(runtime, rerank=rerank, k=max(ks))
    llm = first.llm
    first.prepare(show_progress=progress is not None)
    # The explain tool reads every item embedding from the index each time it explains an
    # item without evidence (0.2-0.3 s here); the index does not change during the run, so
    # the matrix is read once and handed to the tool. Same evidence, same answers.
    matrix = runtime.index.embeddings()
    tools = first.tools.replaced(Explain(dataset, lambda: matrix))
    results, transcripts = {}, {}
    for k in ks:
        assistant = Assistant(runtime, rerank=rerank, k=k)
        assistant.llm = llm  # one LLM for every k
        assistant.tools = tools
        k_started = time.perf_counter()
        convs = run_conversations(
            assistant.agent, dataset, cases, max_turns=max_turns, sim_llm=sim_llm, react=react,
            reaction=reaction, progress=(lambda c, k=k: progress(k, c)) if progress else None)
        results[str(k)] = summarize(convs, max_turns=max_turns) | {
            "seconds": round(time.perf_counter() - k_started, 1)}
        transcripts[str(k)] = [conversation_json(c) for c in convs[:examples]]
    return {
        "dataset": dataset.name,
        "protocol": "leave-one-out test users; the session history excludes the test item and "
                    "the agent's models see no test interaction; the simulated shopper knows "
                    "the item and reveals one attribute per missed turn",
        "users": len(cases),
        "seed": seed,
        "max_turns": max_turns,
        "simulator": "llm" if sim_llm is not None else "rule",
        "react": "dislike shown items" if react else "none",
        "llm": llm.name if llm is not None else None,
        "agent": runtime.settings.agent,
        "retriever": type(first.recommender).__name__,
        "rerank": rerank,
        "k": results,
        "seconds": round(time.perf_counter() - started, 1),
        "examples": transcripts,
    }


def _faithful_cell(m: dict) -> str:
    """"80.2% of 167", the first sentences' share where redraws rescued some, and how many
    of those shown were trimmed."""
    if m["faithfulness"] is None:
        return "n/a"
    cell = f"{_pct(m['faithfulness'])} of {m['llm_explanations']}"
    first = m.get("faithfulness_first_draw")
    notes = [f"{_pct(first)} first drawn"] if first is not None and first != m["faithfulness"] else []
    if m.get("trimmed"):
        notes.append(f"{m['trimmed']} trimmed")
    return cell + (f" ({'; '.join(notes)})" if notes else "")


def markdown(report: dict) -> str:
    """The report as a Markdown table (one row per k)."""
    t = report["max_turns"]
    head = ["k", "hit rate", *(f"hit by turn {i}" for i in range(1, t + 1)), "avg turns to hit",
            "constraints met", "faithful", "leaks blocked", "tool errors", "s/turn",
            "turn p95 (s)"]
    lines = [
        f"# Conversation evaluation: {report['dataset']}",
        "",
        (f"{report['users']} held-out users (seed {report['seed']}), up to {t} turns, "
         f"{report['simulator']} simulator, LLM {report['llm'] or 'none'}, agent "
         f"{report.get('agent', 'auto')}, retriever "
         f"{report['retriever']}, re-rank {report['rerank']}; {report['seconds']:.0f} s in all."),
        "Turn 1 carries no facts: it is the one-shot baseline.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for k, m in report["k"].items():
        cells = [k, _pct(m["hit_rate"]), *(_pct(m["hit_by_turn"][str(i)]) for i in range(1, t + 1)),
                 "" if m["avg_turns_to_hit"] is None else f"{m['avg_turns_to_hit']:.2f}",
                 _pct(m["constraint_satisfaction"]),
                 _faithful_cell(m), str(m["leaks_blocked"]), str(m.get("tool_errors", "")),
                 f"{m['seconds_per_turn']:.2f}",
                 "" if m.get("turn_p95_s") is None else f"{m['turn_p95_s']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for k, m in report["k"].items():
        if m.get("rejected_by"):
            reasons = "; ".join(f"{reason} ({n})" for reason, n in m["rejected_by"].items())
            lines += ["", f"Sentences rejected by the check (k = {k}), by the first reason: {reasons}."]
    example = next(iter(report["examples"].values()), [])
    if example:
        lines += ["", f"An example conversation (k = {next(iter(report['examples']))}):", ""]
        for i, turn in enumerate(example[0]["turns"], 1):
            mark = f"hit at rank {turn['hit_rank']}" if turn["hit_rank"] else "miss"
            lines.append(f"{i}. shopper: \"{turn['said']}\" → {mark}")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
