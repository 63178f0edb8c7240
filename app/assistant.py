"""Builds the agent for one runtime: its tools, its LLM, and the turn loop that fits the LLM."""

from __future__ import annotations

from functools import cached_property

from recagent.agent.agents import index_free_agent, llm_agent, plan_agent, plan_first_agent
from recagent.agent.explanations import Redraws
from recagent.agent.runner import TurnRunner
from recagent.agent.session import Session
from recagent.app.llm_backend import explainer_adapters, make_llm, reader_adapters
from recagent.app.runtime import Runtime
from recagent.catalog.errors import RecAgentError
from recagent.llm.base import LLM
from recagent.retrieval.base import Retriever
from recagent.tools.base import ToolParts
from recagent.tools.toolbox import Toolbox

__all__ = ["AGENTS", "Assistant"]

AGENTS = ("auto", "plan", "plan-first", "tools")


class Assistant:
    """The runtime's dataset and retrieval, plus the LLM and the tools the agent uses."""

    def __init__(self, runtime: Runtime, *, rerank: str = "retriever", k: int = 5) -> None:
        self.runtime = runtime
        self.rerank = rerank
        self.k = k

    @cached_property
    def llm(self) -> LLM | None:
        """The settings' LLM, with this dataset's explanation adapter and the request-reading
        adapter where there are ones."""
        settings = self.runtime.settings
        adapters = explainer_adapters(settings, self.runtime.model_dir("explainer")) | reader_adapters(settings)
        return make_llm(settings, adapters=adapters)

    @cached_property
    def recommender(self) -> Retriever:
        """The dataset's best retriever: fusion or seqrec when it has a trained checkpoint,
        else the text one (the registry's "auto")."""
        return self.runtime.recommender("auto")

    def prepare(self, *, show_progress: bool = True) -> None:
        """Build or update the indexes the tools search (a hash check when they are current)."""
        self.runtime.ensure_index(show_progress=show_progress)  # search_items, explain
        self.recommender.prepare(show_progress=show_progress)

    @cached_property
    def tools(self) -> Toolbox:
        rt = self.runtime
        return Toolbox.build(ToolParts(rt.dataset, rt.encoder, rt.index, self.recommender,
                                       rt.index.embeddings, self.llm))

    @cached_property
    def agent(self) -> TurnRunner:
        """The fixed plan, or the LLM driving the tools (see ``Settings.agent``)."""
        mode = self.runtime.settings.agent
        if mode not in AGENTS:
            raise RecAgentError(f"agent must be one of {', '.join(AGENTS)}, not {mode!r}")
        llm = self.llm
        settings = self.runtime.settings
        redraws = Redraws(settings.explain_redraws, settings.explain_redraw_budget or None)
        if mode == "plan" or llm is None:
            return plan_agent(self.tools, llm, k=self.k, rerank=self.rerank, redraws=redraws)
        if mode == "tools" and not llm.serves_chat:
            raise RecAgentError(f"--agent tools needs an LLM that can call tools (vllm), "
                                f"not {llm.name}")
        if mode == "plan-first" and not llm.structured_output:
            raise RecAgentError(f"--agent plan-first needs an LLM with constrained JSON output, "
                                f"not {llm.name}")
        if mode == "tools" or (mode == "auto" and llm.can_call_tools and llm.serves_chat):
            return llm_agent(self.tools, llm, k=self.k, rerank=self.rerank, redraws=redraws)
        if mode == "plan-first" or (mode == "auto" and llm.can_call_tools and llm.structured_output):
            return plan_first_agent(self.tools, llm, k=self.k, rerank=self.rerank, redraws=redraws)
        return plan_agent(self.tools, llm, k=self.k, rerank=self.rerank, redraws=redraws)

    @cached_property
    def plain_agent(self) -> TurnRunner:
        """The fixed plan with no LLM: what a turn runs when the LLM would take too long."""
        return plan_agent(self.tools, None, k=self.k, rerank=self.rerank)

    @cached_property
    def index_free_agent(self) -> TurnRunner:
        """Popular items under the request's constraints: the answer when the index is down."""
        return index_free_agent(self.runtime.dataset, k=self.k)

    def feedback(self, session: Session, item_id: str, kind: str) -> None:
        """Record a click, like, dislike or purchase of a catalog item in ``session``."""
        self.runtime.dataset.item(item_id)  # UnknownItemError for an id the catalog lacks
        session.feedback(item_id, kind)

    def session(self, user_id: str | None) -> Session:
        """A new conversation for a dataset user (their history) or a new user (none)."""
        if user_id is None:
            return Session(user_id=None)
        dataset = self.runtime.dataset
        resolved = dataset.resolve_user(user_id)
        return Session(user_id=resolved, history=list(dataset.histories[resolved]))
