"""python-telegram-bot adapter: each conversation of a ``ConversationHandler`` is a session.

Needs the ``telegram`` extra: ``pip install 'sessiontrack[telegram]'``
(python-telegram-bot 22). The adapter uses only PTB's public extension points:

- the handlers' ``callback`` attribute: every entry point, state and fallback callback is
  wrapped, so each run is a node execution (duration, error) and the state it returns is
  the edge taken (learnt at run time: a ``ConversationHandler`` declares no edges);
- a :class:`~telegram.ext.TypeHandler` in group ``-1``: every update of a conversation
  that has a session is recorded as an inbound message, before the conversation sees it;
- :class:`TrackingRateLimiter`, a :class:`~telegram.ext.BaseRateLimiter` given to the
  ``ApplicationBuilder``: it sees every Bot API call, so each message the bot sends is
  recorded with the message id Telegram gave it;
- a handler in the conversation's ``ConversationHandler.TIMEOUT`` state: a
  ``conversation_timeout`` completes the session as ``expired``;
- :meth:`ConversationHandler.handle_update <telegram.ext.ConversationHandler.handle_update>`
  with a handler that returns ``END``: a stop request from the API ends that chat's
  conversation, so its next message starts over at the entry points.

See docs/adapters/telegram.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from enum import Enum
from functools import partial
from typing import Any, cast

try:
    from telegram import Message, Update
    from telegram.ext import (
        Application,
        ApplicationBuilder,
        ApplicationHandlerStop,
        BaseHandler,
        BaseRateLimiter,
        ConversationHandler,
        TypeHandler,
    )
    from telegram.request import BaseRequest, RequestData
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sessiontrack.adapters.telegram needs python-telegram-bot: "
        "pip install 'sessiontrack[telegram]'"
    ) from exc

from ..testing import ReplayInbound, ReplayRun
from ..tracker import Tracker
from .base import BlockingTracker, EngineAdapter, flow_graph

__all__ = [
    "END_NODE",
    "ENTRY_NODE",
    "OfflineBotAPI",
    "TelegramAdapter",
    "TelegramReplay",
    "TrackingRateLimiter",
]

log = logging.getLogger(__name__)

ENTRY_NODE = "entry"
"""The flow node of the conversation's entry points."""
END_NODE = "end"
"""The flow node that ``ConversationHandler.END`` leads to."""

Callback = Callable[[Any, Any], Coroutine[Any, Any, Any]]
ConversationKey = tuple[int | str, ...]
_END = ConversationHandler.END
_ABSENT_KEPT = 10_000  # conversations remembered to have no active session (oldest dropped)
# message kinds recorded as the inbound message's type, in PTB's attribute names
_KINDS = (
    "photo",
    "video",
    "voice",
    "audio",
    "document",
    "sticker",
    "animation",
    "video_note",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
)


# The callback running in this task, whose messages the rate limiter sees: the adapter,
# the session, the node and the chat id.
_Turn = tuple["TelegramAdapter", str, str, int | None]
_turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar(
    "sessiontrack_telegram_turn", default=None
)


