"""The python-telegram-bot adapter against the real package, offline.

The bot is a real ``Application`` with a real ``ConversationHandler``; Telegram is a
``FakeBotAPI`` (tests/adapter_helpers/telegram.py: a ``telegram.request.BaseRequest``
answering canned Bot API JSON) and updates arrive through
``Application.process_update(Update.de_json(...))``. Every test runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa
from adapter_helpers.telegram import FakeBotAPI
from sqlalchemy.ext.asyncio import create_async_engine
from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)

import sessiontrack
from sessiontrack.adapters import telegram as telegram_adapter
from sessiontrack.adapters.telegram import TelegramAdapter, TrackingRateLimiter
from sessiontrack.web import create_app
from tests.adapter_helpers.docs import printed_output, run_documented_example

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "adapters" / "telegram.md"
BOT = "pizza-bot"
TOKEN = "123456:offline"
NAME, SIZE = "name", "size"
END = ConversationHandler.END


class Chat:
    """A Telegram user writing to the bot in a private chat."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any], chat_id: int = 7) -> None:
        self.app = app
        self.chat_id = chat_id
        self.update_id = 0

    async def say(self, text: str, message_id: int | None = None) -> None:
        await self.app.process_update(self.update(text, message_id))

    def update(self, text: str, message_id: int | None = None) -> Update:
        """The chat's next update: a message saying ``text``."""
        self.update_id += 1
        message: dict[str, Any] = {
            "message_id": message_id or self.update_id,
            "date": 0,
            "chat": {"id": self.chat_id, "type": "private"},
            "from": {"id": self.chat_id, "is_bot": False, "first_name": "Ann", "last_name": "Lee"},
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text)}]
        data = {"update_id": self.update_id, "message": message}
        return Update.de_json(data, self.app.bot)


