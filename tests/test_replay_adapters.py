"""Recorded adapter sessions replayed as regression tests: a conversation through a real
engine (LangGraph, python-telegram-bot, transitions) and its adapter into a real tracker
(SQLite and PostgreSQL), its fixture from ``GET /{id}/fixture``, replayed with the
adapter's ``ReplayEngine`` against the unchanged engine (clean) and a changed one (fails at
the node that changed, with a readable diff)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from adapter_helpers.telegram import FakeBotAPI
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from transitions import Machine

import sessiontrack
from examples.support_agent.agent import SupportModel, build_agent, lookup_order, support_graph
from sessiontrack.adapters.langgraph import LangGraphAdapter, LangGraphReplay
from sessiontrack.adapters.telegram import TelegramAdapter, TelegramReplay, TrackingRateLimiter
from sessiontrack.adapters.transitions import TransitionsAdapter, TransitionsReplay
from sessiontrack.testing import ReplayFailed, assert_replays, replay
from sessiontrack.web import create_app

DOC = Path(__file__).resolve().parent.parent / "docs" / "replay.md"
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:If 'per_message=False':UserWarning"),
]


async def fixture_of_stored(database_url: str, prefix: str, session_id: str) -> dict[str, Any]:
    """The fixture of a session a finished process stored, from a tracker opened anew."""
    async with sessiontrack.Tracker(database_url, prefix=prefix, migrate=True) as tracker:
        return await fixture_of(tracker, session_id)


async def fixture_of(tracker: sessiontrack.Tracker, session_id: str) -> dict[str, Any]:
    """The session's fixture, as ``GET /{id}/fixture`` gives it."""
    await tracker.flush()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(tracker), client=("127.0.0.1", 50000)),
        base_url="http://127.0.0.1",
    ) as api:
        response = await api.get(f"/{session_id}/fixture")
    assert response.status_code == 200, response.text
    fixture: dict[str, Any] = response.json()
    return fixture


# --- LangGraph ----------------------------------------------------------------------------


def support_agent(model: Any, tools: list[Any] | None = None) -> Any:
    """The support example's graph on ``model``, with ``tools`` (default: the real
    ``lookup_order``)."""

    async def agent(state: Any) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    node = ToolNode(tools or [lookup_order], handle_tool_errors=True)
    return support_graph(agent, node, {"waiting_for": "customer"})


async def record_support(tracker: sessiontrack.Tracker) -> dict[str, Any]:
    """A question, an order number (a tool call), no more questions: the example's model."""
    adapter = LangGraphAdapter(tracker, build_agent(SupportModel()), "support", name="Support")
    config = {"configurable": {"thread_id": "customer-42"}}
    await adapter.ainvoke({"messages": [HumanMessage("Where is my order?", id="m1")]}, config)
    await adapter.ainvoke(Command(resume="1001"), config)
    await adapter.ainvoke(Command(resume="no, thanks"), config)
    sid = adapter.cached_session("customer-42")
    assert sid is None  # completed
    adapter.close()
    await tracker.flush()
    page = await tracker.sessions.list(chatbot_id="support", conversation_id="customer-42")
    [summary] = page.data
    return await fixture_of(tracker, summary.id)


async def test_langgraph_unchanged_graph_replays_clean(tracker: sessiontrack.Tracker) -> None:
    fixture = await record_support(tracker)
    assert [c["name"] for c in fixture["recorded"]["toolCalls"]] == ["lookup_order"]
    assert len(fixture["recorded"]["llmCalls"]) == 4
    replayer = LangGraphReplay(support_agent, tools=[lookup_order])
    report = await assert_replays(fixture, replayer)
    assert report.engine_flow_version == report.flow_version
    texts = [s.text for turn in report.actual for s in turn if s.kind == "message"]
    assert texts == [
        "Happy to check. Which order number?",
        "Order 1001 is shipped on Monday, arriving Thursday. Anything else?",
        "Glad I could help. Goodbye!",
    ]
    assert replayer.errors == []


def support_agent_signing(model: Any, tools: list[Any]) -> Any:
    """Changed: the model node signs every answer."""

    async def agent(state: Any) -> dict[str, Any]:
        answer = await model.ainvoke(state["messages"])
        if answer.text:
            answer = answer.model_copy(update={"content": f"{answer.text} (Acme support)"})
        return {"messages": [answer]}

    return support_graph(agent, ToolNode(tools, handle_tool_errors=True), {"waiting_for": "x"})


def support_agent_ending_after_tools(model: Any, tools: list[Any]) -> Any:
    """Changed: the graph ends after the tool call instead of answering with its result."""
    graph = support_agent(model, tools)
    builder = graph.builder
    builder.edges.discard(("tools", "agent"))
    builder.add_edge("tools", "__end__")
    return builder.compile(checkpointer=graph.checkpointer)


