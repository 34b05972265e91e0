"""Recorded adapter sessions replayed as regression tests: a conversation through a real
engine (LangGraph, python-telegram-bot, transitions, pipecat) and its adapter into a real tracker
(SQLite and PostgreSQL), its fixture from ``GET /{id}/fixture``, replayed with the
adapter's ``ReplayEngine`` against the unchanged engine (clean) and a changed one (fails at
the node that changed, with a readable diff)."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from adapter_helpers.telegram import FakeBotAPI
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.turns.user_start.external_user_turn_start_strategy import (
    ExternalUserTurnStartStrategy,
)
from pipecat.turns.user_stop.external_user_turn_stop_strategy import ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner
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
from sessiontrack.adapters.pipecat import (
    PipecatAdapter,
    PipecatReplay,
    recorded_responses,
    spoken_frames,
)
from sessiontrack.adapters.telegram import TelegramAdapter, TelegramReplay, TrackingRateLimiter
from sessiontrack.adapters.transitions import TransitionsAdapter, TransitionsReplay
from sessiontrack.testing import (
    RecordedError,
    ReplayFailed,
    assert_replays,
    recorded_error,
    replay,
)
from sessiontrack.web import create_app
from tests.test_adapter_pipecat import ScriptedLLM

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "moves into pipecat.flows"
    from pipecat_flows import FlowManager, FlowsFunctionSchema, NodeConfig

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


async def test_langgraph_a_tool_call_that_failed_fails_the_same_way_when_replayed(
    tracker: sessiontrack.Tracker,
) -> None:
    adapter = LangGraphAdapter(tracker, build_agent(SupportModel()), "support", name="Support")
    config = {"configurable": {"thread_id": "customer-9"}}
    await adapter.ainvoke({"messages": [HumanMessage("Where is my order?", id="m1")]}, config)
    for said in ("9999", "1001", "no, thanks"):  # an unknown order first: the tool raises
        await adapter.ainvoke(Command(resume=said), config)
    adapter.close()
    await tracker.flush()
    [summary] = (await tracker.sessions.list(chatbot_id="support")).data
    fixture = await fixture_of(tracker, summary.id)
    failed = fixture["recorded"]["toolCalls"][0]
    assert (failed["result"], failed["error"]) == (None, "LookupError: no order 9999")
    replayer = LangGraphReplay(support_agent, tools=[lookup_order])
    report = await assert_replays(fixture, replayer)
    assert replayer.errors == []  # the graph's ToolNode handled it, as when recorded
    seen = replayer.graph.get_state(replayer.config).values["messages"]
    tool_messages = [(m.status, m.text) for m in seen if m.type == "tool"]
    assert tool_messages == [  # what the model was given: the recorded graph's words
        ("error", "Error: LookupError('no order 9999')\n Please fix your mistakes."),
        ("success", "Order 1001 is shipped on Monday, arriving Thursday."),
    ]
    assert ["tools" in [s.node_id for s in turn] for turn in report.actual] == [
        False,  # before the first message
        False,
        True,  # 9999: the failed call
        True,
        False,
    ]


def test_a_recorded_error_is_raised_again_under_its_own_name() -> None:
    lookup = recorded_error("LookupError: no order 9999")
    assert isinstance(lookup, LookupError) and isinstance(lookup, RecordedError)
    assert (type(lookup).__name__, str(lookup)) == ("LookupError", "no order 9999")
    assert lookup.recorded == "LookupError: no order 9999"
    assert type(recorded_error("LookupError: again")) is type(lookup)  # one class a name
    custom = recorded_error("PaymentDeclined: card 4242")
    assert (type(custom).__name__, str(custom)) == ("PaymentDeclined", "card 4242")
    assert isinstance(custom, RecordedError) and not isinstance(custom, LookupError)
    bare = recorded_error("TimeoutError")
    assert isinstance(bare, TimeoutError) and str(bare) == ""
    free = recorded_error("the service said no")
    assert type(free) is RecordedError and str(free) == "the service said no"


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


# --- pipecat ----------------------------------------------------------------------------


class PizzaFlow:
    """A pipecat-flows call: greeting → order → goodbye; ``order_to`` where placing the
    order leads, ``noting`` what the order node says after its question (a ``tts_say``)."""

    def __init__(
        self,
        *,
        order_to: str = "goodbye",
        noting: str = "Today's special: margherita.",
        price: float = 12.5,
    ) -> None:
        self.order_to, self.noting, self.price = order_to, noting, price
        self.context = LLMContext()

    def build(self, llm: Any) -> FlowManager:
        strategies = UserTurnStrategies(
            start=[ExternalUserTurnStartStrategy()],
            stop=[ExternalUserTurnStopStrategy(timeout=0.02)],
        )
        self.context = LLMContext()
        aggregators = LLMContextAggregatorPair(
            self.context, user_params=LLMUserAggregatorParams(user_turn_strategies=strategies)
        )
        worker = PipelineWorker(
            Pipeline([aggregators.user(), llm, aggregators.assistant()]),
            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
            idle_timeout_secs=None,
            enable_rtvi=False,
        )
        return FlowManager(worker=worker, llm=llm, context_aggregator=aggregators)

    async def start(self, flow: FlowManager) -> None:
        await flow.initialize(self.greeting())

    def greeting(self) -> NodeConfig:
        async def collect_name(args: dict[str, Any], flow: FlowManager) -> tuple[Any, Any]:
            flow.state["name"] = args["name"]
            return {"name": args["name"]}, self.order()

        return {
            "name": "greeting",
            "task_messages": [{"role": "system", "content": "Ask for the customer's name."}],
            "functions": [pipecat_function("collect_name", collect_name, name="string")],
        }

    def order(self) -> NodeConfig:
        async def place_order(args: dict[str, Any], flow: FlowManager) -> tuple[Any, Any]:
            total = self.price  # what a price service says
            return {"order": args["item"], "total": total}, self.leave(self.order_to)

        return {
            "name": "order",
            "task_messages": [{"role": "system", "content": "Take the order."}],
            "post_actions": [{"type": "tts_say", "text": self.noting}],
            "functions": [pipecat_function("place_order", place_order, item="string")],
        }

    def leave(self, name: str) -> NodeConfig:
        return {
            "name": name,
            "task_messages": [{"role": "system", "content": "Say goodbye."}],
            "functions": [],
            "post_actions": [{"type": "end_conversation"}] if name == "goodbye" else [],
        }


def pipecat_function(function: str, handler: Any, **properties: str) -> FlowsFunctionSchema:
    return FlowsFunctionSchema(
        name=function,
        description=function,
        properties={k: {"type": t} for k, t in properties.items()},
        required=list(properties),
        handler=handler,
    )


PIZZA_SCRIPT: list[dict[str, Any]] = [
    {"text": ["Hello! ", "What is ", "your name?"]},
    {"call": ("collect_name", {"name": "Ada"})},
    {"text": ["What would ", "you like?"]},
    {"call": ("place_order", {"item": "pizza"})},
    {"text": ["Bye, ", "Ada!"]},
]


async def record_pizza_call(
    tracker: sessiontrack.Tracker,
    flow: PizzaFlow,
    script: list[dict[str, Any]],
    said: list[str],
    *,
    hang_up: str | None = None,
) -> dict[str, Any]:
    """A call through the real pipeline, FlowManager and adapter (the LLM scripted, the
    customer's words pushed as a transport with voice detection pushes them); ``hang_up``:
    the caller hangs up after the last words (a cancel with that reason)."""
    adapter = PipecatAdapter(tracker, "pizza-call", name="Pizza by phone")
    manager = flow.build(ScriptedLLM(list(script)))
    observer = await adapter.observer("+15550001", worker=manager.worker, contact={"name": "Ada"})
    observer.track_flow(manager)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(manager.worker)
    running = asyncio.get_running_loop().create_task(runner.run())
    try:
        await flow.start(manager)
        with anyio.fail_after(10):
            await observer.customer_turn()
            for text in said:
                await manager.worker.queue_frames(spoken_frames(text))
                await observer.customer_turn()
            if hang_up is not None:
                await manager.worker.cancel(reason=hang_up)
            await running  # the flow's goodbye ends the call, or the hang-up
    finally:
        if not running.done():
            await manager.worker.cancel()
            await running
        adapter.close()
    return await fixture_of(tracker, observer.session_id)


async def test_pipecat_unchanged_flow_replays_clean(tracker: sessiontrack.Tracker) -> None:
    flow = PizzaFlow()
    fixture = await record_pizza_call(tracker, flow, PIZZA_SCRIPT, ["I am Ada", "A pizza, please"])
    assert [m["text"] for m in fixture["inbound"]] == ["I am Ada", "A pizza, please"]
    assert fixture["expected"]["end"] == {"status": "completed", "reason": "flow_end"}
    assert [
        (r.text, [c["name"] for c in r.function_calls]) for r in recorded_responses(fixture)
    ] == [
        ("Hello! What is your name?", []),
        (None, ["collect_name"]),
        ("What would you like?", []),
        (None, ["place_order"]),
        ("Bye, Ada!", []),
    ]
    replayer = PipecatReplay(flow.build, start=flow.start)
    report = await assert_replays(fixture, replayer)
    assert [[s.node_id for s in t if s.kind == "node"] for t in report.actual] == [
        ["greeting"],
        ["order"],
        ["goodbye"],
    ]
    texts = [s.text for t in report.actual for s in t if s.kind == "message"]
    assert texts == [
        "Hello! What is your name?",
        "Today's special: margherita.",
        "What would you like?",
        "Bye, Ada!",
    ]
    assert replayer.errors == []
    assert replayer.built.state == {"name": "Ada"}  # the flow's own handlers ran


async def test_pipecat_a_changed_branch_fails_where_the_path_departs(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_pizza_call(
        tracker, PizzaFlow(), PIZZA_SCRIPT, ["I am Ada", "A pizza, please"]
    )
    changed = PizzaFlow(order_to="confirm")  # placing the order leads elsewhere now
    report = await replay(fixture, PipecatReplay(changed.build, start=changed.start))
    first = report.first
    assert first is not None, str(report)
    assert (first.kind, first.turn, first.node_id) == ("path", 2, "goodbye")
    assert (first.expected, first.actual) == ("node 'goodbye'", "node 'confirm'")
    assert first.path_before == ("greeting", "order")
    text = str(report)
    assert 'after inbound message 2 ("A pizza, please"' in text
    assert "\n-  node goodbye\n" in text and "\n+  node confirm\n" in text
    assert "\n-  end completed (flow_end)" in text  # the changed call did not hang up


async def test_pipecat_a_changed_text_fails_at_the_node_that_said_it(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_pizza_call(
        tracker, PizzaFlow(), PIZZA_SCRIPT, ["I am Ada", "A pizza, please"]
    )
    changed = PizzaFlow(noting="Today's special: pepperoni.")
    with pytest.raises(ReplayFailed) as failed:
        await assert_replays(fixture, PipecatReplay(changed.build, start=changed.start))
    first = failed.value.report.first
    assert first is not None
    assert (first.kind, first.turn, first.node_id) == ("message", 1, "order")
    assert first.expected == 'say [order] text: "Today\'s special: margherita."'
    assert first.actual == 'say [order] text: "Today\'s special: pepperoni."'
    assert first.path_before == ("greeting", "order")


async def test_pipecat_functions_hand_back_the_recorded_results(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_pizza_call(
        tracker, PizzaFlow(), PIZZA_SCRIPT, ["I am Ada", "A pizza, please"]
    )
    changed = PizzaFlow(price=99.0)  # the price service answers otherwise today
    await assert_replays(fixture, PipecatReplay(changed.build, start=changed.start))
    given = changed.context.get_messages()  # what the LLM was given: pipecat's async results
    results = [
        json.loads(json.loads(m["content"])["result"]) for m in given if m["role"] == "developer"
    ]
    assert results == [{"name": "Ada"}, {"order": "pizza", "total": 12.5}]


async def test_pipecat_a_call_the_caller_hung_up_replays_clean(
    tracker: sessiontrack.Tracker,
) -> None:
    fixture = await record_pizza_call(
        tracker, PizzaFlow(), PIZZA_SCRIPT[:3], ["I am Ada"], hang_up="hang-up"
    )
    assert fixture["expected"]["end"] == {"status": "completed", "reason": "cancelled: hang-up"}
    flow = PizzaFlow()
    replayer = PipecatReplay(flow.build, start=flow.start)
    report = await assert_replays(fixture, replayer)
    assert report.actual[-1][-1].line() == "end completed (cancelled: hang-up)"
    assert replayer.errors == []


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


async def test_the_documented_pipecat_example(
    tracker: sessiontrack.Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = documented("pipecat")

    class Documented(PizzaFlow):
        def build(self, llm: Any) -> FlowManager:
            manager: FlowManager = names["build"](llm)
            return manager

        async def start(self, flow: FlowManager) -> None:
            await flow.initialize(names["order"]())

    script = [{"text": ["What would ", "you like?"]}, {"call": ("take_order", {"item": "pizza"})}]
    script.append({"text": ["Thanks, ", "goodbye!"]})
    fixture = await record_pizza_call(tracker, Documented(), script, ["A pizza, please"])
    assert fixture["expected"]["end"] == {"status": "completed", "reason": "flow_end"}
    monkeypatch.chdir(tmp_path)
    await run_documented_test(names, fixture, "tests/fixtures/call.json")