class TrackingRateLimiter(BaseRateLimiter[Any]):
    """Records the messages the bot sends; give it to the ``ApplicationBuilder``::

        application = (
            ApplicationBuilder().token(TOKEN).rate_limiter(TrackingRateLimiter()).build()
        )

    A message sent by a tracked callback belongs to that callback's session and node; one
    sent elsewhere (a job, a broadcast) to the session of its chat, if that chat has one
    conversation. It waits for nothing itself: pass ``limiter`` (e.g. PTB's
    ``AIORateLimiter()``) to keep real rate limiting; it is called first.
    """

    __slots__ = ("_adapters", "limiter")

    def __init__(self, limiter: BaseRateLimiter[Any] | None = None) -> None:
        self.limiter = limiter
        self._adapters: list[TelegramAdapter] = []

    def attach(self, adapter: TelegramAdapter) -> None:
        """Route messages sent outside a tracked callback to ``adapter`` too."""
        self._adapters.append(adapter)

    def detach(self, adapter: TelegramAdapter) -> None:
        """Stop routing messages to ``adapter``."""
        if adapter in self._adapters:
            self._adapters.remove(adapter)

    async def initialize(self) -> None:
        if self.limiter is not None:
            await self.limiter.initialize()

    async def shutdown(self) -> None:
        if self.limiter is not None:
            await self.limiter.shutdown()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Any,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if self.limiter is not None:
            result = await self.limiter.process_request(
                callback, args, kwargs, endpoint, data, rate_limit_args
            )
        else:
            result = await callback(*args, **kwargs)
        if endpoint.startswith(("send", "copyMessage")):
            for sent in result if isinstance(result, list) else (result,):
                if isinstance(sent, dict) and "message_id" in sent:
                    self._record(endpoint, data, sent)
        return result

    def _record(self, endpoint: str, data: dict[str, Any], sent: dict[str, Any]) -> None:
        chat = sent.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else data.get("chat_id")
        turn = _turn.get()
        if turn is not None and (turn[3] is None or turn[3] == chat_id):
            turn[0].outbound(turn[1], endpoint, data, sent, turn[2])
            return
        for adapter in self._adapters:
            sid = adapter.session_of_chat(chat_id)
            if sid is not None:
                adapter.outbound(sid, endpoint, data, sent, None)
                return