async def test_langgraph_a_changed_branch_fails_where_the_path_departs(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_support(tracker)
    report = await replay(
        fixture, LangGraphReplay(support_agent_ending_after_tools, tools=[lookup_order])
    )
    first = report.first
    assert first is not None, str(report)
    assert (first.kind, first.turn, first.node_id) == ("path", 2, "agent")
    assert first.expected == "node 'agent'" and first.actual == "no further node"
    assert first.path_before[-3:] == ("ask", "agent", "tools")
    text = str(report)
    assert "the engine started another session" in text  # turn 3 found the graph ended
    assert 'after inbound message 2 ("1001"' in text
    assert "\n-  node agent\n" in text


async def test_langgraph_a_changed_text_fails_at_the_node_that_said_it(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_support(tracker)
    with pytest.raises(ReplayFailed) as failed:
        await assert_replays(fixture, LangGraphReplay(support_agent_signing, tools=[lookup_order]))
    report = failed.value.report
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 1, "agent")
    assert first.expected == 'say [agent] text: "Happy to check. Which order number?"'
    assert first.actual == 'say [agent] text: "Happy to check. Which order number? (Acme support)"'
    assert first.path_before == ("agent",)
    assert '\n+    say [agent] text: "Happy to check. Which order number? (Acme support)"' in str(
        report
    )


def support_agent_summing_up(model: Any, tools: list[Any]) -> Any:
    """Changed: the support graph, but where it ended a new node asks the model for a
    summary first."""

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    def ask(state: MessagesState) -> dict[str, Any]:
        return {"messages": [HumanMessage(interrupt({"waiting_for": "customer"}))]}

    def route(state: MessagesState) -> str:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "ask" if last.text.endswith("?") else "summary"

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    graph.add_node("ask", ask)
    graph.add_node("summary", agent)
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", "ask", "summary"])
    graph.add_edge("tools", "agent")
    graph.add_edge("ask", "agent")
    graph.add_edge("summary", END)
    return graph.compile(checkpointer=InMemorySaver())


async def test_langgraph_a_model_call_more_than_recorded_is_an_llm_difference(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_support(tracker)
    replayer = LangGraphReplay(support_agent_summing_up, tools=[lookup_order])
    report = await replay(fixture, replayer)
    first = report.first
    assert first is not None, str(report)
    assert (first.kind, first.turn) == ("llm", 3), str(report)
    assert (first.expected, first.actual) == ("no further LLM call", "an LLM call")
    assert [type(e).__name__ for e in replayer.errors] == ["UnrecordedCall"]
    assert "summary: UnrecordedCall" in str(report)  # the node's error, in the notes


# --- python-telegram-bot -------------------------------------------------------------------


def order_conversation(
    *, pasta_skips_size: bool = True, coming: str = "One {} pizza, coming."
) -> ConversationHandler[Any]:
    """/start → name → a button (pizza or pasta) → size (pizza only) → done."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        assert update.message is not None
        await update.message.reply_text("Your name?")
        return "name"

    async def name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        assert update.message is not None
        buttons = [[InlineKeyboardButton(d, callback_data=d) for d in ("pizza", "pasta")]]
        await update.message.reply_text(
            f"Hi {update.message.text}! Pizza or pasta?",
            reply_markup=InlineKeyboardMarkup(buttons),
        )
        return "dish"

    async def dish(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str | int:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer()
        if query.data == "pasta" and pasta_skips_size:
            await context.bot.send_message(query.message.chat.id, "One pasta, coming.")
            return ConversationHandler.END
        await context.bot.send_message(query.message.chat.id, "Which size?")
        return "size"

    async def size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.message is not None
        await update.message.reply_text(coming.format(update.message.text))
        return ConversationHandler.END

    text = filters.TEXT & ~filters.COMMAND
    return ConversationHandler(
        entry_points=[CommandHandler("start", start)],
        states={
            "name": [MessageHandler(text, name)],
            "dish": [CallbackQueryHandler(dish)],
            "size": [MessageHandler(text, size)],
        },
        fallbacks=[],
        per_message=False,
    )


def update(n: int, text: str | None = None, data: str | None = None) -> dict[str, Any]:
    chat = {"id": 7, "type": "private"}
    user = {"id": 7, "is_bot": False, "first_name": "Ann", "last_name": "Lee"}
    if data is not None:
        shown = {"message_id": 1000 + n, "date": 0, "chat": chat, "text": "Pizza or pasta?"}
        query = {"id": f"q{n}", "from": user, "chat_instance": "7", "data": data, "message": shown}
        return {"update_id": n, "callback_query": query}
    message: dict[str, Any] = {"message_id": n, "date": 0, "chat": chat, "from": user, "text": text}
    if text and text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
    return {"update_id": n, "message": message}


async def record_order(tracker: sessiontrack.Tracker, dish: str) -> dict[str, Any]:
    app = (
        ApplicationBuilder()
        .token("123456:offline")
        .request(FakeBotAPI())
        .rate_limiter(TrackingRateLimiter())
        .updater(None)
        .build()
    )
    adapter = TelegramAdapter(tracker, app, "pizza-bot", name="Pizza bot")
    app.add_handler(adapter.track(order_conversation()))
    updates = [update(1, "/start"), update(2, "Ann"), update(3, data=dish)]
    if dish == "pizza":
        updates.append(update(4, "large"))
    async with app:
        for data in updates:
            await app.process_update(Update.de_json(data, app.bot))
    adapter.close()
    await tracker.flush()
    [summary] = (await tracker.sessions.list(chatbot_id="pizza-bot")).data
    assert summary.status == "completed"
    return await fixture_of(tracker, summary.id)


async def test_telegram_unchanged_conversation_replays_clean(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_order(tracker, "pizza")
    assert [m["type"] for m in fixture["inbound"]] == ["text", "text", "callback_query", "text"]
    replayer = TelegramReplay(order_conversation)
    report = await assert_replays(fixture, replayer)
    assert [s.node_id for t in report.actual for s in t if s.kind == "node"] == [
        "entry",
        "name",
        "dish",
        "size",
    ]
    assert [m["text"] for m in replayer.bot_api.sent] == [
        "Your name?",
        "Hi Ann! Pizza or pasta?",
        "Which size?",
        "One large pizza, coming.",
    ]


async def test_telegram_a_changed_text_fails_at_its_node(tracker: sessiontrack.Tracker) -> None:
    fixture = await record_order(tracker, "pizza")
    changed = TelegramReplay(lambda: order_conversation(coming="One {} pizza, on its way."))
    report = await replay(fixture, changed)
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 4, "size")
    assert first.expected == 'say [size] text: "One large pizza, coming."'
    assert first.actual == 'say [size] text: "One large pizza, on its way."'
    text = str(report)
    assert 'after inbound message 4 ("large"' in text
    assert "path so far: entry → name → dish → size" in text


async def test_telegram_a_changed_branch_fails_where_the_path_departs(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_order(tracker, "pasta")
    with pytest.raises(ReplayFailed) as failed:
        await assert_replays(
            fixture, TelegramReplay(lambda: order_conversation(pasta_skips_size=False))
        )
    report = failed.value.report
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 3, "dish")
    assert first.expected == 'say [dish] text: "One pasta, coming."'
    assert first.actual == 'say [dish] text: "Which size?"'
    assert "\n-  end completed (flow_end)" in str(report)


# --- transitions ---------------------------------------------------------------------------

HELP_STATES = ["start", "menu", "order", "status", {"name": "done", "final": True}]
HELP_WAITING = {"menu", "order", "status"}
REPLIES = {
    "menu": "Hi! Say 'order' or 'bye'.",
    "order": "Your order number?",
    "status": "Order {} is on its way. Anything else?",
    "done": "Goodbye!",
}


def help_machine(*, number_to: str = "status") -> Machine:
    transitions = [
        ["hello", "start", "menu"],
        ["order", "menu", "order"],
        ["bye", "menu", "done"],
        ["number", "order", number_to],
        ["back", "status", "menu"],
    ]
    return Machine(
        model=None, states=HELP_STATES, transitions=transitions, initial="start", send_event=True
    )


def help_turn(replies: dict[str, str]) -> Any:
    """The host's code for one customer message (the same in production and in a replay)."""

    def turn(adapter: TransitionsAdapter, chat: Any, message: Any) -> None:
        adapter.inbound(chat, message.text, message_id=message.message_id)
        said = (message.text or "").strip().lower()
        if chat.state == "start":
            chat.hello()
        elif chat.state == "menu":
            chat.trigger("bye" if said == "bye" else "order")
        elif chat.state == "order":
            chat.number()
        elif chat.state == "status":
            chat.back()
        adapter.outbound(chat, replies[chat.state].format(said))

    return turn


class Inbound:
    def __init__(self, text: str, message_id: str) -> None:
        self.text, self.message_id = text, message_id


async def record_help(database_url: str, prefix: str) -> dict[str, Any]:
    said = ["hi", "order", "1001", "thanks", "bye"]
    with sessiontrack.SyncTracker(database_url, prefix=prefix, migrate=True) as sync:
        adapter = TransitionsAdapter(sync, help_machine(), "help", waiting=HELP_WAITING)

        class Chat:
            pass

        chat = Chat()
        sid = adapter.track(chat, "c-1", contact={"name": "Ann"})
        turn = help_turn(REPLIES)
        for n, text in enumerate(said, 1):
            turn(adapter, chat, Inbound(text, f"in-{n}"))
        adapter.close()
        sync.flush()
        assert sync.sessions.get(sid).status == "completed"
    return await fixture_of_stored(database_url, prefix, sid)


async def test_transitions_unchanged_machine_replays_clean(database_url: str, prefix: str) -> None:
    fixture = await record_help(database_url, prefix)
    assert fixture["expected"]["end"] == {"status": "completed", "reason": "flow_end"}
    replayer = TransitionsReplay(help_machine, help_turn(REPLIES), waiting=HELP_WAITING)
    report = await assert_replays(fixture, replayer)
    assert replayer.errors == []
    assert [[s.node_id for s in t if s.kind == "node"] for t in report.actual] == [
        ["start"],
        ["menu"],
        ["order"],
        ["status"],
        ["menu"],
        ["done"],
    ]


async def test_transitions_a_changed_transition_fails_where_the_path_departs(
    database_url: str, prefix: str
) -> None:
    fixture = await record_help(database_url, prefix)
    changed = TransitionsReplay(
        lambda: help_machine(number_to="done"), help_turn(REPLIES), waiting=HELP_WAITING
    )
    report = await replay(fixture, changed)
    first = report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("path", 3, "status")
    assert (first.expected, first.actual) == ("node 'status'", "node 'done'")
    assert first.path_before == ("start", "menu", "order")
    text = str(report)
    assert 'after inbound message 3 ("1001"' in text
    assert "\n-  node status\n" in text and "\n+turn 4\n" in text


async def test_transitions_a_changed_text_fails_at_its_state(
    database_url: str, prefix: str
) -> None:
    fixture = await record_help(database_url, prefix)
    replies = {**REPLIES, "order": "Which order number?"}
    with pytest.raises(ReplayFailed) as failed:
        await assert_replays(fixture, TransitionsReplay(help_machine, help_turn(replies)))
    first = failed.value.report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 2, "order")
    assert first.expected == 'say [order] text: "Your order number?"'
    assert first.actual == 'say [order] text: "Which order number?"'


# --- the examples of docs/replay.md ----------------------------------------------------------


def documented(heading: str) -> dict[str, Any]:
    """The first ``python`` block under ``### heading`` in docs/replay.md, run as a module
    (not as ``__main__``): its names."""
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index(f"### {heading}\n") :]
    found = re.search(r"^```python\n(.*?)^```", part, re.S | re.M)
    assert found is not None, heading
    names: dict[str, Any] = {"__name__": "replay_doc_example"}
    exec(compile(found.group(1), f"docs/replay.md ({heading})", "exec"), names)
    return names


