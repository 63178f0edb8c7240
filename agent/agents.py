"""The agents, each one :class:`~recagent.agent.runner.TurnRunner` with its picker."""

from __future__ import annotations

from typing import Any

from recagent.agent.explanations import NO_REDRAWS, Redraws
from recagent.agent.plan import N_CANDIDATES, PlanPicker
from recagent.agent.plan_first import PlanFirstPicker
from recagent.agent.popular import PopularPicker
from recagent.agent.runner import TurnRunner
from recagent.agent.tool_agent import LLMPicker
from recagent.catalog.model import Dataset
from recagent.llm.base import LLM
from recagent.retrieval.base import PopularItems
from recagent.tools.filter_items import FilterItems
from recagent.tools.get_item import GetItem
from recagent.tools.toolbox import Toolbox

__all__ = ["index_free_agent", "llm_agent", "plan_agent", "plan_first_agent"]


def plan_agent(tools: Toolbox, llm: LLM | None = None, *, k: int = 5, n_candidates: int = N_CANDIDATES,
               rerank: str = "retriever", explain_with_llm: bool = True,
               redraws: Redraws = NO_REDRAWS) -> TurnRunner:
    """The fixed plan; the LLM, if any, parses requests, re-ranks and writes prose."""
    return TurnRunner(tools, PlanPicker(n_candidates=n_candidates, rerank=rerank), llm, k=k,
                      explain_with_llm=explain_with_llm, redraws=redraws)


def llm_agent(tools: Toolbox, llm: LLM, *, k: int = 5, n_candidates: int = N_CANDIDATES,
              rerank: str = "retriever", chat_model: Any = None, max_steps: int = 8,
              redraws: Redraws = NO_REDRAWS) -> TurnRunner:
    """The LLM drives the tools; the fixed plan tops the answer up and stands in for it."""
    plan = PlanPicker(n_candidates=n_candidates, rerank=rerank)
    return TurnRunner(tools, LLMPicker(plan, chat_model=chat_model, max_steps=max_steps), llm, k=k,
                      redraws=redraws)


def plan_first_agent(tools: Toolbox, llm: LLM, *, k: int = 5, n_candidates: int = N_CANDIDATES,
                     rerank: str = "retriever", max_steps: int = 3,
                     redraws: Redraws = NO_REDRAWS) -> TurnRunner:
    """One constrained LLM call plans the searches; the fixed plan filters and ranks."""
    plan = PlanPicker(n_candidates=n_candidates, rerank=rerank)
    return TurnRunner(tools, PlanFirstPicker(plan, max_steps=max_steps), llm, k=k, redraws=redraws)


def index_free_agent(dataset: Dataset, *, k: int = 5) -> TurnRunner:
    """Popular items under the request's constraints, for when the index is down: no search,
    no LLM, explanations from the evidence. Its tools need the catalog alone."""
    tools = Toolbox(dataset, [FilterItems(dataset), GetItem(dataset)])
    return TurnRunner(tools, PopularPicker(PopularItems(dataset)), None, k=k)