class TelegramAdapter(EngineAdapter):
    """Reports one ``ConversationHandler`` of a python-telegram-bot ``Application``.

    :param tracker: a running :class:`~sessiontrack.Tracker` on the application's event
        loop, or a :class:`~sessiontrack.SyncTracker` (e.g. with
        ``application.run_polling()``, which runs its own loop).
    :param application: the bot's application; build it with
        ``.rate_limiter(TrackingRateLimiter())`` to record outbound messages.
    :param chatbot_id: the bot this adapter reports for.
    :param name: the bot's display name (default: ``chatbot_id``).

    Then ``application.add_handler(adapter.track(conversation_handler))``. The session key
    is the conversation's key: chat id, then user id (``per_user``) and message id
    (``per_message``), joined by ``:`` (``"12345:12345"`` for a private chat).
    """

    def __init__(
        self,
        tracker: Tracker | BlockingTracker,
        application: Application[Any, Any, Any, Any, Any, Any],
        chatbot_id: str,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(tracker, chatbot_id, name=name)
        self.application = application
        self.conversation: ConversationHandler[Any] | None = None
        self._nodes: dict[object, str] = {}  # conversation state → node id
        self._states: dict[str, object] = {}  # conversation id → its last known state
        # conversations of the ConversationHandler known to have no active session: their
        # next update asks the store nothing (insertion order, at most _ABSENT_KEPT)
        self._absent: dict[str, None] = {}
        self._inbound_seen: dict[str, int] = {}  # conversation id → last recorded update id
        self._by_chat: dict[int, str] = {}  # chat id → session (chats of one conversation)
        self._pending_end: dict[str, ConversationKey] = {}  # stopped, not yet ended in PTB
        self._loop: asyncio.AbstractEventLoop | None = None  # the application's loop
        self._deferred: list[Callable[[], None]] = []  # for the loop, before it was known
        self._pending_flow: tuple[dict[str, Any], str | None] | None = None
        self._per = (True, True, False)  # the tracked handler's per_chat, per_user, per_message
        self._last: tuple[Update, ConversationKey, str] | None = None  # group -1's last update
        self._tasks: set[asyncio.Future[Any]] = set()
        self._ender: TypeHandler[Update, Any, Any] = TypeHandler(Update, _end_callback)
        limiter = getattr(application.bot, "rate_limiter", None)
        if isinstance(limiter, TrackingRateLimiter):
            limiter.attach(self)
        else:
            log.warning(
                "sessiontrack: the application of %s has no TrackingRateLimiter; the bot's "
                "messages will not be recorded",
                chatbot_id,
            )

    def close(self) -> None:
        """No more stop notifications, and no more messages from the rate limiter."""
        super().close()
        limiter = getattr(self.application.bot, "rate_limiter", None)
        if isinstance(limiter, TrackingRateLimiter):
            limiter.detach(self)

    # --- wiring -------------------------------------------------------------------------

    def track(
        self,
        conversation: ConversationHandler[Any],
        *,
        state_names: Mapping[object, str] | None = None,
        version: str | None = None,
        group: int = -1,
    ) -> ConversationHandler[Any]:
        """Wrap ``conversation``'s callbacks, register its flow and return it (add it to the
        application as usual).

        :param state_names: node ids for the conversation's states (default: a string
            state as it is, an ``Enum`` member's name, else ``str(state)``).
        :param version: the flow version (default: a hash of the flow's content).
        :param group: the handler group of the inbound recorder; it must run before the
            conversation's group.
        """
        if self.conversation is not None:
            raise ValueError("a TelegramAdapter tracks one ConversationHandler")
        self.conversation = conversation
        self._per = (conversation.per_chat, conversation.per_user, conversation.per_message)
        names = dict(state_names or {})
        aside: dict[object, str] = {
            ConversationHandler.TIMEOUT: "timeout",
            ConversationHandler.WAITING: "waiting",
        }
        nodes: list[tuple[str, str | None, str | None]] = [(ENTRY_NODE, "Start", "input")]
        for state in conversation.states:
            node = aside.get(state) if _is_special(state) else names.get(state) or _name(state)
            if node is None:
                continue
            self._nodes[state] = node
            nodes.append((node, None, None))
        for handler in conversation.entry_points:
            self._wrap(handler, ENTRY_NODE, "entry")
        for state, handlers in conversation.states.items():
            kind = "aside" if _is_special(state) else "state"
            for handler in handlers:
                self._wrap(handler, self._nodes.get(state, _name(state)), kind)
        taken = {n[0] for n in nodes} | {END_NODE}
        for handler in conversation.fallbacks:
            node = _unique(_callback_name(handler, "fallback"), taken)
            nodes.append((node, None, None))
            self._wrap(handler, node, "fallback")
        nodes.append((END_NODE, "End", "output"))
        timeout_handlers = conversation.states.setdefault(ConversationHandler.TIMEOUT, [])
        timeout_handlers.append(TypeHandler(Update, self._on_timeout, block=True))
        recorder = TypeHandler(Update, self._on_update, block=True)
        self.application.add_handler(recorder, group=group)
        flow = flow_graph(nodes, [], entry=ENTRY_NODE)
        if self.tracker.running:
            self.register_flow(flow, version=version)
        else:  # e.g. built before run_polling() starts the tracker in post_init
            self._pending_flow = (flow, version)
        return conversation

    def _wrap(self, handler: BaseHandler[Any, Any, Any], node: str, kind: str) -> None:
        if isinstance(handler, ConversationHandler):
            log.warning("sessiontrack: nested ConversationHandler %s is not tracked", handler)
            return
        callback: Callback = handler.callback
        if getattr(callback, "__sessiontrack_node__", None) is not None:
            return  # one handler object in several lists: reported as its first node

        async def tracked(update: Any, context: Any) -> Any:
            if not isinstance(update, Update):
                return await callback(update, context)
            return await self._run(callback, update, context, node, kind)

        tracked.__sessiontrack_node__ = node  # type: ignore[attr-defined]
        tracked.__wrapped__ = callback  # type: ignore[attr-defined]
        tracked.__name__ = getattr(callback, "__name__", "callback")
        handler.callback = tracked

    # --- a turn -------------------------------------------------------------------------

    async def _run(
        self, callback: Callback, update: Update, context: Any, node: str, kind: str
    ) -> Any:
        last = self._last
        if last is not None and last[0] is update:
            key, conv = last[1], last[2]
        else:  # a non-blocking callback, run after the next update came in
            found = self.key(update)
            if found is None:
                return await callback(update, context)
            key, conv = found, conversation_id(found)
        sid = self._sessions.get(conv)
        if sid is None:
            sid = await self._lookup(conv)
        new = sid is None
        if sid is None:
            if kind == "aside":  # a TIMEOUT handler of a conversation without a session
                return await callback(update, context)
            sid = self.start_session(conv, **_started(update))
            self._after_start(conv, sid, key)
        if self._inbound_seen.get(conv) != update.update_id:
            self._inbound(sid, conv, update, node)
        chat = update.effective_chat
        token = _turn.set((self, sid, node, chat.id if chat is not None else None))
        start = time.perf_counter()
        handler_stop: ApplicationHandlerStop | None = None
        try:
            state = await callback(update, context)
        except ApplicationHandlerStop as stop:
            handler_stop, state = stop, stop.state
        except Exception as exc:
            self.node_done(sid, node, start, error=exc)
            self._failed(sid, conv, node, kind, new)
            raise
        finally:
            _turn.reset(token)
        state = self._after_turn(sid, conv, node, kind, state, start)
        if handler_stop is not None:
            raise ApplicationHandlerStop(state) from None
        return state

    def _after_turn(
        self, sid: str, conv: str, node: str, kind: str, state: object, start: float
    ) -> object:
        self.hook.sessiontrack_node_executed(
            session_id=sid, node_id=node, duration_ms=(time.perf_counter() - start) * 1000
        )
        if kind == "aside":  # TIMEOUT and WAITING handlers: PTB ignores what they return
            return state
        if sid in self._stopped:
            return _END  # stopped while the callback ran: PTB must not continue it
        if state is None and kind != "entry":  # PTB keeps the conversation where it was
            stay = self._states.get(conv)
            here = node if kind == "state" else None if stay is None else self._nodes.get(stay)
            self.hook.sessiontrack_status_changed(
                session_id=sid, status="waiting_input", node_id=here
            )
            return None
        if state is None or state == _END:  # an entry point's None: no conversation begins
            self._edge(node, END_NODE)
            self.complete(sid, "completed", reason="flow_end")
            return _END
        target = self._nodes.get(state) or _name(state)
        self._edge(node, target)
        previous = self._states.get(conv)
        self._states[conv] = state
        if target != node or previous != state:  # else it already waits there: no report
            self.hook.sessiontrack_status_changed(
                session_id=sid, status="waiting_input", node_id=target
            )
        return state

    def _edge(self, source: str, target: str) -> None:
        if (source, target) not in self._edges:  # the common case, without the lock
            self.observe_edge(source, target)

    def _failed(self, sid: str, conv: str, node: str, kind: str, new: bool) -> None:
        """A callback raised: PTB keeps the conversation's state, so the session waits
        there, except when the conversation had not begun (its entry point raised)."""
        if kind == "entry" and new:
            self.complete(sid, "completed", reason="error")
            return
        if kind == "aside":
            return
        state = self._states.get(conv)
        current = node if kind == "state" else self._nodes.get(state) if state is not None else None
        self.status(sid, "waiting_input", node_id=current)

    async def _on_update(self, update: Update, context: Any) -> None:
        """Group -1: records the update as an inbound message of its session."""
        if self._loop is None:
            self._started_on_loop()
        key = self.key(update)
        if key is None:
            self._last = None
            return
        conv = conversation_id(key)
        self._last = (update, key, conv)
        if self._pending_end and conv in self._pending_end:
            await self._end_conversation(conv, context)
        sid = self._sessions.get(conv)
        if sid is None and conv not in self._absent and self._held(update):
            # PTB holds this conversation in a state (restored by its persistence) that
            # this process has no session for: the only update that asks the store
            sid = await self._lookup(conv)
            if sid is None:
                await self._end_if_stopped(key, conv, context)
        if sid is not None:
            state = self._states.get(conv)  # where it waits for this message, if known
            self._inbound(sid, conv, update, None if state is None else self._nodes.get(state))

    def _held(self, update: Update) -> bool:
        """Whether the ``ConversationHandler`` holds the update's conversation in a state
        and handles the update there (not chatter outside it, nor an entry point: its
        callback finds the session)."""
        conversation = self.conversation
        check = conversation.check_update(update) if conversation is not None else None
        return isinstance(check, tuple) and check[0] is not None

    async def _end_if_stopped(self, key: ConversationKey, conv: str, context: Any) -> None:
        """A conversation PTB holds in a state, without an active session: if its last
        session was stopped (while no process held it, e.g. during a restart), end it now,
        as :meth:`on_stop` would have."""
        if self._blocking is not None:  # a SyncTracker: its blocking queries, off the loop
            queries = cast(Any, self._blocking).sessions
            page = await asyncio.to_thread(
                queries.list, chatbot_id=self.chatbot_id, conversation_id=conv, limit=1
            )
        else:
            page = await self.tracker.sessions.list(
                chatbot_id=self.chatbot_id, conversation_id=conv, limit=1
            )
        if page.data and page.data[0].status == "stopped":
            log.info("sessiontrack: conversation %s was stopped: ended, it starts over", conv)
            self._pending_end[conv] = key
            await self._end_conversation(conv, context)

    def _started_on_loop(self) -> None:
        """The first update: note the application's loop (stops and sessions ended
        elsewhere are handled there), do what waited for it, and register a flow that
        waited for the tracker to start."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            deferred, self._deferred = self._deferred, []
        for call in deferred:
            call()
        if self._pending_flow is not None:
            flow, version = self._pending_flow
            self._pending_flow = None
            self.register_flow(flow, version=version)

    async def _on_timeout(self, update: Update, context: Any) -> None:
        key = self.key(update)
        if key is None:
            return
        conv = conversation_id(key)
        sid = await self._lookup(conv)
        if sid is not None:
            self.complete(sid, "expired", reason="conversation_timeout")
        else:
            self._states.pop(conv, None)  # PTB ends the conversation all the same

    # --- sessions -----------------------------------------------------------------------

    def key(self, update: Update) -> ConversationKey | None:
        """The tracked conversation's key for ``update`` (as PTB builds it), or ``None``
        when the update has none (a channel post, an inline query in a per-chat
        conversation)."""
        per_chat, per_user, per_message = self._per
        if update.channel_post or update.edited_channel_post:
            return None
        chat, user = update.effective_chat, update.effective_user
        if (per_chat and chat is None) or (per_user and user is None):
            return None
        if not per_message:
            if per_chat and per_user:
                return (chat.id, user.id)  # type: ignore[union-attr]
            return (chat.id,) if per_chat else (user.id,)  # type: ignore[union-attr]
        query = update.callback_query
        if query is None or not (query.inline_message_id or query.message):
            return None
        key: list[int | str] = []
        if per_chat:
            key.append(chat.id)  # type: ignore[union-attr]
        if per_user:
            key.append(user.id)  # type: ignore[union-attr]
        if query.inline_message_id:
            key.append(query.inline_message_id)
        else:
            key.append(query.message.message_id)  # type: ignore[union-attr]
        return tuple(key)

    async def _lookup(self, conv: str) -> str | None:
        """The conversation's active session: cached, known to be absent, or asked of the
        tracker once per conversation and process."""
        sid = self.cached_session(conv)
        if sid is not None or conv in self._absent:
            return sid
        if self._blocking is not None:
            sid = await asyncio.to_thread(self._blocking.active_session, self.chatbot_id, conv)
        else:
            sid = await self.tracker.active_session(self.chatbot_id, conv)
        if sid is None:
            self._mark_absent(conv)
        else:
            self._remember(conv, sid)
            chat_id, *rest = _parse_key(conv)
            self._map_chat(chat_id, rest, sid)
        return sid

    def _mark_absent(self, conv: str) -> None:
        absent = self._absent
        absent.pop(conv, None)
        absent[conv] = None
        if len(absent) > _ABSENT_KEPT:
            del absent[next(iter(absent))]

    def _after_start(self, conv: str, sid: str, key: ConversationKey) -> None:
        self._absent.pop(conv, None)
        conversation = self.conversation
        if conversation is not None and conversation.per_chat:
            self._map_chat(key[0], list(key[1:]), sid)

    def _map_chat(self, chat_id: object, rest: Sequence[object], sid: str) -> None:
        # a chat maps to a session only when it holds one conversation: not a group chat
        # with one conversation per user
        if isinstance(chat_id, int) and (not rest or rest[0] == chat_id):
            self._by_chat[chat_id] = sid

    def session_of_chat(self, chat_id: object) -> str | None:
        """The active session of the chat's conversation, if the chat has just one."""
        if not isinstance(chat_id, int):
            return None
        sid = self._by_chat.get(chat_id)
        return sid if sid is not None and sid in self._conversations else None

    def complete(
        self, session_id: str, status: str = "completed", reason: str | None = None
    ) -> None:
        conv = self._conversations.get(session_id)
        super().complete(session_id, status, reason)
        if conv is not None:
            self._ended(conv, session_id)

    def _ended(self, conv: str, sid: str) -> None:
        """The conversation has no active session any more: keep only that fact (on the
        application's loop)."""
        self._mark_absent(conv)
        self._states.pop(conv, None)
        self._inbound_seen.pop(conv, None)
        chat = _parse_key(conv)[0]
        if isinstance(chat, int) and self._by_chat.get(chat) == sid:
            del self._by_chat[chat]

    # --- messages -----------------------------------------------------------------------

    def _inbound(self, sid: str, conv: str, update: Update, node: str | None) -> None:
        self._inbound_seen[conv] = update.update_id
        query = update.callback_query
        if query is not None:
            self.hook.sessiontrack_message(
                session_id=sid,
                direction="inbound",
                type="callback_query",
                text=query.data,
                node_id=node,
                message_id=f"callback:{query.id}",
            )
            return
        message = update.message
        if message is None:
            return  # edits, reactions, member updates: not messages of the conversation
        kind = "text" if message.text is not None else _kind(message)
        self.hook.sessiontrack_message(
            session_id=sid,
            direction="inbound",
            type=kind,
            text=message.text if message.text is not None else message.caption,
            payload=_payload(message),
            node_id=node,
            message_id=str(message.message_id),
        )

    def outbound(
        self,
        session_id: str,
        endpoint: str,
        data: Mapping[str, Any],
        sent: Mapping[str, Any],
        node_id: str | None,
    ) -> None:
        """Report a message the bot sent (``sent``: the Bot API's answer) to the session."""
        text = sent.get("text", sent.get("caption", data.get("text", data.get("caption"))))
        kind = "text" if endpoint == "sendMessage" else endpoint.removeprefix("send").lower()
        if endpoint == "copyMessage":
            kind = "copy"
        self.hook.sessiontrack_message(
            session_id=session_id,
            direction="outbound",
            type=kind,
            text=text if isinstance(text, str) else None,
            node_id=node_id,
            message_id=str(sent["message_id"]),
        )

    # --- sessions ended elsewhere, stops -------------------------------------------------

    def on_session_ended(self, session_id: str, conversation_id: str) -> None:
        """The tracker expired the session: end the chat's conversation (on the
        application's loop), so that its next update starts over."""
        self._on_loop(partial(self._ended, conversation_id, session_id))

    def on_stop(self, session_id: str, conversation_id: str | None) -> None:
        """End the session's conversation in the ``ConversationHandler`` (its timeout job
        too), so that the chat's next message starts over at the entry points. Called on
        the tracker's thread (a SyncTracker's own): the work is handed to the
        application's loop."""
        if conversation_id is None or self.conversation is None:
            return
        self._on_loop(partial(self._stop_here, session_id, conversation_id))

    def _on_loop(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the application's loop: now if this is it, else through
        ``call_soon_threadsafe``; before the first update, when that loop is known."""
        with self._lock:
            loop = self._loop
            if loop is None:
                self._deferred.append(call)
                return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            call()
            return
        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # the application's loop is closed: nothing runs there now
            call()

    def _stop_here(self, session_id: str, conv: str) -> None:
        """:meth:`on_stop`'s work, on the application's loop."""
        self._ended(conv, session_id)
        self._pending_end[conv] = _parse_key(conv)
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # ended when the chat's next update arrives
        task = loop.create_task(self._end_conversation(conv, None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_conversation(self, conv: str, context: Any) -> None:
        key = self._pending_end.pop(conv, None)
        conversation = self.conversation
        if key is None or conversation is None:
            return
        app = self.application
        if context is None:
            context = app.context_types.context(app)
        # the documented check result: (current state, key, handler, the handler's check)
        await conversation.handle_update(Update(0), app, (None, key, self._ender, None), context)
        log.debug("sessiontrack: conversation %s ended after a stop request", conv)


async def _end_callback(update: object, context: object) -> int:
    return _END


def conversation_id(key: ConversationKey) -> str:
    """The session's ``conversation_id`` for a ``ConversationHandler`` key."""
    if len(key) == 2:
        return f"{key[0]}:{key[1]}"
    return ":".join(map(str, key))


def _parse_key(conv: str) -> ConversationKey:
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in conv.split(":"))


def _is_special(state: object) -> bool:
    return state in (ConversationHandler.TIMEOUT, ConversationHandler.WAITING)


def _name(state: object) -> str:
    if isinstance(state, Enum):
        return state.name
    return str(state)


def _callback_name(handler: BaseHandler[Any, Any, Any], default: str) -> str:
    name = getattr(handler.callback, "__name__", "")
    return name if name and name != "<lambda>" else default


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}#{n}"
    taken.add(out)
    return out


