"""The LangGraph adapter against the real langgraph and langchain-core, offline: a support
graph (a model node, a ``ToolNode``, an ``interrupt()`` node) on an in-memory checkpointer,
driven by langchain-core's ``GenericFakeChatModel``; both backends."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import MessagesState
from langgraph.prebuilt import ToolNode
from langgraph.types import Command

import sessiontrack
from examples.support_agent.agent import support_graph
from sessiontrack.adapters.langgraph import LangGraphAdapter, SessionStopped, graph_flow
from sessiontrack.web import create_app
from tests.adapter_helpers.docs import printed_output, run_documented_example

pytestmark = pytest.mark.anyio
BOT = "support"


def usage(i: int, o: int) -> dict[str, int]:
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}


def lookup_call(order: str, call_id: str) -> AIMessage:
    return AIMessage(
        "",
        tool_calls=[{"name": "lookup", "args": {"order": order}, "id": call_id}],
        usage_metadata=usage(10, 5),  # type: ignore[arg-type]
        response_metadata={"finish_reason": "tool_calls", "model_name": "fake-gpt"},
    )


def answer(text: str) -> AIMessage:
    return AIMessage(
        text,
        usage_metadata=usage(20, 4),  # type: ignore[arg-type]
        response_metadata={"finish_reason": "stop", "model_name": "fake-gpt"},
    )


class Script:
    """The fake model's answers, one per call, and the events a slow tool waits on."""

    def __init__(self, *messages: AIMessage) -> None:
        self.model = GenericFakeChatModel(messages=iter(messages))
        self.tool_entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()


def build(script: Script, checkpointer: Any = None) -> Any:
    """The support example's graph: agent → (tool calls) tools → agent …; a question →
    ask (interrupt) → agent; else the end. The message ``explode`` makes the model node
    raise; the tool ``lookup`` waits for ``script.release``."""

    @tool
    async def lookup(order: str) -> str:
        """Look an order up."""
        script.tool_entered.set()
        await script.release.wait()
        return f"order {order} shipped"

    async def agent(state: MessagesState) -> dict[str, Any]:
        if state["messages"][-1].text == "explode":
            raise ValueError("the model is down")
        return {"messages": [await script.model.ainvoke(state["messages"])]}

    return support_graph(agent, ToolNode([lookup]), "Your order number, please", checkpointer)


