"""The support agent: a LangGraph graph with a model node, a ``ToolNode`` and a node that
waits for the customer with ``interrupt()``, run by a scripted fake model (offline).

    agent ──(tool calls)──▶ tools ──▶ agent
      │ ──(a question)──▶ ask (interrupt: waits for the customer) ──▶ agent
      └──(anything else)──▶ end
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt

ORDERS = {
    "1001": "shipped on Monday, arriving Thursday",
    "1002": "being packed",
    "1003": "delivered yesterday",
}


@tool
def lookup_order(order: str) -> str:
    """The status of an order, by its number."""
    if order not in ORDERS:
        raise LookupError(f"no order {order}")
    return f"Order {order} is {ORDERS[order]}."


class SupportModel(GenericFakeChatModel):
    """langchain-core's fake chat model, answering by rule from the conversation instead
    of from a fixed list, with token counts; it streams its text word by word."""

    messages: Iterator[AIMessage | str] = iter(())
    model_name: str = "fake-support-1"

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        words = sum(len(m.text.split()) for m in messages)
        meta = {"model_name": self.model_name}
        if isinstance(last, ToolMessage):
            text = (
                f"{last.text} Anything else?"
                if last.status != "error"
                else "I could not find that order. Which order number?"
            )
            return _ai(text, words, meta)
        said = last.text.lower()
        number = re.search(r"\b\d{4}\b", said)
        if number:
            call = {
                "name": "lookup_order",
                "args": {"order": number.group()},
                "id": f"call-{number.group()}",
            }
            return AIMessage(
                "",
                tool_calls=[call],
                usage_metadata=_usage(words, 12),
                response_metadata={**meta, "finish_reason": "tool_calls"},
            )
        if "order" in said:
            return _ai("Happy to check. Which order number?", words, meta)
        if said.startswith("no"):
            return _ai("Glad I could help. Goodbye!", words, meta)
        return _ai("Hello! How can I help you today?", words, meta)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        for token in re.split(r"(\s)", reply.text) if reply.text else []:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, id=reply.id))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                id=reply.id,
                tool_call_chunks=[
                    {"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(reply.tool_calls)
                ],
                usage_metadata=reply.usage_metadata,
                response_metadata=reply.response_metadata,
                chunk_position="last",
            )
        )


def _usage(prompt_words: int, output: int) -> Any:
    return {
        "input_tokens": prompt_words * 2,
        "output_tokens": output,
        "total_tokens": prompt_words * 2 + output,
    }


def _ai(text: str, words: int, meta: dict[str, Any]) -> AIMessage:
    return AIMessage(
        text,
        usage_metadata=_usage(words, len(text.split()) * 2),
        response_metadata={**meta, "finish_reason": "stop"},
    )


def _json(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args)


def build_agent(model: Any = None, checkpointer: Any = None) -> Any:
    """The compiled support graph (an in-memory checkpointer unless one is given)."""
    llm = model or SupportModel()  # a real model would be .bind_tools([lookup_order])

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    tools = ToolNode([lookup_order], handle_tool_errors=True)
    # not a string: the interrupt adds no message of its own
    return support_graph(agent, tools, {"waiting_for": "customer"}, checkpointer)


def support_graph(agent: Any, tools: ToolNode, question: Any, checkpointer: Any = None) -> Any:
    """The graph drawn at the top, compiled: ``agent`` is the model node, ``tools`` runs
    the tool calls, and ``ask`` waits for the customer with ``interrupt(question)``."""

    def ask(state: MessagesState) -> dict[str, Any]:
        reply = interrupt(question)
        return {"messages": [HumanMessage(reply)]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "ask" if last.text.endswith("?") else END

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools)
    graph.add_node("ask", ask)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", "ask", END])
    graph.add_edge("tools", "agent")
    graph.add_edge("ask", "agent")
    return graph.compile(checkpointer=checkpointer or InMemorySaver())