def _kind(message: Message) -> str:
    return next((kind for kind in _KINDS if getattr(message, kind, None)), "other")


def _payload(message: Message) -> dict[str, Any] | None:
    if message.contact is not None:
        return {"phone": message.contact.phone_number, "userId": message.contact.user_id}
    if message.location is not None:
        return {"latitude": message.location.latitude, "longitude": message.location.longitude}
    return None


def _started(update: Update) -> dict[str, Any]:
    """The session's contact and metadata from the update that began it."""
    user, chat = update.effective_user, update.effective_chat
    out: dict[str, Any] = {}
    if user is not None:
        contact: dict[str, Any] = {"name": user.full_name}
        message = update.effective_message
        shared = message.contact if message is not None else None
        if shared is not None and shared.user_id == user.id:
            contact["phone"] = shared.phone_number
        out["contact"] = contact
    telegram: dict[str, Any] = {}
    if chat is not None:
        telegram.update(chatId=chat.id, chatType=chat.type)
    if user is not None:
        telegram.update(userId=user.id, username=user.username, languageCode=user.language_code)
    out["metadata"] = {"telegram": telegram}
    return out


# --- replaying a recorded session (sessiontrack.testing) ---------------------------------

_REPLAY_BOT = {"id": 1, "is_bot": True, "first_name": "Replay", "username": "replay_bot"}


