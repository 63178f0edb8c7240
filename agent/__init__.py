"""The agent: one turn runner (:mod:`.runner`) whose pickers choose the candidates (the fixed
plan, the LLM driving the tools, popular items without an index), the session, constraints
parsing, explanations and the events a turn reports."""

from recagent.agent.agents import index_free_agent, llm_agent, plan_agent, plan_first_agent
from recagent.agent.runner import TurnRunner
from recagent.agent.session import Session
from recagent.agent.turn import AgentAnswer, AgentRecommendation, ToolCall

__all__ = ["AgentAnswer", "AgentRecommendation", "Session", "ToolCall", "TurnRunner",
           "index_free_agent", "llm_agent", "plan_agent", "plan_first_agent"]
