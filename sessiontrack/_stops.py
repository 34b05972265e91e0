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
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from . import events as ev
from ._host import HostHooks
from ._ids import normalize_session_id
from .abc import Store
from .errors import InvalidParameter, SessionAlreadyTerminal, SessionNotFound
from .events import StoredEvent
from .models import Principal, StopManyResult
from .query import SessionQueries, _statuses
from .status import ACTIVE_STATUSES, TERMINAL_STATUSES
from .store._fold import FoldResult, Report

HOOK = "sessiontrack_stop_requested"
log = logging.getLogger(__name__)
_HEAD_READS = 4
Head = tuple[str, str, str | None] | None


def _may_see(principal: Principal | str | None, chatbot_id: str) -> bool:
    return not isinstance(principal, Principal) or principal.may_see(chatbot_id)


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
        if head is None or not _may_see(principal, head[0]):
            raise SessionNotFound(sid)
        if head[1] in TERMINAL_STATUSES:
            raise SessionAlreadyTerminal(sid, head[1])
        late = await self._commit_stops([sid], principal, reason)
        if late:
            raise SessionAlreadyTerminal(sid, late[sid])

    async def stop_many(
        self, session_ids: Sequence[str], principal: Principal | str | None, reason: str
    ) -> StopManyResult:
        """See :meth:`sessiontrack.Tracker.stop_many`: each stop is the report
        :meth:`stop` makes, and all of them are committed by one flush. ``session_ids``
        are normalized and distinct."""
        heads = dict(zip(session_ids, await self._heads(session_ids), strict=True))
        if any(head is None and sid in self.owned for sid, head in heads.items()):
            await self._flush()  # some were reported here and not yet committed
            for sid, head in heads.items():
                if head is None:
                    heads[sid] = await self._store.session_head(sid)
        not_found, ended, active = [], [], []
        for sid, head in heads.items():
            if head is None or not _may_see(principal, head[0]):
                not_found.append(sid)
            elif head[1] in TERMINAL_STATUSES:
                ended.append(sid)
            else:
                active.append(sid)
        late = await self._commit_stops(active, principal, reason) if active else {}
        ended_now = set(ended) | set(late)
        return StopManyResult(
            stopped=[sid for sid in active if sid not in late],
            already_ended=[sid for sid in session_ids if sid in ended_now],
            not_found=not_found,
        )

    async def _heads(self, session_ids: Sequence[str]) -> list[Head]:
        """The sessions' heads, a few reads at a time (PostgreSQL serves them in parallel
        from its pool)."""
        gate = asyncio.Semaphore(_HEAD_READS)

        async def one(sid: str) -> Head:
            async with gate:
                return await self._store.session_head(sid)

        return list(await asyncio.gather(*(one(sid) for sid in session_ids)))

    async def _commit_stops(
        self, session_ids: Sequence[str], principal: Principal | str | None, reason: str
    ) -> dict[str, str]:
        """Report a stop of each session and flush: the sessions whose stop came too late
        (they ended first), with the status they ended with."""
        who = principal.id if isinstance(principal, Principal) else principal
        stops: dict[str, str] = {}
        try:
            for sid in session_ids:
                stop_id = uuid.uuid4().hex
                data = {
                    "status": "stopped",
                    "reason": reason,
                    "requested_by": who,
                    "stop_requested": True,
                    "stop_id": stop_id,
                }
                self._pending.add(stop_id)
                stops[stop_id] = sid
                self._put((ev.SESSION_COMPLETED, sid, time.time(), data))
        finally:
            if stops:
                try:
                    await self._flush()
                finally:
                    self._pending.difference_update(stops)
        late = {}
        for stop_id, sid in stops.items():
            status = self._late.pop(stop_id, None)
            if status is not None:
                late[sid] = status
        if len(stops) > 1:
            log.info("stopped %d of %d sessions for %s", len(stops) - len(late), len(stops), who)
        return late

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


MAX_STOPS = 1000
"""Sessions one :meth:`~sessiontrack.Tracker.stop_many` call stops at the most."""

NOT_FILTERS = frozenset({"limit", "offset", "cursor", "sort_by", "sort_order", "principal"})
"""Arguments of ``sessions.list`` that page or sort rather than select."""


def stop_ids(ids: object) -> list[str]:
    """The distinct, normalized session ids of a ``stop_many(ids=...)``, in order."""
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise InvalidParameter("ids", "must be a list of session ids")
    chosen: dict[str, None] = {}
    for i, value in enumerate(ids):
        try:
            chosen[normalize_session_id(value, f"ids[{i}]")] = None
        except (TypeError, ValueError) as exc:
            raise InvalidParameter("ids", str(exc)) from None
        if len(chosen) > MAX_STOPS:
            raise InvalidParameter("ids", f"at most {MAX_STOPS} session ids at once")
    return list(chosen)


async def select_active(
    queries: SessionQueries, criteria: Mapping[str, Any], principal: Principal | None
) -> list[str]:
    """The ids of the active sessions matching ``criteria`` (arguments of
    ``sessions.list``) that ``principal`` may see, newest first: at most
    :data:`MAX_STOPS`, or :class:`InvalidParameter` naming ``filter``."""
    if not isinstance(criteria, Mapping):
        raise InvalidParameter("filter", "must be a mapping of sessions.list arguments")
    # What the list would ignore (None, blank text, an empty list) selects nothing here:
    # it must not turn a filter into "every active session".
    criteria = {k: v for k, v in map(_listed, criteria.items()) if not _blank(v)}
    if not criteria:
        raise InvalidParameter(
            "filter", "must name at least one criterion (filter='active' for every active one)"
        )
    known = set(inspect.signature(SessionQueries.list).parameters) - NOT_FILTERS - {"self"}
    for name in criteria:
        if name not in known:
            raise InvalidParameter(f"filter.{name}", "is not a list filter")
    kwargs = dict(criteria)
    group = kwargs.pop("filter", None)
    try:
        # The caller's group and statuses, narrowed to the active ones: validated as the
        # list validates them (the same messages), then intersected.
        wanted = _statuses(kwargs.pop("status", None), group)
        active = ACTIVE_STATUSES if wanted is None else wanted & ACTIVE_STATUSES
        if not active:  # nothing active can match: check the other criteria, stop nothing
            await queries.list(**kwargs, limit=1, principal=principal)
            return []
        page = await queries.list(**kwargs, status=active, limit=100, principal=principal)
        if page.total > MAX_STOPS:
            raise TooMany(str(page.total))
        found = dict.fromkeys(s.id for s in page.data)
        # Read on to the end rather than trust total: a list may count only so far.
        while page.next_cursor and len(found) <= MAX_STOPS:
            page = await queries.list(
                **kwargs, status=active, limit=100, cursor=page.next_cursor, principal=principal
            )
            found.update(dict.fromkeys(s.id for s in page.data))
        if len(found) > MAX_STOPS:
            raise TooMany(f"more than {MAX_STOPS}")
    except InvalidParameter as exc:
        raise InvalidParameter(f"filter.{exc.field}", exc.message) from None
    except TooMany as exc:
        raise InvalidParameter(
            "filter",
            f"matches {exc.args[0]} active sessions; at most {MAX_STOPS} are stopped at once: "
            "narrow it",
        ) from None
    return list(found)


def _listed(item: tuple[str, Any]) -> tuple[str, Any]:
    name, value = item
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        return name, list(value)  # an iterator is read once
    return name, value


def _blank(value: object) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


class TooMany(Exception):
    """A filter matches more sessions than one call stops."""