class OfflineBotAPI(BaseRequest):
    """The Bot API answered in memory, for an ``Application`` that runs without network:
    ``getMe`` gives ``bot``, each ``send*`` call the message sent (with the next message
    id, counting from ``first_id``; kept in :attr:`sent`), any other call ``true``."""

    def __init__(
        self, first_id: int = 1_000_000_001, *, bot: Mapping[str, Any] | None = None
    ) -> None:
        self.sent: list[dict[str, Any]] = []
        self.bot = dict(bot or _REPLAY_BOT)
        self._ids = itertools.count(first_id)

    @staticmethod
    def answer(
        bot: Mapping[str, Any], method: str, params: Mapping[str, Any], ids: Iterator[int]
    ) -> Any:
        """The ``result`` of Bot API call ``method``: ``bot`` for ``getMe``, for a
        ``send*`` call a private-chat message with the next of ``ids`` (and the text or
        caption sent), ``true`` for any other."""
        if method == "getMe":
            return dict(bot)
        if not method.startswith("send"):
            return True
        chat_id = str(params.get("chat_id"))
        chat = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 0, "type": "private"}
        result: dict[str, Any] = {"message_id": next(ids), "date": 0, "chat": chat}
        for field in ("text", "caption"):
            if isinstance(params.get(field), str):
                result[field] = params[field]
        return result

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data is not None else {}
        result = self.answer(self.bot, endpoint, params, self._ids)
        if endpoint.startswith("send"):
            self.sent.append(result)
        return 200, json.dumps({"ok": True, "result": result}).encode()


