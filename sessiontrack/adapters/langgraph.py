"""Sessions of a LangGraph graph: one per conversation (``thread_id``), with nodes,
messages, LLM and tool calls, waiting for input, completion and stops.

Wrap a compiled graph and call the adapter where you called the graph::

    adapter = LangGraphAdapter(tracker, graph, chatbot_id="support")
    config = {"configurable": {"thread_id": "customer-42"}}
    async for chunk in adapter.astream({"messages": [HumanMessage("hi")]}, config):
        ...

:meth:`LangGraphAdapter.astream` and :meth:`LangGraphAdapter.ainvoke` take the same
arguments as the graph's and give back exactly what the graph gives. The adapter adds a
LangChain callback handler to the run's ``config["callbacks"]`` and a
:class:`langgraph.runtime.RunControl` (the caller's, if it passed ``control=``); the
handler only makes hook calls (microseconds), so streaming is not slowed.

What is reported (docs/adapters/langgraph.md has the full list and the limits):

- the flow: ``graph.get_graph()``, registered when the adapter is made; conditional
  edges carry ``data.conditional = true`` and the branch's label;
- a session per conversation: the ``thread_id`` of ``config["configurable"]`` is the
  conversation id; the conversation's active session continues (also after a restart,
  from the store), a new one starts once the previous one has ended. A call without a
  ``thread_id`` is a session of its own;
- each node the graph runs (its duration, and its error if it raised);
- messages: ``HumanMessage`` s of the input (and a ``Command(resume="text")``) inbound,
  ``AIMessage`` s with text that nodes return outbound, with LangChain's message ids;
  an ``interrupt("question")`` with a string value is an outbound message too;
- ``interrupt()`` (or a static breakpoint): status ``waiting_input`` at the interrupted
  node; the next call (``Command(resume=...)``, new input) reports ``running``;
- the end: when ``aget_state(config).next == ()`` after a call, the session completes
  with reason ``flow_end``. A call that raises completes it with reason ``error`` (the
  node's error is in its execution);
- LLM calls (model, provider, tokens from ``usage_metadata``, latency, time to the first
  token when the model streams, finish reason, error) and tool calls (name, call id,
  arguments, result, error, duration), each with the node that made it;
- stops: a stop requested through the API ends the running call at the next superstep
  (LangGraph's drain) with :class:`SessionStopped`; resuming that thread
  (``Command(resume=...)`` or ``None``) raises :class:`SessionStopped`; new input on the
  thread starts a new session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import LLMResult
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.errors import GraphBubbleUp, GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Command

from ..limits import REASON
from ..testing import ReplayInbound, ReplayRun
from ..tracker import Tracker
from .base import BlockingTracker, EngineAdapter, error_text, flow_graph

__all__ = [
    "LangGraphAdapter",
    "LangGraphReplay",
    "RecordedChatModel",
    "SessionStopped",
    "graph_flow",
    "recorded_answers",
    "recorded_tool",
]

log = logging.getLogger(__name__)

_START = "__start__"
_END = "__end__"
_STOP_REASON = "sessiontrack: stopped"
_STOPPED_KEPT = 100_000  # stopped threads whose resumption is refused


class SessionStopped(GraphDrained):
    """The session of this thread was stopped through the API: the running call ended at
    the next superstep, or a call tried to resume the stopped thread.

    A :class:`langgraph.errors.GraphDrained`, so code that already handles LangGraph's
    drains handles it too."""

    def __init__(self, session_id: str, thread_id: str | None) -> None:
        super().__init__(_STOP_REASON)
        self.session_id = session_id
        self.thread_id = thread_id

    def __str__(self) -> str:
        return f"session {self.session_id} (thread {self.thread_id}) was stopped"


def graph_flow(graph: Any) -> dict[str, Any]:
    """The React Flow graph of a compiled LangGraph graph (``graph.get_graph()``):
    ``__start__`` and ``__end__`` as ``input`` and ``output`` nodes, ``ToolNode`` s as
    ``tool`` nodes; conditional edges labelled with their branch (or ``conditional``) and
    marked ``data.conditional``."""
    drawable = graph.get_graph()
    nodes: list[tuple[str, str | None, str | None]] = []
    for node_id, node in drawable.nodes.items():
        nodes.append((node_id, _node_label(node_id), _node_type(node_id, node.data)))
    edges: list[tuple[str, str, str | None]] = []
    conditional: set[tuple[str, str]] = set()
    for edge in drawable.edges:
        label = None
        if edge.conditional:
            conditional.add((edge.source, edge.target))
            label = str(edge.data) if edge.data not in (None, edge.target) else "conditional"
        elif edge.data is not None:
            label = str(edge.data)
        edges.append((edge.source, edge.target, label))
    flow = flow_graph(nodes, edges, entry=_START if _START in drawable.nodes else None)
    for item in flow["edges"]:
        if (item["source"], item["target"]) in conditional:
            item["data"] = {"conditional": True}
    return flow


def _node_label(node_id: str) -> str:
    return {_START: "start", _END: "end"}.get(node_id, node_id)


def _node_type(node_id: str, data: Any) -> str | None:
    if node_id == _START:
        return "input"
    if node_id == _END:
        return "output"
    if type(data).__name__ == "ToolNode":
        return "tool"
    return None


class LangGraphAdapter(EngineAdapter):
    """Reports the runs of ``graph`` (a compiled ``StateGraph``) as sessions of
    ``chatbot_id``.

    :param tracker: a running :class:`~sessiontrack.Tracker` (or
        :class:`~sessiontrack.SyncTracker` whose loop is the one the graph runs on).
    :param graph: the compiled graph; its ``get_graph()`` is registered as the flow.
    :param chatbot_id: the bot's id; stop requests of other chatbots are ignored.
    :param name: the bot's display name (default: ``chatbot_id``).
    :param version: the flow version (default: a hash of the graph).
    """

    def __init__(
        self,
        tracker: Tracker | BlockingTracker,
        graph: Any,
        chatbot_id: str,
        *,
        name: str | None = None,
        version: str | None = None,
    ) -> None:
        self.graph = graph
        self._node_types: dict[str, str | None] = {}
        flow = graph_flow(graph)
        for node in flow["nodes"]:
            self._node_types[node["id"]] = None if node["type"] == "default" else node["type"]
        self._runs: dict[str, RunControl] = {}  # session id → control of its running call
        # sessions this adapter reported waiting_input (until resumed, completed, stopped
        # or expired)
        self._waiting: set[str] = set()
        # thread id → its stopped session (the last _STOPPED_KEPT threads stopped)
        self._stopped_threads: dict[str, str] = {}
        super().__init__(tracker, chatbot_id, name=name)
        self.register_flow(flow, version)

    # --- the wrappers -------------------------------------------------------------------

    async def astream(
        self, input: Any, config: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """``graph.astream(input, config, **kwargs)``, reported; yields what it yields."""
        run = await self._begin(input, config, kwargs)
        try:
            async for chunk in self.graph.astream(input, run.config, **kwargs):
                yield chunk
        except BaseException as exc:
            self._failed(run, exc)
            raise
        await self._finished(run)

    async def ainvoke(
        self, input: Any, config: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """``graph.ainvoke(input, config, **kwargs)``, reported; returns what it returns."""
        run = await self._begin(input, config, kwargs)
        try:
            result = await self.graph.ainvoke(input, run.config, **kwargs)
        except BaseException as exc:
            self._failed(run, exc)
            raise
        await self._finished(run)
        return result

    # --- one call -----------------------------------------------------------------------

    async def _begin(
        self, input: Any, config: Mapping[str, Any] | None, kwargs: dict[str, Any]
    ) -> _Run:
        configurable = (config or {}).get("configurable") or {}
        raw_thread = configurable.get("thread_id")
        thread = None if raw_thread is None else str(raw_thread)
        resuming = input is None or isinstance(input, Command)
        if thread is None:
            sid, new = self.make_session_id(), True
            self.hook.sessiontrack_session_started(session_id=sid, chatbot_id=self.chatbot_id)
        else:
            if resuming and thread in self._stopped_threads:
                raise SessionStopped(self._stopped_threads[thread], thread)
            known = self.cached_session(thread) is not None
            sid, new = await self._session(thread, known)
            if thread in self._stopped_threads:
                del self._stopped_threads[thread]
            if not new and (sid in self._waiting or not known):
                self._waiting.discard(sid)
                self.status(sid, "running")
        for message in _inbound(input):
            self.hook.sessiontrack_message(
                session_id=sid,
                direction="inbound",
                text=message[0],
                message_id=message[1],
            )
        control = kwargs.get("control")
        if not isinstance(control, RunControl):
            control = kwargs["control"] = RunControl()
        self._runs[sid] = control
        handler = _Handler(self, sid)
        breakpoints = bool(
            kwargs.get("interrupt_before")
            or kwargs.get("interrupt_after")
            or self.graph.interrupt_before_nodes
            or self.graph.interrupt_after_nodes
        )
        return _Run(sid, thread, _with_handler(config, handler), control, handler, breakpoints)

    async def _session(self, thread: str, known: bool) -> tuple[str, bool]:
        """The thread's session: a thread whose session this adapter completed starts a
        new one without asking the tracker (the next turn of a graph that ends every
        turn); a :class:`~sessiontrack.SyncTracker` is asked from a worker thread."""
        if not known and thread in self._ended_here:
            return self.start_session(thread), True
        if self._blocking is not None and not known:
            return await asyncio.to_thread(self.session_for_sync, thread)
        return await self.session_for(thread)

    def complete(
        self, session_id: str, status: str = "completed", reason: str | None = None
    ) -> None:
        self._waiting.discard(session_id)
        super().complete(session_id, status, reason)

    async def _finished(self, run: _Run) -> None:
        self._runs.pop(run.session_id, None)
        if self.stopped(run.session_id):
            raise SessionStopped(run.session_id, run.thread)
        if run.thread is None or self.graph.checkpointer is None or not run.may_wait:
            self.complete(run.session_id, "completed", "flow_end")
            return
        state = await self.graph.aget_state(run.config)
        if not state.next:
            self.complete(run.session_id, "completed", "flow_end")
            return
        waiting = [task for task in state.tasks if task.interrupts]
        node_id = waiting[0].name if waiting else state.next[0]
        for task in waiting:
            for intr in task.interrupts:
                if isinstance(intr.value, str) and intr.value:
                    self.hook.sessiontrack_message(
                        session_id=run.session_id,
                        direction="outbound",
                        text=str(intr.value),
                        node_id=task.name,
                        message_id=f"interrupt:{intr.id}",
                    )
        self._waiting.add(run.session_id)
        self.status(run.session_id, "waiting_input", node_id=node_id)

    def _failed(self, run: _Run, exc: BaseException) -> None:
        """The call raised: a stop's drain becomes :class:`SessionStopped`; a drain the
        caller asked for or a cancelled call leaves the session active (LangGraph keeps
        the checkpoint); any other error completes it with reason ``error``."""
        self._runs.pop(run.session_id, None)
        if self.stopped(run.session_id):
            if isinstance(exc, GraphDrained):
                raise SessionStopped(run.session_id, run.thread) from exc
            return
        if isinstance(exc, GraphBubbleUp) or not isinstance(exc, Exception):
            return  # a drain the caller asked for, a cancellation, a closed generator
        if not run.handler.node_failed:
            log.warning("sessiontrack: graph run of session %s failed: %r", run.session_id, exc)
        self.complete(
            run.session_id,
            "completed",
            "error" if run.handler.node_failed else f"error: {error_text(exc)}"[:REASON],
        )

    # --- stops --------------------------------------------------------------------------

    def on_session_ended(self, session_id: str, conversation_id: str) -> None:
        """The tracker expired the session: it waits no more."""
        self._waiting.discard(session_id)

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        """Drain the session's running call (it ends at the next superstep) and refuse to
        resume its thread."""
        if conversation_id is not None:
            stopped = self._stopped_threads
            stopped.pop(conversation_id, None)
            stopped[conversation_id] = session_id
            if len(stopped) > _STOPPED_KEPT:
                del stopped[next(iter(stopped))]
        self._waiting.discard(session_id)
        control = self._runs.get(session_id)
        if control is not None:
            control.request_drain(_STOP_REASON)


class _Run:
    __slots__ = ("breakpoints", "config", "control", "handler", "session_id", "thread")

    def __init__(
        self,
        session_id: str,
        thread: str | None,
        config: dict[str, Any],
        control: RunControl,
        handler: _Handler,
        breakpoints: bool,
    ) -> None:
        self.breakpoints = breakpoints  # static interrupts: the run may stop before a node
        self.session_id = session_id
        self.thread = thread
        self.config = config
        self.control = control
        self.handler = handler

    @property
    def may_wait(self) -> bool:
        """Whether the run may have paused (an ``interrupt()``, a breakpoint, a subgraph's
        bubbling ``Command``): then ``aget_state`` tells; otherwise it ran to the end."""
        return self.breakpoints or self.handler.bubbled


def _with_handler(config: Mapping[str, Any] | None, handler: BaseCallbackHandler) -> dict[str, Any]:
    """A copy of ``config`` whose callbacks also include ``handler`` (inherited by every
    node, model and tool of the run)."""
    out = dict(config or {})
    callbacks = out.get("callbacks")
    if callbacks is None:
        out["callbacks"] = [handler]
    elif isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(handler, inherit=True)
        out["callbacks"] = manager
    else:
        out["callbacks"] = [*callbacks, handler]
    return out


def _inbound(input: Any) -> Iterator[tuple[str, str | None]]:
    """``(text, message id)`` of each customer message in a call's input: the
    ``HumanMessage`` s (or ``("user", text)`` pairs, ``{"role": "user"}`` dicts) of its
    values, and a ``Command`` 's string ``resume`` value."""
    if isinstance(input, Command):
        if isinstance(input.resume, str) and input.resume:
            yield input.resume, None
        input = input.update
    if isinstance(input, Mapping):
        for value in input.values():
            items = value if isinstance(value, (list, tuple)) else (value,)
            for item in items:
                found = _human(item)
                if found is not None:
                    yield found


