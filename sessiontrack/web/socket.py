"""The Socket.IO namespace ``/sessions`` and its gateway.

Rooms: ``all`` (subscribers of every session, unrestricted principals), ``bot:<id>``
(subscribers restricted to some chatbots join one room per chatbot) and ``session:<id>``
(clients that joined one session). Each has a twin with a ``masked|`` prefix (which no
chatbot id can forge: room names are ``all``, ``bot:…`` or ``session:…``) for principals whose
phone numbers are masked. Every event is emitted once to the union of the rooms it
concerns, so a client in several of them receives it once.

One pump task per process reads committed events from the tracker, in sequence order, and
emits them; it runs while at least one client is connected.

Each connection's send queue is bounded (``queue_limit`` packets in Engine.IO's queue): a
client that lets it fill up receives ``sessions:overflow {reason, lastSeq, limit}`` after
the last event it gets, and is then disconnected from the namespace. It resumes with
``sessions:subscribe {after: lastSeq}`` (and ``session:join {sessionId, after}``), which
replay the missed events from the log before live delivery takes over, with no gap and no
duplicate (see docs/realtime.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from starlette.requests import HTTPConnection

from .._ids import normalize_session_id
from ..errors import InvalidParameter, SessionNotFound, SessionTrackError
from ..events import StoredEvent
from ..models import Principal
from ._context import Context, TrackerDown
from ._wire import needs_masking, payload
from .auth import AuthRequest, NotAuthenticated, resolve, socket_token

log = logging.getLogger(__name__)
NAMESPACE = "/sessions"
QUEUE_LIMIT = 1000
"""Default bound of a connection's send queue, in packets (one packet per event)."""
OVERFLOW_EVENT = "sessions:overflow"
_BATCH = 500
_REPLAY_PAGE = 500
RESERVED_EVENTS = frozenset(
    {*socketio.AsyncServer.reserved_events, *socketio.AsyncClient.reserved_events}
)
"""Event names a client may never send: python-socketio's reserved names (``connect``,
``disconnect``, ``connect_error``, ...), which it would dispatch to the connection handlers."""


def _refused(message: str, status: int) -> Exception:
    """What a refused connect raises: the client's ``connect_error`` gets ``message`` and
    ``data: {status}`` (JavaScript: ``err.message``, ``err.data.status``)."""
    refusal: Exception = socketio.exceptions.ConnectionRefusedError(message, {"status": status})
    return refusal


@dataclass
class _Client:
    principal: Principal
    masked: bool
    subscribed: bool = False
    sessions: set[str] = field(default_factory=set)
    cut: bool = False  # told to resume: sent nothing more
    replayed_to: int | None = None  # while a replay runs: the last seq it has sent

    def room(self, name: str) -> str:
        return f"masked|{name}" if self.masked else name


