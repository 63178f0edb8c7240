"""A LangChain chat model over the embedded instruct backend, for the tool-calling agent.

With tools bound, every reply is one tool call decoded under the grammar of the bound tools'
calls (:meth:`InstructLLM.tool_call`): the model cannot answer in prose, wrap the call in a
fenced block or invent a tool name. The agent's final answer is itself a tool (LangChain's
``ToolStrategy``), so "always call a tool" still lets the model finish. Without tools it
writes plain text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import count
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

__all__ = ["InstructChatModel", "to_chat_messages"]

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_call_ids = count(1)


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict]:
    """LangChain messages as the chat template's dicts (tool calls with dict arguments)."""
    out = []
    for message in messages:
        role = _ROLES.get(message.type)
        if role is None:
            raise ValueError(f"unsupported message type {message.type!r}")
        content = message.content if isinstance(message.content, str) else json.dumps(message.content)
        entry: dict[str, Any] = {"role": role, "content": content}
        if isinstance(message, AIMessage) and message.tool_calls:
            entry["tool_calls"] = [{"type": "function",
                                    "function": {"name": c["name"], "arguments": c["args"]}}
                                   for c in message.tool_calls]
        if isinstance(message, ToolMessage):
            entry["name"] = message.name or ""
        out.append(entry)
    return out


class InstructChatModel(BaseChatModel):
    """Chat over :class:`~recagent.llm.instruct.InstructLLM`; tool calls are constrained."""

    llm: Any
    max_tokens: int = 512
    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "recagent-instruct"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any):
        specs = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=specs, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, tools: Sequence[dict] | None = None,
                  **kwargs: Any) -> ChatResult:
        chat = to_chat_messages(messages)
        if tools:
            call = self.llm.tool_call(chat, tools, max_tokens=self.max_tokens)
            message = AIMessage(content="", tool_calls=[{
                "name": call["name"], "args": call["arguments"], "id": f"call_{next(_call_ids)}",
                "type": "tool_call"}])
        else:
            text = self.llm.reply(chat, max_tokens=self.max_tokens, stop=stop or ())
            message = AIMessage(content=text)
        return ChatResult(generations=[ChatGeneration(message=message)])