def _human(item: Any) -> tuple[str, str | None] | None:
    if isinstance(item, HumanMessage):
        text = str(item.text)
        return (text, item.id) if text else None
    if isinstance(item, tuple) and len(item) == 2 and item[0] in ("user", "human"):
        return (str(item[1]), None) if item[1] else None
    if isinstance(item, Mapping) and item.get("role") in ("user", "human"):
        content = item.get("content")
        return (content, item.get("id")) if isinstance(content, str) and content else None
    return None


def _ai_messages(output: Any) -> Iterator[AIMessage]:
    """The ``AIMessage`` s a node returned (in its update, or a ``Command`` 's)."""
    if isinstance(output, Command):
        output = output.update
    if isinstance(output, AIMessage):
        yield output
    elif isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, AIMessage):
                yield value
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, AIMessage):
                        yield item
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from _ai_messages(item)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON value for a tool's arguments or result (messages give their content)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, BaseMessage):
        return _jsonable(value.content, depth)
    if depth < 20 and isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if depth < 20 and isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class _Handler(BaseCallbackHandler):
    """The callback handler of one call: hook calls only, inline on the engine's loop."""

    run_inline = True  # called in the engine's task, never through an executor
    ignore_retriever = ignore_retry = ignore_custom_event = True  # (tools need "agent")

    def __init__(self, adapter: LangGraphAdapter, session_id: str) -> None:
        self.adapter = adapter
        self.session_id = session_id
        self.hook = adapter.hook
        self.node_failed = False
        self.bubbled = False
        self._root: UUID | None = None
        self._nodes: dict[UUID, tuple[str, float]] = {}
        # run id → node, model, provider, start, first token
        self._llms: dict[UUID, list[Any]] = {}
        self._tools: dict[UUID, tuple[str | None, str, str | None, Any, float]] = {}

    # --- nodes --------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._root is None:
            self._root = run_id  # the graph's own run comes first
        elif parent_run_id == self._root and metadata is not None:
            node = metadata.get("langgraph_node")
            if node is not None:
                self._nodes[run_id] = (str(node), time.perf_counter())

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        found = self._nodes.pop(run_id, None)
        if found is None:
            return
        node, started = found
        adapter = self.adapter
        adapter.node_done(self.session_id, node, started, node_type=adapter._node_types.get(node))
        for message in _ai_messages(outputs):
            text = str(message.text)
            if text:
                self.hook.sessiontrack_message(
                    session_id=self.session_id,
                    direction="outbound",
                    text=text,
                    node_id=node,
                    message_id=message.id,
                )

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        found = self._nodes.pop(run_id, None)
        if found is None:
            return
        if isinstance(error, GraphBubbleUp):
            self.bubbled = True  # interrupt(), a Command to the parent graph: not a failure
            return
        node, started = found
        self.node_failed = True
        self.adapter.node_done(
            self.session_id,
            node,
            started,
            error=error,
            node_type=self.adapter._node_types.get(node),
        )

    # --- LLM calls ----------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._llm_start(run_id, metadata, invocation_params, serialized)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._llm_start(run_id, metadata, invocation_params, serialized)

    def _llm_start(
        self,
        run_id: UUID,
        metadata: dict[str, Any] | None,
        params: dict[str, Any] | None,
        serialized: dict[str, Any] | None,
    ) -> None:
        md = metadata or {}
        model = md.get("ls_model_name") or _model_param(params)
        if not model and serialized:
            model = serialized.get("name")
        self._llms[run_id] = [
            md.get("langgraph_node"),
            model,
            md.get("ls_provider"),
            time.perf_counter(),
            None,
        ]

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._llms.get(run_id)
        if call is not None and call[4] is None:
            call[4] = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._llms.pop(run_id, None)
        if call is None:
            return
        node, model, provider, started, first = call
        latency = _ms(started)
        input_tokens = output_tokens = None
        finish = None
        message = None
        if response.generations and response.generations[0]:
            generation = response.generations[0][0]
            message = getattr(generation, "message", None)
            info = generation.generation_info or {}
            finish = info.get("finish_reason")
        if isinstance(message, AIMessage):
            meta = message.response_metadata
            finish = meta.get("finish_reason") or meta.get("stop_reason") or finish
            model = meta.get("model_name") or meta.get("model") or model
            if message.usage_metadata:
                input_tokens = message.usage_metadata.get("input_tokens")
                output_tokens = message.usage_metadata.get("output_tokens")
        if input_tokens is None and response.llm_output:  # older integrations
            legacy = response.llm_output.get("token_usage") or {}
            input_tokens = legacy.get("prompt_tokens")
            output_tokens = legacy.get("completion_tokens")
        self.hook.sessiontrack_llm_call(
            session_id=self.session_id,
            model=str(model or "unknown"),
            node_id=node,
            provider=provider,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency,
            ttfb_ms=None if first is None else (first - started) * 1000,
            finish_reason=None if finish is None else str(finish),
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._llms.pop(run_id, None)
        if call is None:
            return
        node, model, provider, started, first = call
        self.hook.sessiontrack_llm_call(
            session_id=self.session_id,
            model=str(model or "unknown"),
            node_id=node,
            provider=provider,
            latency_ms=_ms(started),
            ttfb_ms=None if first is None else (first - started) * 1000,
            error=error_text(error),
        )

    # --- tool calls ---------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        node = (metadata or {}).get("langgraph_node")
        args = inputs if inputs is not None else input_str
        call_id = kwargs.get("tool_call_id")
        self._tools[run_id] = (node, str(name), call_id, args, time.perf_counter())

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._tools.pop(run_id, None)
        if call is None:
            return
        node, name, call_id, args, started = call
        error = None
        if isinstance(output, ToolMessage):
            call_id = call_id or output.tool_call_id
            if output.status == "error":
                error = str(output.text)
        self._tool_call(node, name, call_id, args, started, result=output, error=error)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._tools.pop(run_id, None)
        if call is None or isinstance(error, GraphBubbleUp):
            return
        node, name, call_id, args, started = call
        self._tool_call(node, name, call_id, args, started, result=None, error=error_text(error))

    def _tool_call(
        self,
        node: str | None,
        name: str,
        call_id: str | None,
        args: Any,
        started: float,
        *,
        result: Any,
        error: str | None,
    ) -> None:
        self.hook.sessiontrack_tool_call(
            session_id=self.session_id,
            name=name,
            node_id=node,
            call_id=call_id,
            arguments=_jsonable(args),
            result=_jsonable(result),
            error=error,
            duration_ms=_ms(started),
        )


def _model_param(params: Mapping[str, Any] | None) -> str | None:
    if not params:
        return None
    for key in ("model", "model_name", "model_id", "_type"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


# --- replaying a recorded session (sessiontrack.testing) ---------------------------------


class RecordedChatModel(GenericFakeChatModel):
    """langchain-core's ``GenericFakeChatModel`` answering with a recording's answers
    (:func:`recorded_answers`); ``bind_tools`` gives the model itself (the answers already
    hold their tool calls)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def recorded_answers(run: ReplayRun) -> Iterator[AIMessage]:
    """The model's answers in a recorded session, one per recorded LLM call, rebuilt from
    the fixture (the ``sessiontrack_llm_call`` hook records a call's figures, not its
    words): the tool calls recorded after the call in its turn, before the next call, and
    the text its node said after it; with the recorded model name, finish reason and
    tokens. Each answer takes the next record from ``run.llm()``; one call more than the
    recording had raises :class:`~sessiontrack.testing.UnrecordedCall` (a difference of
    kind ``llm`` in the report)."""
    recorded = run.fixture["recorded"]
    calls = sorted(recorded["llmCalls"], key=lambda c: (c["turn"], c["offsetMs"]))
    tools = recorded["toolCalls"]
    said = run.fixture["expected"]["outbound"]
    answers: list[AIMessage] = []
    for i, call in enumerate(calls):
        turn, start = call["turn"], call["offsetMs"]
        end = calls[i + 1]["offsetMs"] if i + 1 < len(calls) else float("inf")
        if i + 1 < len(calls) and calls[i + 1]["turn"] != turn:
            end = float("inf")

        def after(item: Mapping[str, Any], turn: int = turn, start: float = start) -> bool:
            return bool(item["turn"] == turn and start <= item["offsetMs"])

        made = [t for t in tools if after(t) and t["offsetMs"] < end]
        text = next(
            (
                m["text"]
                for m in said
                if after(m) and m["nodeId"] == call["nodeId"] and m["offsetMs"] < end
            ),
            None,
        )
        meta = {"model_name": call["model"], "finish_reason": call["finishReason"]}
        usage = None
        if call["inputTokens"] is not None or call["outputTokens"] is not None:
            i_tok, o_tok = call["inputTokens"] or 0, call["outputTokens"] or 0
            usage = {"input_tokens": i_tok, "output_tokens": o_tok, "total_tokens": i_tok + o_tok}
        answers.append(
            AIMessage(
                text or "",
                tool_calls=[
                    {
                        "name": t["name"],
                        "args": t["arguments"] if isinstance(t["arguments"], dict) else {},
                        "id": t["callId"] or f"replay-call-{i}-{k}",
                    }
                    for k, t in enumerate(made)
                ],
                usage_metadata=usage,
                response_metadata={k: v for k, v in meta.items() if v is not None},
            )
        )
    for answer in answers:
        run.llm()
        yield answer
    run.llm()  # one call too many: raises UnrecordedCall


def recorded_tool(tool: BaseTool, run: ReplayRun) -> BaseTool:
    """A tool with ``tool``'s name, description and arguments whose result is the recorded
    one (``run.tool``): the recorded ``ToolMessage`` content, so the replayed graph sees
    what the recorded one saw."""

    async def call(**arguments: Any) -> Any:
        return run.tool(tool.name, _jsonable(arguments))

    return StructuredTool.from_function(
        coroutine=call,
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        handle_tool_error=tool.handle_tool_error,
    )


class LangGraphReplay:
    """A :class:`~sessiontrack.testing.ReplayEngine` for a LangGraph graph: builds the
    graph with the recording's model answers and tool results, reports through a
    :class:`LangGraphAdapter` on the replay's tracker, and feeds each inbound message as
    the graph's input::

        await assert_replays(fixture, LangGraphReplay(build_agent))

    :param build: makes the compiled graph (with a fresh checkpointer) from a chat model,
        ``build(model)``, or ``build(model, tools)`` when ``tools`` are given; the model is
        a :class:`RecordedChatModel` and the tools are ``tools`` answered from the
        recording (:func:`recorded_tool`).
    :param tools: the graph's tools whose results come from the recording.
    :param input: the graph's input for an inbound message (default:
        ``Command(resume=text)`` when the session waits after an ``interrupt()``, else
        ``{"messages": [HumanMessage(text, id=message_id)]}``).
    :param version: the flow version the adapter registers (default: a hash of the graph).
    """

    def __init__(
        self,
        build: Callable[..., Any],
        *,
        tools: Sequence[BaseTool] = (),
        input: Callable[[ReplayInbound, ReplayRun], Any] | None = None,
        version: str | None = None,
    ) -> None:
        self.build = build
        self.tools = list(tools)
        self.input = input
        self.version = version
        self.graph: Any = None
        self.adapter: LangGraphAdapter | None = None
        self.config: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        """The exceptions the graph's calls raised (the report has the node errors)."""

    async def replay_start(self, run: ReplayRun) -> None:
        tracker = await run.tracker()
        model = RecordedChatModel(messages=recorded_answers(run))
        if self.tools:
            self.graph = self.build(model, [recorded_tool(t, run) for t in self.tools])
        else:
            self.graph = self.build(model)
        adapter = LangGraphAdapter(
            tracker, self.graph, run.chatbot_id, name=run.flow.get("name"), version=self.version
        )
        adapter.make_session_id = run.new_session_id
        run.at_end(adapter.close)
        self.adapter = adapter
        self.config = {"configurable": {"thread_id": run.conversation_id or run.session_id}}

    async def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> None:
        assert self.adapter is not None, "replay_start() first"
        if self.input is not None:
            value = self.input(message, run)
        elif run.status == "waiting_input":
            value = Command(resume=message.text or "")
        else:
            value = {"messages": [HumanMessage(message.text or "", id=message.message_id)]}
        try:
            await self.adapter.ainvoke(value, self.config)
        except Exception as exc:  # reported: the node's error, the session's end
            self.errors.append(exc)