class Gateway(socketio.AsyncNamespace):  # type: ignore[misc]
    """The ``/sessions`` namespace: subscriptions, session rooms, and who is online."""

    def __init__(
        self, ctx: Context, namespace: str = NAMESPACE, *, queue_limit: int = QUEUE_LIMIT
    ) -> None:
        super().__init__(namespace)
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be at least 1, got {queue_limit!r}")
        self._ctx = ctx
        self.queue_limit = queue_limit
        self._clients: dict[str, _Client] = {}
        self._pump: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Held by the pump while it emits a batch, and by a replay while it hands over to
        # live delivery: _sent_to is the last sequence number every room has been sent.
        self._sending = asyncio.Lock()
        self._sent_to = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[str, Any], Awaitable[dict[str, Any]]]] = {
            "sessions:subscribe": self._subscribe,
            "sessions:unsubscribe": self._unsubscribe,
            "session:join": self._join,
            "session:leave": self._leave,
        }

    # --- helpers for the host -----------------------------------------------------------

    def is_user_online(self, user_id: str) -> bool:
        """Whether a client authenticated as this principal id is connected here."""
        return any(c.principal.id == user_id for c in self._clients.values())

    def online_users(self) -> list[str]:
        """Principal ids with at least one connected client in this process."""
        return sorted({c.principal.id for c in self._clients.values()})

    def sessions_subscriber_count(self) -> int:
        """Clients subscribed to all sessions."""
        return sum(c.subscribed for c in self._clients.values())

    def session_subscriber_count(self, session_id: str) -> int:
        """Clients that joined this session's room."""
        sid = session_id.lower()
        return sum(sid in c.sessions for c in self._clients.values())

    # --- connection ---------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        principal = await self._authenticate(sid, environ, auth)
        self._clients[sid] = _Client(principal, masked=Context.masks(principal))
        await self._ensure_pump()

    async def _authenticate(self, sid: str, environ: dict[str, Any], auth: Any) -> Principal:
        """The principal of a connecting socket, or raise the refusal to send it.

        It is fixed here, once: a socket that has one never gets another, and the handshake
        is the server's own record of it, never an argument a client could have sent.
        """
        if sid in self._clients or environ is not self._handshake(sid):
            raise _refused("already connected", 400)
        conn = HTTPConnection(environ["asgi.scope"])
        try:
            self._ctx.require_tracker()
            token = socket_token(conn, auth)
        except TrackerDown as exc:
            raise _refused(str(exc), 503) from None
        except InvalidParameter as exc:
            raise _refused(str(exc), 400) from None
        except NotAuthenticated as exc:
            raise _refused(exc.message, exc.status) from None
        request = AuthRequest(token=token, connection=conn, transport="socket", auth=auth)
        try:
            return await resolve(self._ctx.authenticator, request)
        except NotAuthenticated as exc:
            raise _refused(exc.message, exc.status) from None

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._clients.pop(sid, None)
        if not self._clients and self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def _handshake(self, sid: str) -> Any:
        return self.server.get_environ(sid, namespace=self.namespace)

    def _from_server(self, sid: str) -> bool:
        """Whether a reserved event comes from the server itself, not from a client.

        python-socketio dispatches a client's EVENT packet named ``connect`` or
        ``disconnect`` to ``on_connect``/``on_disconnect`` like its own calls. It only
        delivers client events to connected sockets, while its own ``connect`` and
        ``disconnect`` run while the socket is pending (not yet, or no longer, connected).
        """
        return not self.server.manager.is_connected(sid, self.namespace)

    async def trigger_event(self, event: Any, *args: Any) -> Any:
        sid: str = args[0]
        name = event if isinstance(event, str) else None  # a client may send any JSON
        if name in RESERVED_EVENTS and self._from_server(sid):
            return await super().trigger_event(name, *args)
        handler = self._handlers.get(name) if name is not None else None
        if name is None or handler is None:
            return self._refuse(sid, event)
        data = args[1] if len(args) > 1 else None
        answer = await handler(sid, data)
        reply = {
            "sessions:subscribe": "sessions:subscribed",
            "sessions:unsubscribe": "sessions:unsubscribed",
            "session:join": "session:joined",
            "session:leave": "session:left",
        }[name]
        await self.emit(reply, answer, to=sid)
        return answer

    @staticmethod
    def _refuse(sid: str, event: Any) -> dict[str, Any]:
        # Only the events of the contract reach a handler: no name maps to a method.
        if isinstance(event, str) and event in RESERVED_EVENTS:
            log.warning("socket %s sent the reserved event %r: refused", sid, event)
            return {"success": False, "error": f"{event!r} is a reserved event name"}
        log.info("socket %s sent the unknown event %r: refused", sid, event)
        return {"success": False, "error": f"{event!r} is not an event of this namespace"}

    # --- client → server ----------------------------------------------------------------

    async def _subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        client = self._clients.get(sid)
        if client is None:
            return {"success": False, "error": "not connected"}
        after = _after(data)
        if isinstance(after, str):
            return {"success": False, "error": after}
        await self._ensure_pump()
        rooms = [client.room(r) for r in self._broadcast_rooms(client.principal)]
        if client.subscribed or after is None:
            for room in rooms:
                await self.enter_room(sid, room)
            client.subscribed = True
            return {"success": True}
        replayed = await self._replay(sid, client, after, None, rooms)
        client.subscribed = True
        return {"success": True, "replayed": replayed}

    async def _unsubscribe(self, sid: str, _: Any) -> dict[str, Any]:
        client = self._clients.get(sid)
        if client is None:
            return {"success": False, "error": "not connected"}
        for room in self._broadcast_rooms(client.principal):
            await self.leave_room(sid, client.room(room))
        client.subscribed = False
        return {"success": True}

    def _session_request(self, sid: str, data: Any) -> tuple[_Client, str] | dict[str, Any]:
        """The client and the session id of a join/leave, or the refusal to answer with."""
        raw = data.get("sessionId") if isinstance(data, dict) else data
        try:
            session_id = normalize_session_id(raw, "sessionId")
        except (TypeError, ValueError) as exc:
            return {
                "sessionId": raw if isinstance(raw, str) else None,
                "success": False,
                "error": str(exc),
            }
        client = self._clients.get(sid)
        if client is None:
            return {"sessionId": session_id, "success": False, "error": "not connected"}
        return client, session_id

    async def _join(self, sid: str, data: Any) -> dict[str, Any]:
        request = self._session_request(sid, data)
        if isinstance(request, dict):
            return request
        client, session_id = request
        try:
            tracker = self._ctx.tracker
            await tracker.sessions.messages(session_id, limit=1, principal=client.principal)
        except SessionNotFound:
            return {"sessionId": session_id, "success": False, "error": "session not found"}
        except SessionTrackError as exc:
            return {"sessionId": session_id, "success": False, "error": str(exc)}
        after = _after(data)
        if isinstance(after, str):
            return {"sessionId": session_id, "success": False, "error": after}
        await self._ensure_pump()
        room = client.room(f"session:{session_id}")
        if session_id in client.sessions or after is None:
            await self.enter_room(sid, room)
            client.sessions.add(session_id)
            return {"sessionId": session_id, "success": True}
        replayed = await self._replay(sid, client, after, session_id, [room])
        client.sessions.add(session_id)
        return {"sessionId": session_id, "success": True, "replayed": replayed}

    async def _leave(self, sid: str, data: Any) -> dict[str, Any]:
        request = self._session_request(sid, data)
        if isinstance(request, dict):
            return request
        client, session_id = request
        await self.leave_room(sid, client.room(f"session:{session_id}"))
        client.sessions.discard(session_id)
        return {"sessionId": session_id, "success": True}

    @staticmethod
    def _broadcast_rooms(principal: Principal) -> list[str]:
        if principal.chatbot_ids is None:
            return ["all"]
        return [f"bot:{b}" for b in sorted(principal.chatbot_ids)]

    # --- resume: replay from the log, then hand over to live delivery ------------------

    async def _replay(
        self, sid: str, client: _Client, after: int, session_id: str | None, rooms: list[str]
    ) -> int:
        """Send the client's events after ``after`` from the log, then enter ``rooms``.

        Most pages are read while the pump runs on (a long replay must not hold up the
        other clients), each up to what the pump has already sent; the last stretch is
        read holding the pump's lock, and the rooms are entered before it is released, so
        every event is sent exactly once: by the replay up to ``_sent_to``, live after it.
        """
        store = self._ctx.tracker.store
        # Half the bound per page, sent once the queue is down to a quarter: the client's
        # own replay never fills its queue.
        page = max(1, min(_REPLAY_PAGE, self.queue_limit // 2))
        replayed = 0
        client.replayed_to = after
        try:
            while True:
                events = await store.events_after(
                    after, limit=page, session_id=session_id, until=self._sent_to
                )
                replayed += await self._send_replayed(sid, client, events, session_id)
                after = client.replayed_to = events[-1].seq if events else after
                if len(events) < page:
                    break
                if not await self._wait_drained(sid, client):
                    return replayed  # it left, or was cut off: it resumes again
            async with self._sending:
                while True:
                    events = await store.events_after(
                        after, limit=page, session_id=session_id, until=self._sent_to
                    )
                    replayed += await self._send_replayed(sid, client, events, session_id)
                    after = events[-1].seq if events else after
                    if len(events) < page:
                        break
                if sid in self._clients and not client.cut:  # it may have left meanwhile
                    for room in rooms:
                        await self.enter_room(sid, room)
        finally:
            client.replayed_to = None
        return replayed

    async def _send_replayed(
        self, sid: str, client: _Client, events: list[StoredEvent], session_id: str | None
    ) -> int:
        sent = 0
        for event in events:
            if not client.principal.may_see(event.chatbot_id):
                continue
            if session_id is not None and client.subscribed:
                continue  # the subscription (resumed first) carries this session's events
            await self.emit(event.wire_name, payload(event, client.masked), to=sid)
            sent += 1
        return sent

    async def _wait_drained(self, sid: str, client: _Client) -> bool:
        """Let a resuming client take its queue down to a quarter of the bound before the
        next page (it paces the replay instead of overflowing); False once it is gone."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        while sid in self._clients and not client.cut:
            socket = self.server.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                return False
            if socket.queue.qsize() <= self.queue_limit // 4:
                return True
            await asyncio.sleep(0.05)
        return False

    # --- server → client ----------------------------------------------------------------

    async def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._ready = asyncio.Event()
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())
        await self._ready.wait()

    async def _run_pump(self) -> None:
        tracker = self._ctx.tracker
        try:
            async with tracker.subscribe(buffer=10_000) as sub:
                self._sent_to = sub.last_seq
                self._ready.set()
                async for first in sub:  # ends when the tracker closes
                    batch = [first]
                    # Take what the feed already queued without waiting: one pass per burst.
                    while len(batch) < _BATCH and (more := sub.get_nowait()) is not None:
                        batch.append(more)
                    async with self._sending:
                        try:
                            await self._broadcast(batch)
                        except Exception:
                            log.exception(
                                "emitting events %s..%s failed", batch[0].seq, batch[-1].seq
                            )
                        self._sent_to = batch[-1].seq
        except Exception:
            log.exception("the sessiontrack socket pump stopped")
        finally:
            self._ready.set()

    async def _broadcast(self, events: list[StoredEvent]) -> None:
        """Send each event once to every client in the rooms it concerns.

        Like ``AsyncServer.emit`` to a list of rooms (recipients de-duplicated, the packet
        encoded once), but sending in order without a task per recipient and event: at
        thousands of events per second that overhead, not the sockets, was the bottleneck.
        A recipient whose send queue is full is cut off instead (see :meth:`_cut`).
        """
        manager = self.server.manager
        send = self.server.eio.send_packet
        sockets = self.server.eio.sockets
        limit = self.queue_limit
        for event in events:
            rooms = ["all", f"bot:{event.chatbot_id}", f"session:{event.session_id}"]
            masked_rooms = [f"masked|{r}" for r in rooms]
            if needs_masking(event):
                groups = [(rooms, payload(event, False)), (masked_rooms, payload(event, True))]
            else:
                groups = [(rooms + masked_rooms, payload(event, False))]
            for targets, data in groups:
                recipients = list(manager.get_participants(self.namespace, targets))
                if not recipients:
                    continue
                pkt = self.server.packet_class(
                    sio_packet.EVENT, namespace=self.namespace, data=[event.wire_name, data]
                )
                encoded = pkt.encode()
                for part in encoded if isinstance(encoded, list) else [encoded]:
                    eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, part)
                    for sid, eio_sid in recipients:
                        client = self._clients.get(sid)
                        if client is None or client.cut:
                            continue
                        socket = sockets.get(eio_sid)
                        if socket is not None and socket.queue.qsize() >= limit:
                            await self._cut(sid, client, event.seq)
                            continue
                        await send(eio_sid, eio_pkt)

    async def _cut(self, sid: str, client: _Client, seq: int) -> None:
        """Tell a client whose queue is full where to resume, then disconnect it.

        The notice goes after everything already queued, so the client receives every
        event of its rooms up to ``lastSeq`` first. The disconnect runs in its own task:
        it calls :meth:`on_disconnect`, which may cancel the pump that is calling this.
        """
        client.cut = True
        last = seq - 1
        if client.replayed_to is not None:
            # Cut during a replay: resume from where the replay got to (events of other
            # rooms after it come again; their seq tells the client it has them).
            last = min(last, client.replayed_to)
        log.warning(
            "socket client %s let %s events queue up: disconnecting it; it resumes after seq %s",
            sid,
            self.queue_limit,
            last,
        )
        notice = {"reason": "send queue full", "lastSeq": last, "limit": self.queue_limit}
        await self.emit(OVERFLOW_EVENT, notice, to=sid)
        task = asyncio.get_running_loop().create_task(
            self.server.disconnect(sid, namespace=self.namespace)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the pump (the app does this when the last client leaves)."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None


def _after(data: Any) -> int | str | None:
    """The ``after`` of a subscribe or join (``None`` if absent), or the error to answer."""
    after = data.get("after") if isinstance(data, dict) else None
    if after is None:
        return None
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
        return "after must be a sequence number (an integer >= 0) this server sent"
    return after
