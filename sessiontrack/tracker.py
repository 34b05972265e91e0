"""The tracker: a pluggy plugin that records what an engine reports.

Hook implementations validate and enqueue (no I/O); a writer task commits batches, one
transaction each, and then publishes the committed events. See docs/durability.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio
import pluggy
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from . import events as ev
from . import hookspecs
from ._feed import Feed, Subscription
from ._ids import normalize_session_id
from ._reporting import ReportingHooks
from .errors import BufferFull, SessionAlreadyTerminal, SessionNotFound, TrackerNotRunning
from .events import StoredEvent
from .hookspecs import REQUIRED
from .models import Principal
from .query import SessionQueries
from .status import TERMINAL_STATUSES
from .store import DEFAULT_PREFIX, SQLAlchemyStore
from .store._bulk import transient_sqlstate
from .store._fold import FoldResult, Report

log = logging.getLogger(__name__)
_DIRECTIONS = frozenset({"inbound", "outbound"})


@dataclass
class TrackerStats:
    """Counters since the tracker started (see docs/durability.md for each)."""

    enqueued: int = 0
    committed: int = 0
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    orphans: int = 0
    late: int = 0
    dropped_overflow: int = 0
    failed: int = 0
    retries: int = 0

    @property
    def buffered(self) -> int:
        return self.enqueued - self.committed


class Tracker(ReportingHooks):
    """Records sessions reported through the hooks and serves them back.

    Use it as an async context manager (or call :meth:`start` and :meth:`aclose`)::

        async with sessiontrack.Tracker("sqlite+aiosqlite:///sessions.db") as tracker:
            pm.register(tracker)

    :param url_or_engine: a database URL or an existing ``AsyncEngine`` (never disposed).
    :param plugin_manager: the manager on which the tracker calls the tracker → host hooks
        (``sessiontrack_stop_requested``, ``sessiontrack_events_committed``). The tracker
        registers itself there. Without one it makes its own, ``tracker.plugin_manager``.
    :param idle_timeout: sessions without an explicit ``expires_at`` expire after this much
        inactivity (``None``: never).
    :param sweep_interval: seconds between sweeps for overdue sessions (``None``: no sweeper
        in this process).
    :param max_batch: reports per transaction at the most (default 50,000, or
        ``max_buffered`` if smaller). The writer takes what is buffered, so batches are
        this large only while reports arrive faster than the database absorbs them; there,
        large batches cost less per report (each touched session is loaded and updated
        once per batch, and each transaction's fixed costs are shared by more reports). A
        smaller value holds the database's write lock for less time at once.
    :param max_buffered: reports held in memory, not yet committed, at the most.
    :param high_water: above this many buffered reports, :meth:`drain` makes the engine
        wait until the writer has brought the buffer down to a quarter of it (default:
        half of ``max_buffered``).
    :param overflow: past ``max_buffered``, ``"raise"`` raises :class:`BufferFull` at the
        call site; ``"drop"`` drops the report, counts it and logs a warning.
    :param migrate: upgrade the tables at start (default: on SQLite yes, on PostgreSQL only
        check the revision).
    :param poll_interval: seconds between checks for events other processes committed
        (PostgreSQL also wakes on NOTIFY at once).
    :param shutdown_timeout: how long closing waits for the buffer to reach the database.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine = "sqlite+aiosqlite:///sessiontrack.db",
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        prefix: str = DEFAULT_PREFIX,
        idle_timeout: timedelta | None = timedelta(minutes=30),
        sweep_interval: float | None = 30.0,
        max_batch: int | None = None,
        max_buffered: int = 100_000,
        high_water: int | None = None,
        overflow: Literal["raise", "drop"] = "raise",
        migrate: bool | None = None,
        poll_interval: float = 0.5,
        shutdown_timeout: float = 30.0,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if overflow not in ("raise", "drop"):
            raise ValueError(f"overflow must be 'raise' or 'drop', got {overflow!r}")
        if max_batch is None:
            max_batch = min(50_000, max_buffered)
        if max_batch < 1 or max_buffered < max_batch:
            raise ValueError("need 1 <= max_batch <= max_buffered")
        if high_water is None:
            high_water = max_buffered // 2
        if not 1 <= high_water <= max_buffered:
            raise ValueError("need 1 <= high_water <= max_buffered")
        self.store = SQLAlchemyStore(url_or_engine, prefix=prefix)
        self.stats = TrackerStats()
        self._idle_s = int(idle_timeout.total_seconds()) if idle_timeout is not None else None
        self._sweep_interval = sweep_interval
        self._max_batch = max_batch
        self._max_buffered = max_buffered
        self._high_water = high_water
        self._overflow = overflow
        self._migrate = migrate
        self._poll_interval = poll_interval
        self._shutdown_timeout = shutdown_timeout
        self._retry = (retry_initial, retry_max)
        self._buffer: deque[Report] = deque()
        self._owned: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._committed_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._closing = False
        self._stack: AsyncExitStack | None = None
        self._feed = Feed(self.store)
        self._feed.add_listener(self._on_event)
        self._sessions = SessionQueries(self.store)
        if plugin_manager is None:
            plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        if not hasattr(plugin_manager.hook, "sessiontrack_session_started"):
            plugin_manager.add_hookspecs(hookspecs)
        plugin_manager.register(self)
        self.plugin_manager = plugin_manager

    def __repr__(self) -> str:
        return f"Tracker({self.store!r})"

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Tracker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._stack is not None and not self._closing

    async def start(self) -> None:
        """Open the store and start the writer, the sweeper and the log watcher."""
        if self._stack is not None:
            raise RuntimeError("tracker already started")
        async with AsyncExitStack() as stack:
            await self.store.open(migrate=self._migrate)
            stack.push_async_callback(self.store.close)
            await self._feed.start()
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._wake = asyncio.Event()
            self._progress = asyncio.Condition()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            self._writer_done = anyio.Event()
            tg.start_soon(self._writer)
            tg.start_soon(self._feed.run)
            tg.start_soon(self._watch)
            if self._sweep_interval is not None:
                tg.start_soon(self._sweeper)
            self._stack = stack.pop_all()
        log.info("sessiontrack tracker started on %r", self.store)

    async def aclose(self) -> None:
        """Flush everything buffered (waiting up to ``shutdown_timeout``), then stop."""
        if self._stack is None or self._closing:
            return
        self._closing = True
        self._wake.set()
        with anyio.move_on_after(self._shutdown_timeout) as scope:
            await self._writer_done.wait()
        if scope.cancelled_caught:
            log.error(
                "sessiontrack shut down with %d reports not committed (database "
                "unreachable for %ss)",
                len(self._buffer),
                self._shutdown_timeout,
            )
        with anyio.move_on_after(self._shutdown_timeout):
            await self._feed.wait_for(self._committed_seq)  # published, then ended
        self._feed.close()  # iterators end instead of outliving the tracker
        stack, self._stack = self._stack, None
        await stack.aclose()
        self._closing = False
        log.info("sessiontrack tracker stopped: %s", self.stats)

    def _require_running(self) -> None:
        if self._stack is None:
            raise TrackerNotRunning(
                "the tracker is not running: enter it with `async with tracker:` (or await "
                "tracker.start()) first; a mounted sub-app gets no lifespan events, so the "
                "host's own lifespan must do this"
            )

    # --- the public API -----------------------------------------------------------------

    @property
    def sessions(self) -> SessionQueries:
        """The query service: ``list``, ``active``, ``completed``, ``get``, ``messages``,
        ``stats``."""
        self._require_running()
        return self._sessions

    @property
    def published_seq(self) -> int:
        """The sequence number of the last event handed to this process's subscribers."""
        return self._feed.cursor

    @property
    def subscriber_count(self) -> int:
        """Open :meth:`subscribe` iterators in this process (SSE streams, socket pumps)."""
        return self._feed.subscriber_count

    async def flush(self) -> None:
        """Return once everything reported before this call is committed, and handed to
        this process's subscribers (a subscription opened afterwards starts after it)."""
        self._require_running()
        target = self.stats.enqueued
        async with self._progress:
            await self._progress.wait_for(lambda: self.stats.committed >= target)
        await self._feed.wait_for(self._committed_seq)

    async def drain(self) -> None:
        """Back-pressure for an engine that reports faster than the database absorbs.

        Returns at once while at most ``high_water`` reports are buffered; above that,
        waits until the writer has brought the buffer down to a quarter of ``high_water``.
        Like :meth:`asyncio.StreamWriter.drain`, an engine awaits it at its own await
        points (between two inbound messages, say); unlike :meth:`flush` it does not wait
        for durability, so the writer keeps a full batch to work on while the engine runs.
        """
        self._require_running()
        if self.stats.buffered <= self._high_water:
            return
        low = self._high_water // 4
        async with self._progress:
            await self._progress.wait_for(lambda: self.stats.buffered <= low or self._closing)

    async def stop(
        self,
        session_id: str,
        principal: Principal | str | None = None,
        *,
        reason: str = "stopped_by_api",
    ) -> None:
        """Stop an active session: it becomes ``stopped`` and the engine's process gets
        ``sessiontrack_stop_requested``. Returns once the stop is committed.

        :raises SessionNotFound: no such session, or the principal may not see it.
        :raises SessionAlreadyTerminal: the session has already ended.
        """
        self._require_running()
        sid = normalize_session_id(session_id)
        head = await self.store.session_head(sid)
        if head is None or (isinstance(principal, Principal) and not principal.may_see(head[0])):
            raise SessionNotFound(sid)
        if head[1] in TERMINAL_STATUSES:
            raise SessionAlreadyTerminal(sid, head[1])
        who = principal.id if isinstance(principal, Principal) else principal
        self._enqueue(
            (
                ev.SESSION_COMPLETED,
                sid,
                time.time(),
                {
                    "status": "stopped",
                    "reason": reason,
                    "requested_by": who,
                    "stop_requested": True,
                },
            )
        )
        await self.flush()

    async def purge(self, older_than: timedelta, **kwargs: Any) -> int:
        """Delete sessions that ended more than ``older_than`` ago, with their events."""
        self._require_running()
        return await self.store.purge(datetime.now(UTC) - older_than, **kwargs)

    @asynccontextmanager
    async def subscribe(
        self, *, after: int | None = None, session_id: str | None = None, buffer: int = 1000
    ) -> AsyncIterator[Subscription]:
        """Iterate committed events (of all sessions, or one), in sequence order.

        ``after`` resumes after that sequence number (reading the log first), so a client
        that reconnects misses nothing; without it, iteration starts with the next event.
        """
        self._require_running()
        async with self._feed.subscribe(after=after, session_id=session_id, buffer=buffer) as sub:
            yield sub

    # --- engine → tracker hooks ---------------------------------------------------------

    def _enqueue(self, report: Report) -> None:
        if self._stack is None:
            self._require_running()
        if len(self._buffer) >= self._max_buffered:
            self.stats.dropped_overflow += 1
            if self._overflow == "raise":
                raise BufferFull(self._max_buffered)
            if (
                self.stats.dropped_overflow in (1, 10, 100)
                or not self.stats.dropped_overflow % 1000
            ):
                log.warning(
                    "sessiontrack buffer full: %d reports dropped so far",
                    self.stats.dropped_overflow,
                )
            return
        if threading.get_ident() == self._loop_thread:
            self._buffer.append(report)
            self.stats.enqueued += 1
            if not self._wake.is_set():
                self._wake.set()
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._enqueue, report)

    # --- the writer ---------------------------------------------------------------------

    async def _writer(self) -> None:
        try:
            while True:
                if not self._buffer:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                n = min(len(self._buffer), self._max_batch)
                batch = [self._buffer[i] for i in range(n)]
                async with self._feed.local_commit:
                    await self._commit(batch)
                for _ in range(n):
                    self._buffer.popleft()
                self.stats.committed += n
                async with self._progress:
                    self._progress.notify_all()
        finally:
            self._writer_done.set()

    async def _commit(self, batch: list[Report]) -> None:
        """Commit ``batch``, retrying while the database is unreachable; a report the
        database rejects for itself is isolated by bisection, logged and counted."""
        delay, max_delay = self._retry
        while True:
            try:
                res = await self.store.apply(batch, idle_timeout_s=self._idle_s)
            except Exception as exc:
                if _is_transient(exc):
                    self.stats.retries += 1
                    log.warning(
                        "sessiontrack: database unavailable (%s); %d reports buffered, "
                        "retrying in %.2fs",
                        type(exc).__name__,
                        len(self._buffer),
                        delay,
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, max_delay)
                    continue
                if len(batch) == 1:
                    self.stats.failed += 1
                    log.error(
                        "sessiontrack: the database rejected a report, dropped: %r",
                        batch[0],
                        exc_info=True,
                    )
                    return
                half = len(batch) // 2
                await self._commit(batch[:half])
                await self._commit(batch[half:])
                return
            await self._committed(res)
            return

    async def _committed(self, res: FoldResult) -> None:
        s = self.stats
        s.batches += 1
        s.events_stored += len(res.events)
        if res.duplicates or res.orphans or res.late:
            s.duplicates += res.duplicates
            s.orphans += res.orphans
            s.late += res.late
            log.warning(
                "sessiontrack: ignored %d duplicate, %d orphan (session never started) "
                "and %d late (session already ended) reports",
                res.duplicates,
                res.orphans,
                res.late,
            )
        if res.events:
            self._committed_seq = res.last_seq
            self._feed.deliver(res.events)
            await self.call_hook("sessiontrack_events_committed", events=res.events)

    def _on_event(self, event: StoredEvent) -> None:
        if event.kind != ev.SESSION_COMPLETED or event.session_id not in self._owned:
            return
        self._owned.discard(event.session_id)
        if event.data.get("stop_requested"):
            task = self.call_hook(
                "sessiontrack_stop_requested",
                session_id=event.session_id,
                principal=event.data.get("requested_by"),
            )
            # keep a reference: the loop holds tasks only weakly
            background = asyncio.get_running_loop().create_task(task)
            self._background.add(background)
            background.add_done_callback(self._background.discard)

    async def call_hook(self, hook: str, **kwargs: Any) -> None:
        """Call a tracker → host hook on ``plugin_manager``, awaiting async implementations;
        a failing implementation is logged, never raised."""
        try:
            results = getattr(self.plugin_manager.hook, hook)(**kwargs)
            for result in results:
                if inspect.isawaitable(result):
                    await result
        except Exception:
            log.exception("a %s hook implementation failed", hook)

    # --- background tasks ---------------------------------------------------------------

    async def _sweeper(self) -> None:
        assert self._sweep_interval is not None
        while True:
            await anyio.sleep(self._sweep_interval)
            try:
                now = datetime.now(UTC)
                for sid in await self.store.overdue_sessions(now):
                    self._enqueue(
                        (
                            ev.SESSION_COMPLETED,
                            sid,
                            now.timestamp(),
                            {"status": "expired", "reason": "timeout", "if_overdue": True},
                        )
                    )
            except Exception as exc:
                if not _is_transient(exc):
                    log.exception("sessiontrack sweeper failed")

    async def _watch(self) -> None:
        """Wake the feed for events other processes commit: LISTEN on PostgreSQL (with a
        slow poll in case a notification is lost), polling the log's head on SQLite."""
        delay = self._retry[0]
        while True:
            try:
                if self.store.dialect == "postgresql":
                    await self._listen()
                else:
                    while True:
                        await anyio.sleep(self._poll_interval)
                        head = await self.store.last_seq()
                        if head > self._feed.cursor:
                            self._feed.poke(head)
            except Exception as exc:
                if not _is_transient(exc):
                    log.exception("sessiontrack log watcher failed")
                await anyio.sleep(delay)
                delay = min(delay * 2, self._retry[1])

    async def _listen(self) -> None:
        async with self.store.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None

            def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                self._feed.poke(int(payload) if payload.isdigit() else None)

            await driver.add_listener(self.store.notify_channel, notified)
            try:
                self._feed.poke()
                while True:
                    await anyio.sleep(max(self._poll_interval * 4, 2.0))
                    await conn.execute(sa.text("SELECT 1"))
                    self._feed.poke()
            finally:
                with anyio.CancelScope(shield=True):
                    await driver.remove_listener(self.store.notify_channel, notified)


_SQLITE_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
    "SQLITE_READONLY",
)


def _is_transient(exc: BaseException) -> bool:
    """Errors that mean "the database is not reachable now", worth retrying.

    SQLite raises ``OperationalError`` for a locked or unreadable file but also for a
    statement it refuses (say, JSON nested deeper than it parses): its error code tells
    the two apart, so a report SQLite refuses is isolated instead of retried forever.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlite_error = getattr(exc.orig, "sqlite_errorname", None)
        if isinstance(sqlite_error, str):
            return sqlite_error.startswith(_SQLITE_TRANSIENT)
        if transient_sqlstate(getattr(exc.orig, "sqlstate", None)):
            return True
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


__all__ = ["REQUIRED", "Tracker", "TrackerStats"]