class TelegramReplay:
    """A :class:`~sessiontrack.testing.ReplayEngine` for a python-telegram-bot
    ``ConversationHandler``: builds an ``Application`` on :class:`OfflineBotAPI` with a
    :class:`TelegramAdapter` on the replay's tracker, and feeds each inbound message as an
    ``Update`` to ``Application.process_update``::

        await assert_replays(fixture, TelegramReplay(order_conversation))

    :param conversation: makes the ``ConversationHandler`` (a new one per replay: the
        adapter wraps its callbacks).
    :param state_names: as for :meth:`TelegramAdapter.track`.
    :param setup: called with the application before it starts (other handlers,
        ``bot_data``).

    The chat and user are the recorded session's (``metadata.telegram``, else its
    conversation id); text messages (commands too), button presses
    (``callback_query``), shared contacts and locations are replayed.
    """

    def __init__(
        self,
        conversation: Callable[[], ConversationHandler[Any]],
        *,
        state_names: Mapping[object, str] | None = None,
        setup: Callable[[Application[Any, Any, Any, Any, Any, Any]], None] | None = None,
    ) -> None:
        self.conversation = conversation
        self.state_names = state_names
        self.setup = setup
        self.bot_api = OfflineBotAPI()
        self.application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.adapter: TelegramAdapter | None = None
        self._update_ids = itertools.count(1)

    async def replay_start(self, run: ReplayRun) -> None:
        tracker = await run.tracker()
        self.bot_api = OfflineBotAPI()
        app = (
            ApplicationBuilder()
            .token("1:replay")
            .request(self.bot_api)
            .get_updates_request(OfflineBotAPI())
            .rate_limiter(TrackingRateLimiter())
            .updater(None)
            .build()
        )
        adapter = TelegramAdapter(tracker, app, run.chatbot_id, name=run.flow.get("name"))
        adapter.make_session_id = run.new_session_id
        app.add_handler(adapter.track(self.conversation(), state_names=self.state_names))
        if self.setup is not None:
            self.setup(app)
        await app.initialize()
        run.at_end(adapter.close)
        run.at_end(app.shutdown)
        self.application, self.adapter = app, adapter

    async def replay_inbound(self, message: ReplayInbound, run: ReplayRun) -> None:
        app = self.application
        assert app is not None, "replay_start() first"
        await app.process_update(Update.de_json(self._update(message, run), app.bot))

    def _update(self, message: ReplayInbound, run: ReplayRun) -> dict[str, Any]:
        chat, user = _recorded_chat(run)
        update_id = next(self._update_ids)
        if message.type == "callback_query":
            query_id = (message.message_id or f"callback:{update_id}").removeprefix("callback:")
            shown = self.bot_api.sent[-1]["message_id"] if self.bot_api.sent else 1
            return {
                "update_id": update_id,
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "chat_instance": str(chat["id"]),
                    "data": message.text,
                    "message": {
                        "message_id": shown,
                        "date": 0,
                        "chat": chat,
                        "from": _REPLAY_BOT,
                        "text": "",
                    },
                },
            }
        mid = message.message_id
        sent: dict[str, Any] = {
            "message_id": int(mid) if mid is not None and mid.isdigit() else update_id,
            "date": 0,
            "chat": chat,
            "from": user,
        }
        payload = message.payload or {}
        if message.type == "contact":
            sent["contact"] = {
                "phone_number": payload.get("phone"),
                "first_name": user["first_name"],
                "user_id": payload.get("userId"),
            }
        elif message.type == "location":
            sent["location"] = {k: payload.get(k) for k in ("latitude", "longitude")}
        else:
            text = message.text or ""
            sent["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                sent["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"update_id": update_id, "message": sent}


def _recorded_chat(run: ReplayRun) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recorded session's chat and user, as the Bot API sends them."""
    telegram = run.metadata.get("telegram") or {}
    key = _parse_key(run.conversation_id or "0")
    chat_id = telegram.get("chatId", key[0])
    user_id = telegram.get("userId", key[1] if len(key) > 1 else key[0])
    chat = {"id": chat_id, "type": telegram.get("chatType") or "private"}
    user: dict[str, Any] = {
        "id": user_id,
        "is_bot": False,
        "first_name": run.contact.get("name") or "Replay",
    }
    if telegram.get("username"):
        user["username"] = telegram["username"]
    if telegram.get("languageCode"):
        user["language_code"] = telegram["languageCode"]
    return chat, user