def pizza_conversation(
    ran: list[str], *, persistent: bool = False, timeout: float | None = None
) -> ConversationHandler[Any]:
    """Name, then size, then done; ``boom`` as a name raises; ``/crash`` raises at once."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        ran.append("start")
        assert update.message is not None
        await update.message.reply_text("Your name?")
        return NAME

    async def name(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        ran.append("name")
        assert update.message is not None
        if update.message.text == "boom":
            raise RuntimeError("the oven is on fire")
        await update.message.reply_text("Which size?")
        return SIZE

    async def size(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        ran.append("size")
        assert update.message is not None
        await update.message.reply_text(f"One {update.message.text} pizza, coming.")
        return END

    async def crash(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        raise ValueError("no dough")

    async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        ran.append("cancel")
        return END

    text = filters.TEXT & ~filters.COMMAND
    return ConversationHandler(
        entry_points=[CommandHandler("start", start), CommandHandler("crash", crash)],
        states={NAME: [MessageHandler(text, name)], SIZE: [MessageHandler(text, size)]},
        fallbacks=[CommandHandler("cancel", cancel)],
        name="order",
        persistent=persistent,
        conversation_timeout=timeout,
    )


class Bot:
    def __init__(self, app: Any, api: FakeBotAPI, adapter: TelegramAdapter, ran: list[str]):
        self.app, self.api, self.adapter, self.ran = app, api, adapter, ran
        self.chat = Chat(app)


@asynccontextmanager
async def pizza_bot(
    tracker: sessiontrack.Tracker | sessiontrack.SyncTracker,
    persistence: Path | None = None,
    first_id: int = 1001,
    conversation_timeout: float | None = None,
    chatbot_id: str = BOT,
) -> AsyncIterator[Bot]:
    api = FakeBotAPI(first_id)
    builder = ApplicationBuilder().token(TOKEN).request(api).updater(None)
    builder = builder.rate_limiter(TrackingRateLimiter())
    if persistence is not None:
        builder = builder.persistence(PicklePersistence(persistence))
    app = builder.build()
    ran: list[str] = []
    adapter = TelegramAdapter(tracker, app, chatbot_id, name="Pizza bot")
    persistent = persistence is not None
    conversation = pizza_conversation(ran, persistent=persistent, timeout=conversation_timeout)
    app.add_handler(adapter.track(conversation))
    async with app:
        yield Bot(app, api, adapter, ran)
    adapter.close()


async def detail(tracker: sessiontrack.Tracker, sid: str) -> sessiontrack.models.SessionDetail:
    await tracker.flush()
    return await tracker.sessions.get(sid)


async def sessions_of(tracker: sessiontrack.Tracker) -> list[str]:
    await tracker.flush()
    page = await tracker.sessions.list(chatbot_id=BOT, sort_order="ASC", limit=100)
    return [s.id for s in page.data]


def texts(d: sessiontrack.models.SessionDetail) -> list[tuple[str, str | None, str | None]]:
    return [(m.direction, m.text, m.channel_message_id) for m in d.messages]


async def test_a_completed_conversation(tracker: sessiontrack.Tracker) -> None:
    async with pizza_bot(tracker) as bot:
        await bot.chat.say("/start")
        await bot.chat.say("Ann")
        await bot.chat.say("large")
    [sid] = await sessions_of(tracker)
    d = await detail(tracker, sid)
    assert (d.status, d.completion_reason) == ("completed", "flow_end")
    assert d.conversation_id == "7:7"
    assert d.customer_name == "Ann Lee"
    assert d.chatbot_name == "Pizza bot"
    assert d.node_history == ["entry", NAME, SIZE]
    assert all(e.duration_ms is not None and e.error is None for e in d.node_executions)
    assert texts(d) == [
        ("inbound", "/start", "1"),
        ("outbound", "Your name?", "1001"),
        ("inbound", "Ann", "2"),
        ("outbound", "Which size?", "1002"),
        ("inbound", "large", "3"),
        ("outbound", "One large pizza, coming.", "1003"),
    ]
    assert [m.node_id for m in d.messages if m.direction == "outbound"] == ["entry", NAME, SIZE]
    assert [m.node_id for m in d.messages if m.direction == "inbound"] == ["entry", NAME, SIZE]
    assert bot.ran == ["start", "name", "size"]


async def test_a_message_sent_outside_a_callback_joins_the_chats_session(
    tracker: sessiontrack.Tracker,
) -> None:
    async with pizza_bot(tracker) as bot:
        await bot.chat.say("/start")
        await bot.app.bot.send_message(chat_id=7, text="Still there?")  # as a job would
        await bot.app.bot.send_message(chat_id=99, text="To a chat without a session")
    [sid] = await sessions_of(tracker)
    d = await detail(tracker, sid)
    assert [(m.text, m.node_id) for m in d.messages if m.direction == "outbound"] == [
        ("Your name?", "entry"),
        ("Still there?", None),
    ]


async def test_edges_learnt_join_the_same_flow_version(
    tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    async with pizza_bot(tracker) as bot:
        await tracker.flush()
        [registered] = await tracker.sessions.chatbots()
        for text in ("/start", "Ann", "large"):
            await bot.chat.say(text)
    [sid] = await sessions_of(tracker)
    d = await detail(tracker, sid)
    assert d.flow_version == registered["current_version"]
    edges = {(e["source"], e["target"]) for e in d.flow_data["edges"]}
    assert edges == {("entry", NAME), (NAME, SIZE), (SIZE, "end")}
    assert {"entry", NAME, SIZE, "cancel", "end"} <= {n["id"] for n in d.flow_data["nodes"]}
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            flows = sa.table(f"{prefix}flows", sa.column("chatbot_id"))
            count = sa.select(sa.func.count()).select_from(flows).where(flows.c.chatbot_id == BOT)
            assert await conn.scalar(count) == 1  # no new version
    finally:
        await engine.dispose()


class Statuses:
    """The active statuses reported, with their nodes."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    @sessiontrack.hookimpl
    def sessiontrack_status_changed(self, status: str, node_id: str | None) -> None:
        self.seen.append((status, node_id))


async def test_waiting_for_the_customer_then_resumed(tracker: sessiontrack.Tracker) -> None:
    statuses = Statuses()
    tracker.plugin_manager.register(statuses)
    async with pizza_bot(tracker) as bot:
        await bot.chat.say("/start")
        await bot.chat.say("Ann")
        [sid] = await sessions_of(tracker)
        d = await detail(tracker, sid)
        assert (d.status, d.current_node_id) == ("waiting_input", SIZE)
        await bot.chat.say("small")
    assert await sessions_of(tracker) == [sid]
    d = await detail(tracker, sid)
    assert d.status == "completed"
    assert d.node_history == ["entry", NAME, SIZE]
    # a callback's run is its node execution: no running between the waits
    assert statuses.seen == [("waiting_input", NAME), ("waiting_input", SIZE)]