async def until(check: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not check():  # noqa: ASYNC110 (the adapter's state, not an event to wait on)
            await anyio.sleep(0.01)


def thread(tid: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": tid}}


@pytest.fixture
def script() -> Script:
    return Script(lookup_call("42", "call-1"), answer("Order 42 has shipped."))


@pytest.fixture
def adapter(tracker: sessiontrack.Tracker, script: Script) -> Iterator[LangGraphAdapter]:
    a = LangGraphAdapter(tracker, build(script), BOT, name="Support")
    yield a
    a.close()


async def only_session(tracker: sessiontrack.Tracker, conv: str) -> sessiontrack.SessionDetail:
    await tracker.flush()
    page = await tracker.sessions.list(conversation_id=conv, chatbot_id=BOT)
    assert page.total == 1, [s.status for s in page.data]
    return await tracker.sessions.get(page.data[0].id)


async def test_the_flow_is_the_graph_with_its_conditional_edges(script: Script) -> None:
    flow = graph_flow(build(script))
    nodes = {n["id"]: (n["data"]["label"], n["type"]) for n in flow["nodes"]}
    assert nodes == {
        "__start__": ("start", "input"),
        "agent": ("agent", "default"),
        "tools": ("tools", "tool"),
        "ask": ("ask", "default"),
        "__end__": ("end", "output"),
    }
    edges = {(e["source"], e["target"]): e.get("data") for e in flow["edges"]}
    assert edges == {
        ("__start__", "agent"): None,
        ("agent", "tools"): {"conditional": True},
        ("agent", "ask"): {"conditional": True},
        ("agent", "__end__"): {"conditional": True},
        ("tools", "agent"): None,
        ("ask", "agent"): None,
    }


async def test_a_completed_conversation(
    tracker: sessiontrack.Tracker, adapter: LangGraphAdapter, script: Script
) -> None:
    question = HumanMessage("Where is order 42?", id="wa-1")
    chunks = [c async for c in adapter.astream({"messages": [question]}, thread("t1"))]
    alone = build(Script(lookup_call("42", "call-1"), answer("Order 42 has shipped.")))
    plain = [c async for c in alone.astream({"messages": [question]}, thread("t1"))]
    assert (
        [list(c) for c in chunks] == [list(c) for c in plain] == [["agent"], ["tools"], ["agent"]]
    )

    detail = await only_session(tracker, "t1")
    assert (detail.status, detail.completion_reason) == ("completed", "flow_end")
    assert detail.chatbot_name == "Support"
    assert detail.node_history == ["agent", "tools", "agent"]
    assert [e.type for e in detail.node_executions] == [None, "tool", None]
    assert all(e.duration_ms is not None and e.error is None for e in detail.node_executions)
    assert [(m.direction, m.text, m.node_id, m.channel_message_id) for m in detail.messages] == [
        ("inbound", "Where is order 42?", None, "wa-1"),
        ("outbound", "Order 42 has shipped.", "agent", chunks[2]["agent"]["messages"][0].id),
    ]
    assert (detail.input_tokens, detail.output_tokens) == (30, 9)
    assert (detail.llm_calls, detail.tool_calls, detail.error_count) == (2, 1, 0)
    first, second = detail.llm_call_history
    assert (first.node_id, first.model, first.provider) == (
        "agent",
        "fake-gpt",
        "genericfakechatmodel",
    )
    assert (first.finish_reason, second.finish_reason) == ("tool_calls", "stop")
    assert first.latency_ms is not None and first.ttfb_ms is None  # not streamed
    [call] = detail.tool_call_history
    assert (call.node_id, call.name, call.call_id) == ("tools", "lookup", "call-1")
    assert (call.arguments, call.result, call.error) == ({"order": "42"}, "order 42 shipped", None)
    assert call.duration_ms is not None
    totals = {t.node_id: (t.executions, t.llm_calls, t.tool_calls) for t in detail.node_totals}
    assert totals == {"agent": (2, 2, 0), "tools": (1, 0, 1)}
    assert {(e["source"], e["target"]) for e in detail.flow_data["edges"]} >= {("agent", "tools")}

    # the same thread talks again: a new session, the first one stays completed
    script.model.messages = iter([answer("You're welcome.")])
    result = await adapter.ainvoke({"messages": [("user", "thanks")]}, thread("t1"))
    assert result["messages"][-1].text == "You're welcome."
    await tracker.flush()
    page = await tracker.sessions.list(conversation_id="t1")
    assert [s.status for s in page.data] == ["completed", "completed"]
    assert page.data[0].id != detail.id and page.data[0].message_count == 2


async def test_waiting_for_the_customer_then_resumed(
    tracker: sessiontrack.Tracker, adapter: LangGraphAdapter, script: Script
) -> None:
    script.model.messages = iter(
        [
            answer("Which order do you mean?"),
            lookup_call("7", "c7"),
            answer("Order 7 is on its way."),
        ]
    )
    out = await adapter.ainvoke({"messages": [HumanMessage("hello", id="m1")]}, thread("t2"))
    assert "__interrupt__" in out  # what the graph alone returns
    await tracker.flush()
    [waiting] = (await tracker.sessions.list(conversation_id="t2")).data
    assert (waiting.status, waiting.current_node_id) == ("waiting_input", "ask")

    chunks = [c async for c in adapter.astream(Command(resume="Order 7"), thread("t2"))]
    assert [next(iter(c)) for c in chunks] == ["ask", "agent", "tools", "agent"]
    detail = await only_session(tracker, "t2")
    assert detail.status == "completed"
    assert detail.node_history == ["agent", "ask", "agent", "tools", "agent"]
    assert [(m.direction, m.text) for m in detail.messages] == [
        ("inbound", "hello"),
        ("outbound", "Which order do you mean?"),
        ("outbound", "Your order number, please"),  # the interrupt's question
        ("inbound", "Order 7"),
        ("outbound", "Order 7 is on its way."),
    ]
    assert detail.tool_call_history[0].arguments == {"order": "7"}


async def test_stopped_from_the_rest_api_mid_conversation(
    tracker: sessiontrack.Tracker, adapter: LangGraphAdapter, script: Script
) -> None:
    script.release.clear()  # the lookup tool waits until the stop has arrived
    chunks: list[Any] = []
    caught: list[BaseException] = []

    async def converse() -> None:
        try:
            async for chunk in adapter.astream(
                {"messages": [HumanMessage("Where is order 42?")]}, thread("t3")
            ):
                chunks.append(chunk)
        except SessionStopped as exc:
            caught.append(exc)

    app = create_app(tracker)
    async with (
        anyio.create_task_group() as tg,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)),
            base_url="http://127.0.0.1",
        ) as api,
    ):
        tg.start_soon(converse)
        with anyio.fail_after(10):
            await script.tool_entered.wait()
        sid = adapter.cached_session("t3")
        assert sid is not None
        other = LangGraphAdapter(tracker, build(Script()), "another-bot")  # not its session
        assert (await api.post(f"/{sid}/stop")).status_code == 200
        await until(lambda: adapter.stopped(sid))
        assert not other.stopped(sid)
        other.close()
        script.release.set()
    [stop] = caught
    assert stop.session_id == sid and stop.thread_id == "t3"
    assert [next(iter(c)) for c in chunks] == ["agent", "tools"]  # the second agent step never ran
    detail = await only_session(tracker, "t3")
    assert detail.status == "stopped"
    # the tools step was in flight at the stop: the core drops reports after a stop
    assert detail.node_history == ["agent"] and detail.tool_calls == 0

    with pytest.raises(SessionStopped):  # the stopped run is not continued
        await adapter.ainvoke(None, thread("t3"))
    script.model.messages = iter([answer("Hello again.")])
    await adapter.ainvoke(
        {"messages": [HumanMessage("hi")]}, thread("t3")
    )  # new input: new session
    await tracker.flush()
    page = await tracker.sessions.list(conversation_id="t3")
    assert [s.status for s in page.data] == ["completed", "stopped"]


