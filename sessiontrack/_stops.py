"""Stop requests: ``Tracker.stop()`` and the ``sessiontrack_stop_requested`` notifications.

A stop is a report like any other (a ``stopped`` completion), so it is ordered with the
engine's own reports and committed by the writer. Whether it took effect is decided by the
fold: if the session ended first (a completion still in the buffer, or from another
process), the stop is *late* and ``stop()`` raises ``SessionAlreadyTerminal``.

The notification goes to the process that ran the session: every process sees the
committed stop through its feed, and only the one whose tracker accepted reports for that
session (``owned``) calls the hook, from a task of its own, one stop after another, with
the session's chatbot and conversation. A session this process reported and has not
committed yet is flushed first, so that stopping it does not fail as "not found".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from . import events as ev
from ._host import HostHooks
from ._ids import normalize_session_id
from .abc import Store
from .errors import SessionAlreadyTerminal, SessionNotFound
from .events import StoredEvent
from .models import Principal
from .status import TERMINAL_STATUSES
from .store._fold import FoldResult, Report

HOOK = "sessiontrack_stop_requested"


class StopRequests:
    """Requests stops and tells the engine's plugins about committed ones."""

    def __init__(
        self,
        store: Store,
        host: HostHooks,
        put: Callable[[Report], None],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        self._store = store
        self._host = host
        self._put = put
        self._flush = flush
        self.owned: set[str] = set()  # sessions this process reported (ReportingHooks._sid)
        self._pending: set[str] = set()
        self._late: dict[str, str] = {}
        self._notices: asyncio.Queue[StoredEvent] = asyncio.Queue()

    def start(self) -> None:
        self._notices = asyncio.Queue()  # belongs to the running loop

    async def stop(self, session_id: str, principal: Principal | str | None, reason: str) -> None:
        """See :meth:`sessiontrack.Tracker.stop`."""
        sid = normalize_session_id(session_id)
        head = await self._store.session_head(sid)
        if head is None and sid in self.owned:
            await self._flush()  # reported here and not yet committed: commit it first
            head = await self._store.session_head(sid)
        if head is None or (isinstance(principal, Principal) and not principal.may_see(head[0])):
            raise SessionNotFound(sid)
        if head[1] in TERMINAL_STATUSES:
            raise SessionAlreadyTerminal(sid, head[1])
        who = principal.id if isinstance(principal, Principal) else principal
        stop_id = uuid.uuid4().hex
        data = {
            "status": "stopped",
            "reason": reason,
            "requested_by": who,
            "stop_requested": True,
            "stop_id": stop_id,
        }
        self._pending.add(stop_id)
        try:
            self._put((ev.SESSION_COMPLETED, sid, time.time(), data))
            await self._flush()
        finally:
            self._pending.discard(stop_id)
        status = self._late.pop(stop_id, None)
        if status is not None:
            raise SessionAlreadyTerminal(sid, status)

    def settle(self, res: FoldResult) -> None:
        """Note the stops of a committed batch that came too late (the writer calls it),
        and end the ownership of ``completed`` sessions that reports of the grace window
        touched: those reports made the session owned again after its completion had
        ended it (a ``completed`` session never gets a stop notification)."""
        for dropped in res.dropped:
            if dropped.stop_id is not None and dropped.stop_id in self._pending:
                self._late[dropped.stop_id] = dropped.status or "ended"
        for st in res.changed_sessions:
            if st.status == "completed":
                self.owned.discard(st.id)

    def on_event(self, event: StoredEvent) -> None:
        """Feed listener: a completion ends ownership; a committed stop of an owned session
        is queued for the hook."""
        if event.kind != ev.SESSION_COMPLETED or event.session_id not in self.owned:
            return
        self.owned.discard(event.session_id)
        if event.data.get("stop_requested"):
            self._notices.put_nowait(event)

    async def run(self) -> None:
        """Call ``sessiontrack_stop_requested`` for each queued stop, in order."""
        while True:
            event = await self._notices.get()
            await self._host.call(
                HOOK,
                session_id=event.session_id,
                principal=event.data.get("requested_by"),
                chatbot_id=event.chatbot_id,
                conversation_id=event.data.get("conversation_id"),
            )