async def test_chatter_outside_the_conversation_asks_the_store_nothing(
    tracker: sessiontrack.Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    active_session = tracker.active_session

    async def counted(chatbot_id: str, conversation_id: str | int) -> str | None:
        asked.append(str(conversation_id))
        return await active_session(chatbot_id, conversation_id)

    monkeypatch.setattr(tracker, "active_session", counted)
    async with pizza_bot(tracker) as bot:
        for n in range(3):
            await Chat(bot.app, chat_id=100 + n).say("hello")  # no entry point matches
        assert asked == [] and bot.adapter._absent == {}
        await bot.chat.say("/start")  # a new conversation: asked once
        await bot.chat.say("Ann")
        assert asked == ["7:7"]
        assert bot.ran == ["start", "name"]


async def test_conversations_without_a_session_are_remembered_up_to_a_bound(
    tracker: sessiontrack.Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_adapter, "_ABSENT_KEPT", 2)
    async with pizza_bot(tracker) as bot:
        for n in range(3):
            chat = Chat(bot.app, chat_id=100 + n)
            for text in ("/start", "Ann", "small"):
                await chat.say(text)
        assert list(bot.adapter._absent) == ["101:101", "102:102"]  # the oldest dropped
        assert bot.ran.count("size") == 3


class StopSeen:
    """Set once a stop request went past every other plugin (the adapter included)."""

    def __init__(self) -> None:
        self.seen = anyio.Event()

    @sessiontrack.hookimpl(trylast=True)
    def sessiontrack_stop_requested(self, session_id: str) -> None:
        self.seen.set()


async def test_stopped_from_the_rest_api_is_not_continued(tracker: sessiontrack.Tracker) -> None:
    web = create_app(tracker, authenticate=lambda request: sessiontrack.Principal(id="agent"))
    stops = StopSeen()
    tracker.plugin_manager.register(stops)
    async with (
        pizza_bot(tracker) as bot,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://t") as api,
    ):
        await bot.chat.say("/start")
        [sid] = await sessions_of(tracker)
        answer = await api.post(f"/{sid}/stop")
        assert answer.status_code == 200, answer.text
        with anyio.fail_after(5):
            await stops.seen.wait()
        assert bot.adapter.stopped(sid)
        await anyio.lowlevel.checkpoint()  # the adapter's task ending the conversation runs
        conversation = bot.adapter.conversation
        assert conversation is not None
        assert conversation.check_update(Chat(bot.app).update("Ann")) is None  # ended in PTB
        await bot.chat.say("Ann")  # would be the name: the conversation has ended
        assert bot.ran == ["start"]
        assert [m["text"] for m in bot.api.sent] == ["Your name?"]
        await bot.chat.say("/start")  # starts over, as a new session
        assert bot.ran == ["start", "start"]
    first, second = await sessions_of(tracker)
    assert first == sid
    d = await detail(tracker, sid)
    assert (d.status, d.node_history) == ("stopped", ["entry"])
    assert [m.text for m in d.messages] == ["/start", "Your name?"]
    again = await detail(tracker, second)
    assert (again.status, again.current_node_id) == ("waiting_input", NAME)


async def test_a_callback_that_raises(tracker: sessiontrack.Tracker) -> None:
    async with pizza_bot(tracker) as bot:
        await bot.chat.say("/start")
        await bot.chat.say("boom")  # PTB keeps the conversation in its state
        [sid] = await sessions_of(tracker)
        d = await detail(tracker, sid)
        assert (d.status, d.current_node_id) == ("waiting_input", NAME)
        failed = d.node_executions[-1]
        assert (failed.node_id, failed.error) == (NAME, "RuntimeError: the oven is on fire")
        await bot.chat.say("Ann")
        await bot.chat.say("medium")
        assert (await detail(tracker, sid)).status == "completed"

        bot.chat.chat_id = 8
        await bot.chat.say("/crash")  # the entry point raises: no conversation begins
    crashed = (await sessions_of(tracker))[-1]
    d = await detail(tracker, crashed)
    assert (d.status, d.completion_reason) == ("completed", "error")
    assert [(e.node_id, e.error) for e in d.node_executions] == [("entry", "ValueError: no dough")]


async def first_run(database_url: str, options: dict[str, Any], pickle: Path) -> int:
    """The persistent bot's first run: ``/start`` and a name, then both the bot and its
    tracker shut down; the last update id, for the next run to go on from."""
    async with (
        sessiontrack.Tracker(database_url, **options) as tracker,
        pizza_bot(tracker, pickle) as bot,
    ):
        await bot.chat.say("/start")
        await bot.chat.say("Ann")
        return bot.chat.update_id


async def test_a_restart_mid_conversation_continues_the_session(
    database_url: str, prefix: str, tmp_path: Path
) -> None:
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    pickle = tmp_path / "bot.pickle"
    last_update = await first_run(database_url, options, pickle)
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        async with pizza_bot(tracker, pickle, first_id=2001) as bot:
            bot.chat.update_id = last_update
            await bot.chat.say("large")
            assert bot.ran == ["size"]  # PTB resumed in the persisted state
        [sid] = await sessions_of(tracker)
        d = await detail(tracker, sid)
        assert (d.status, d.node_history) == ("completed", ["entry", NAME, SIZE])
        assert [m.text for m in d.messages] == [
            "/start",
            "Your name?",
            "Ann",
            "Which size?",
            "large",
            "One large pizza, coming.",
        ]
        assert [m.channel_message_id for m in d.messages if m.direction == "outbound"] == [
            "1001",
            "1002",
            "2001",
        ]
        edges = {(e["source"], e["target"]) for e in d.flow_data["edges"]}
        assert edges == {("entry", NAME), (NAME, SIZE), (SIZE, "end")}


async def test_a_stop_while_the_bot_is_down_is_honoured(
    database_url: str, prefix: str, tmp_path: Path
) -> None:
    """Stopped from the API between two runs of the bot: no process held the session, so
    no one was told; the restarted bot finds it stopped and ends PTB's conversation."""
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    pickle = tmp_path / "bot.pickle"
    last_update = await first_run(database_url, options, pickle)
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        [sid] = await sessions_of(tracker)
        await tracker.stop(sid)
    async with sessiontrack.Tracker(database_url, **options) as tracker:
        async with pizza_bot(tracker, pickle, first_id=2001) as bot:
            bot.chat.update_id = last_update
            await bot.chat.say("large")  # PTB's persisted state would take it to the end
            assert bot.ran == []
            await bot.chat.say("/start")
            assert bot.ran == ["start"]
        first, second = await sessions_of(tracker)
        assert first == sid
        d = await detail(tracker, sid)
        assert (d.status, d.node_history) == ("stopped", ["entry", NAME])
        assert "large" not in [m.text for m in d.messages]
        assert (await detail(tracker, second)).current_node_id == NAME


class ExpirySeen:
    """Set when a committed batch holds an ``expired`` completion (the sweeper's)."""

    def __init__(self) -> None:
        self.seen = anyio.Event()

    @sessiontrack.hookimpl
    def sessiontrack_events_committed(self, events: list[Any]) -> None:
        if any(e.data.get("status") == "expired" for e in events):
            self.seen.set()


async def test_a_session_expired_by_the_tracker_is_not_reported_to(
    database_url: str, prefix: str
) -> None:
    """The tracker's idle timeout ended the session while PTB kept the conversation: the
    customer's answer continues the conversation in a new session."""
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    idle = {"idle_timeout": timedelta(seconds=1), "sweep_interval": 0.1}
    async with sessiontrack.Tracker(database_url, **options, **idle) as tracker:
        expired = ExpirySeen()
        tracker.plugin_manager.register(expired)
        async with pizza_bot(tracker) as bot:
            await bot.chat.say("/start")
            with anyio.fail_after(10):
                await expired.seen.wait()
            await bot.chat.say("Ann")
            assert bot.ran == ["start", "name"]
        first, second = await sessions_of(tracker)
        assert (await detail(tracker, first)).status == "expired"
        d = await detail(tracker, second)
        assert (d.status, d.node_history, d.current_node_id) == ("waiting_input", [NAME], SIZE)
        assert [m.text for m in d.messages] == ["Ann", "Which size?"]


async def test_stop_requests_of_other_chatbots_are_ignored(tracker: sessiontrack.Tracker) -> None:
    stops = StopSeen()
    tracker.plugin_manager.register(stops)
    # the same chat (the same conversation key, 7:7) talks to a second bot
    async with pizza_bot(tracker) as bot, pizza_bot(tracker, chatbot_id="other-bot") as other_bot:
        await bot.chat.say("/start")
        await other_bot.chat.say("/start")
        [mine] = await sessions_of(tracker)
        other = other_bot.adapter.cached_session("7:7")
        assert other is not None and other != mine
        assert bot.adapter.cached_session("7:7") == mine
        await tracker.stop(other)
        with anyio.fail_after(5):
            await stops.seen.wait()  # the adapters were told, before this plugin
        await anyio.lowlevel.checkpoint()
        assert other_bot.adapter.stopped(other)
        assert not bot.adapter.stopped(other) and not bot.adapter.stopped(mine)
        assert bot.adapter.cached_session("7:7") == mine
        await bot.chat.say("Ann")
        assert bot.ran == ["start", "name"]
    d = await detail(tracker, mine)
    assert (d.status, d.current_node_id) == ("waiting_input", SIZE)


class CompletionSeen:
    """Set when a session's completion is reported (by the adapter or anyone)."""

    def __init__(self) -> None:
        self.seen = anyio.Event()
        self.status: str | None = None

    @sessiontrack.hookimpl
    def sessiontrack_session_completed(self, session_id: str, status: str) -> None:
        self.status = status
        self.seen.set()


async def test_a_conversation_timeout_expires_the_session(tracker: sessiontrack.Tracker) -> None:

    completed = CompletionSeen()
    tracker.plugin_manager.register(completed)
    async with pizza_bot(tracker, conversation_timeout=0.2) as bot:
        await bot.app.start()  # runs the JobQueue that times conversations out
        try:
            await bot.chat.say("/start")
            with anyio.fail_after(10):
                await completed.seen.wait()
        finally:
            await bot.app.stop()
        await bot.chat.say("Ann")  # PTB has ended the conversation
        assert bot.ran == ["start"]
    [sid] = await sessions_of(tracker)
    d = await detail(tracker, sid)
    assert (d.status, d.completion_reason) == ("expired", "conversation_timeout")


class ThreadStopSeen:
    """:class:`StopSeen` for a SyncTracker, whose hooks run on its own thread."""

    def __init__(self) -> None:
        self.seen = threading.Event()

    @sessiontrack.hookimpl(trylast=True)
    def sessiontrack_stop_requested(self, session_id: str) -> None:
        self.seen.set()


async def test_with_a_sync_tracker(database_url: str, prefix: str) -> None:
    """The tracker on its own thread (as with ``run_polling()``): the lookup goes through
    a worker thread, the stop comes from the tracker's thread to the bot's loop."""
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "poll_interval": 0.05}
    with sessiontrack.SyncTracker(database_url, **options) as sync:
        stops = ThreadStopSeen()
        sync.plugin_manager.register(stops)
        async with pizza_bot(sync) as bot:
            threads: list[int] = []  # where the adapter's own state is edited
            ended = bot.adapter._ended

            def recorded(conv: str, sid: str) -> None:
                threads.append(threading.get_ident())
                ended(conv, sid)

            bot.adapter._ended = recorded  # type: ignore[method-assign]
            await bot.chat.say("/start")
            await bot.chat.say("Ann")
            await anyio.to_thread.run_sync(sync.flush)
            page = await anyio.to_thread.run_sync(lambda: sync.sessions.list(chatbot_id=BOT))
            [sid] = [s.id for s in page.data]
            await anyio.to_thread.run_sync(sync.stop, sid)
            assert await anyio.to_thread.run_sync(stops.seen.wait, 5)
            conversation = bot.adapter.conversation
            assert conversation is not None
            for _ in range(500):  # the end of the conversation, handed to the bot's loop
                if conversation.check_update(Chat(bot.app).update("large")) is None:
                    break
                await anyio.sleep(0.01)
            await bot.chat.say("large")
            assert bot.ran == ["start", "name"]
            assert threads == [threading.get_ident()]  # the stop, on the bot's loop
        await anyio.to_thread.run_sync(sync.flush)
        d = await anyio.to_thread.run_sync(sync.sessions.get, sid)
    assert (d.status, d.node_history) == ("stopped", ["entry", NAME])
    assert [m.text for m in d.messages] == ["/start", "Your name?", "Ann", "Which size?"]


async def test_a_flow_tracked_before_the_tracker_starts(database_url: str, prefix: str) -> None:
    """As with ``post_init``: ``track()`` before the tracker runs; the flow is registered
    at the first update."""
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True)
    api = FakeBotAPI()
    app = ApplicationBuilder().token(TOKEN).request(api).rate_limiter(TrackingRateLimiter())
    application = app.updater(None).build()
    adapter = TelegramAdapter(tracker, application, BOT)
    application.add_handler(adapter.track(pizza_conversation([])))
    await tracker.start()
    try:
        async with application:
            await Chat(application).say("/start")
        [sid] = await sessions_of(tracker)
        d = await detail(tracker, sid)
        assert {"entry", NAME, SIZE, "end"} <= {n["id"] for n in d.flow_data["nodes"]}
        assert d.current_node_id == NAME
    finally:
        await tracker.aclose()


async def test_the_docs_example_runs_as_printed(tmp_path: Path) -> None:
    """The page's example, run as ``python3 bot.py`` in an empty directory, prints what
    the page says it prints."""
    done = await run_documented_example(DOC, "sqlite", tmp_path)
    assert done.stdout == printed_output(DOC)