def save(fixture: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(fixture), encoding="utf-8")


async def run_documented_test(names: dict[str, Any], fixture: dict[str, Any], file: str) -> None:
    """Save ``fixture`` where the example reads it (relative to the working directory,
    a temporary one) and run the example's test function."""
    save(fixture, Path(file))
    [test] = [f for n, f in names.items() if n.startswith("test_")]
    await test()


async def test_the_documented_langgraph_example(
    tracker: sessiontrack.Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = documented("LangGraph")
    fixture = await record_support(tracker)
    monkeypatch.chdir(tmp_path)
    await run_documented_test(names, fixture, "tests/fixtures/support.json")


async def test_the_documented_telegram_example(
    tracker: sessiontrack.Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = documented("python-telegram-bot")
    app = (
        ApplicationBuilder()
        .token("123456:offline")
        .request(FakeBotAPI())
        .rate_limiter(TrackingRateLimiter())
        .updater(None)
        .build()
    )
    adapter = TelegramAdapter(tracker, app, "pizza-bot")
    app.add_handler(adapter.track(names["pizza_order"]()))
    async with app:
        for n, text in enumerate(["/start", "Ann", "large"], 1):
            await app.process_update(Update.de_json(update(n, text), app.bot))
    adapter.close()
    await tracker.flush()
    [summary] = (await tracker.sessions.list(chatbot_id="pizza-bot")).data
    fixture = await fixture_of(tracker, summary.id)
    monkeypatch.chdir(tmp_path)
    await run_documented_test(names, fixture, "tests/fixtures/pizza.json")


async def test_the_documented_transitions_example(
    database_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = documented("transitions")
    with sessiontrack.SyncTracker(database_url, prefix=prefix, migrate=True) as sync:
        adapter = TransitionsAdapter(
            sync, names["make_machine"](), "help", waiting={"menu", "order", "status"}
        )

        class Chat:
            pass

        chat = Chat()
        sid = adapter.track(chat, "c-2")
        for n, text in enumerate(["hi", "order", "1001", "thanks", "bye"], 1):
            names["turn"](adapter, chat, Inbound(text, f"in-{n}"))
        adapter.close()
        sync.flush()
    fixture = await fixture_of_stored(database_url, prefix, sid)
    monkeypatch.chdir(tmp_path)
    await run_documented_test(names, fixture, "tests/fixtures/help.json")