async def test_a_node_that_raises(tracker: sessiontrack.Tracker, adapter: LangGraphAdapter) -> None:
    with pytest.raises(ValueError, match="the model is down"):
        await adapter.ainvoke({"messages": [HumanMessage("explode")]}, thread("t4"))
    detail = await only_session(tracker, "t4")
    assert (detail.status, detail.completion_reason) == ("completed", "error")
    [execution] = detail.node_executions
    assert (execution.node_id, execution.error) == ("agent", "ValueError: the model is down")
    assert detail.error_count == 1


async def test_a_restart_mid_conversation(database_url: str, prefix: str, script: Script) -> None:
    script.model.messages = iter(
        [answer("Which order do you mean?"), lookup_call("9", "c9"), answer("Order 9 shipped.")]
    )
    graph = build(script, InMemorySaver())  # the checkpointer outlives the host process
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    async with sessiontrack.Tracker(database_url, **options) as first:
        before = LangGraphAdapter(first, graph, BOT)
        await before.ainvoke({"messages": [HumanMessage("hello", id="m1")]}, thread("t5"))
        sid = before.cached_session("t5")
    async with sessiontrack.Tracker(database_url, **options) as second:
        after = LangGraphAdapter(second, graph, BOT)
        await after.ainvoke(Command(resume="Order 9"), thread("t5"))
        assert after.cached_session("t5") is None  # completed
        detail = await only_session(second, "t5")
    assert detail.id == sid and detail.status == "completed"
    assert detail.node_history == ["agent", "ask", "agent", "tools", "agent"]
    assert [m.text for m in detail.messages] == [
        "hello",
        "Which order do you mean?",
        "Your order number, please",
        "Order 9",
        "Order 9 shipped.",
    ]
    assert detail.llm_calls == 3 and detail.tool_calls == 1


async def test_streamed_tokens_give_the_time_to_first_token(
    tracker: sessiontrack.Tracker, adapter: LangGraphAdapter, script: Script
) -> None:
    script.model.messages = iter([AIMessage("Happy to help you today.")])
    chunks = [
        c
        async for c in adapter.astream(
            {"messages": [HumanMessage("hi")]}, thread("t6"), stream_mode="messages"
        )
    ]
    assert "".join(c[0].text for c in chunks) == "Happy to help you today."
    detail = await only_session(tracker, "t6")
    [call] = detail.llm_call_history
    assert call.ttfb_ms is not None and call.latency_ms is not None
    assert 0 <= call.ttfb_ms <= call.latency_ms
    assert [m.text for m in detail.messages] == ["hi", "Happy to help you today."]


async def test_a_call_without_a_thread_is_a_session_of_its_own(
    tracker: sessiontrack.Tracker, script: Script
) -> None:
    script.model.messages = iter([answer("Hi!")])
    adapter = LangGraphAdapter(tracker, build(script), BOT)
    graph_without_memory = adapter.graph.copy(update={"checkpointer": None})
    adapter.graph = graph_without_memory
    await adapter.ainvoke({"messages": [HumanMessage("hi")]})
    await tracker.flush()
    [one] = (await tracker.sessions.list(chatbot_id=BOT)).data
    assert (one.status, one.conversation_id, one.message_count) == ("completed", None, 2)
    adapter.close()


DOCS = Path(__file__).resolve().parent.parent / "docs" / "adapters" / "langgraph.md"


async def test_the_docs_example_runs_as_printed(tmp_path: Path) -> None:
    """docs/adapters/langgraph.md's example, run as ``python3 agent.py`` in an empty
    folder (its SQLite file is relative), prints what the page says it prints."""
    text = DOCS.read_text(encoding="utf-8")
    done = await run_documented_example(DOCS, "sqlite", tmp_path, script="agent.py")
    assert done.stdout == printed_output(DOCS)
    assert "sessiontrack[langgraph]" in text  # the extra the page installs
    extras = tomllib.loads((DOCS.parent.parent.parent / "pyproject.toml").read_text())
    assert "langgraph" in extras["project"]["optional-dependencies"]


async def test_with_a_sync_tracker_the_writer_is_off_the_graphs_loop(
    database_url: str, prefix: str, script: Script
) -> None:
    script.model.messages = iter(
        [answer("Which order do you mean?"), lookup_call("5", "c5"), answer("Order 5 shipped.")]
    )
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    with sessiontrack.SyncTracker(database_url, **options) as threaded:
        adapter = LangGraphAdapter(threaded, build(script), BOT)
        await adapter.ainvoke({"messages": [HumanMessage("hello")]}, thread("t7"))
        await adapter.ainvoke(Command(resume="Order 5"), thread("t7"))
        await anyio.to_thread.run_sync(threaded.flush)
        [one] = (await anyio.to_thread.run_sync(lambda: threaded.sessions.list())).data
        detail = await anyio.to_thread.run_sync(threaded.sessions.get, one.id)
    assert detail.status == "completed" and detail.tool_calls == 1
    assert detail.node_history == ["agent", "ask", "agent", "tools", "agent"]
