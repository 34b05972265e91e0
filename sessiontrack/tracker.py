"""The tracker: a pluggy plugin that records what an engine reports.

A façade over small parts, started on one ``AsyncExitStack``: the intake (the bounded
buffer the hook implementations hand their reports to, from any thread), the batch writer
(one transaction per batch, retry, bisection, stats), the ``events_committed`` dispatcher,
stop requests and the expiry sweeper. It depends on the :mod:`sessiontrack.abc`
interfaces, never on a database driver. See docs/durability.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import anyio
import pluggy

from . import _validate, hookspecs
from ._conversations import Conversations
from ._dispatch import DEFAULT_MAX_EVENTS, CommittedDispatcher
from ._erasure import erasure_key
from ._feed import Feed
from ._host import HostHooks
from ._intake import NOT_STARTED, Intake
from ._redact import Redaction
from ._reporting import ReportingHooks
from ._stats import TrackerStats
from ._stops import StopRequests, select_active, stop_ids
from ._sweeper import Retention, Sweeper, check_retention
from ._writer import BatchWriter
from .abc import Store, Subscription
from .analytics._service import Analytics
from .consumer import ConsumerGroup
from .errors import ErasureNotAllowed, InvalidParameter, TrackerNotRunning
from .hookspecs import REQUIRED
from .limits import CHATBOT_ID, CONVERSATION_ID, REASON
from .models import AuditRecord, ErasureResult, Principal, StopManyResult
from .query import SessionQueries
from .status import TERMINAL_STATUSES
from .store import DEFAULT_PREFIX, create_store

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
_MIN_IDLE = timedelta(seconds=1)
_MAX_IDLE = timedelta(days=3653)
_MAX_GRACE = timedelta(hours=1)


class TrackerOptions(TypedDict, total=False):
    """The keyword options of :class:`Tracker` (and of ``SyncTracker``), as one type."""

    plugin_manager: pluggy.PluginManager | None
    prefix: str
    idle_timeout: timedelta | None
    completion_grace: timedelta
    commit_delay: float
    sweep_interval: float | None
    max_batch: int | None
    max_buffered: int
    high_water: int | None
    overflow: Literal["raise", "drop"]
    migrate: bool | None
    poll_interval: float
    shutdown_timeout: float
    retry_initial: float
    retry_max: float
    max_committed_queue: int
    analytics: bool
    redact: Iterable[object] | None
    retention: Mapping[str, timedelta] | None
    consumers: Iterable[ConsumerGroup]
    audit_key: bytes | str | None
    audit_reads: bool


class Tracker(ReportingHooks):
    """Records sessions reported through the hooks and serves them back.

    Use it as an async context manager (or call :meth:`start` and :meth:`aclose`)::

        async with sessiontrack.Tracker("sqlite+aiosqlite:///sessions.db") as tracker:
            pm.register(tracker)

    :param url_or_engine: a database URL, an existing ``AsyncEngine`` (never disposed) or
        a :class:`sessiontrack.abc.Store`.
    :param plugin_manager: the manager on which the tracker calls the tracker → host hooks
        (``sessiontrack_stop_requested``, ``sessiontrack_events_committed``). The tracker
        registers itself there. Without one it makes its own, ``tracker.plugin_manager``.
        Every other manager the tracker is registered on (``pm.register(tracker)``) gets
        these calls too.
    :param idle_timeout: sessions without an explicit ``expires_at`` expire after this much
        inactivity (``None``: never); from one second to ten years, so that an expiry
        computed from any accepted time stays within the range the database stores.
    :param completion_grace: node, message, variables (and LLM/tool call) reports of a
        ``completed`` session stamped at most this long after its completion are stored
        in order (the final node or goodbye message of the turn that completed it)
        instead of being dropped as late; from zero (no window) to one hour. Status
        changes after the end, and anything after a stop or an expiry, stay late.
    :param commit_delay: the writer starts batches this many seconds apart at the most
        (default 0.05); what is reported meanwhile joins the next batch. An engine that
        reports a few events per step then pays for one commit per delay instead of one
        per step (a small commit costs far more than the reports in it). Live events are
        published up to this much later; :meth:`flush` and :meth:`stop` never wait for
        it, and under a heavy load a commit lasts longer than the delay, so the writer
        does not wait there. ``0`` commits every burst at once.
    :param sweep_interval: seconds between sweeps for overdue sessions (``None``: no sweeper
        in this process).
    :param max_batch: reports per transaction at the most (default 50,000, or
        ``max_buffered`` if smaller). The writer takes what is buffered, so batches are
        this large only while reports arrive faster than the database absorbs them; there,
        large batches cost less per report. A smaller value holds the database's write lock
        for less time at once.
    :param max_buffered: reports accepted and not yet committed, at the most, from every
        thread together.
    :param high_water: above this many buffered reports, :meth:`drain` makes the engine
        wait until the writer has brought the buffer down to a quarter of it (default:
        half of ``max_buffered``).
    :param overflow: past ``max_buffered``, ``"raise"`` raises :class:`BufferFull` at the
        call site (in the calling thread); ``"drop"`` drops the report, counts it and logs
        a warning.
    :param migrate: upgrade the tables at start (default: on SQLite yes, on PostgreSQL only
        check the revision).
    :param poll_interval: seconds between checks for events other processes committed
        (PostgreSQL also wakes on NOTIFY at once).
    :param shutdown_timeout: how long closing waits, at the most, for what was accepted to
        be committed and published.
    :param max_committed_queue: events waiting for ``sessiontrack_events_committed`` at the
        most; when full, the writer waits for the hook (see docs/durability.md).
    :param analytics: keep the flow analytics rollups up to date as batches commit (in
        the same transaction). ``False`` skips that work: ``tracker.analytics`` then
        answers from what is already there, and ``sessiontrack analytics rebuild``
        builds the rollups from the log later. With a :class:`~sessiontrack.abc.Store`
        passed in, ``False`` sets the store's ``analytics`` attribute if it has one.
    :param redact: redactors run over what the hooks report before it is buffered, so
        nothing they remove is stored, published or logged: the built-ins of
        :mod:`sessiontrack.redact` (``redact.PHONE``, ``redact.EMAIL``, ``redact.CARD``,
        ``redact.IBAN``, ``redact.ALL``, ``redact.variables(...)``,
        ``redact.contact(...)``) and callables ``str -> str``, applied in this order
        (see docs/privacy.md). Anything else raises ``TypeError`` here.
    :param retention: how long terminal sessions are kept after they ended, per chatbot
        id, ``"*"`` standing for every chatbot without a key of its own (without ``"*"``
        those are kept): ``{"*": timedelta(days=90), "support": timedelta(days=30)}``.
        The sweeper purges what is past it every ``sweep_interval`` seconds, with the
        sessions' events, search entries and analytics traces (the rollups keep counting
        them), and logs what it purged; :meth:`apply_retention` does it at once. A key
        that is not a chatbot id, or a period that is not a ``timedelta`` longer than
        ``completion_grace`` and at most 100 years, raises here.
    :param consumers: durable consumers of the committed log to run while the tracker
        runs (:class:`sessiontrack.consumer.ConsumerGroup`, e.g.
        ``sessiontrack.notify.Webhooks()``): each group in a task of its own, woken as
        batches are dispatched, in one process at a time across hosts (its lease).
    :param audit_key: the key of the HMAC-SHA256 an erasure's audit record keeps instead
        of the erased phone number or id (at least 16 bytes; a ``str`` is UTF-8 encoded).
        Default: the random key migration 0010 stored in the database, which keeps the
        hash from being reversed by whoever holds the audit rows alone, not by whoever
        holds the whole database; a key kept elsewhere (a secret store) protects against
        that too. Keep it stable: :meth:`audit` finds an erasure by its key's hash.
    :param audit_reads: record each read of a session's detail, messages, fixture or
        export through the web app in the audit table (``action="read"``), besides
        calling ``sessiontrack_session_read`` (which is called either way).
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine | Store = "sqlite+aiosqlite:///sessiontrack.db",
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        prefix: str = DEFAULT_PREFIX,
        idle_timeout: timedelta | None = timedelta(minutes=30),
        completion_grace: timedelta = timedelta(seconds=10),
        commit_delay: float = 0.05,
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
        max_committed_queue: int = DEFAULT_MAX_EVENTS,
        analytics: bool = True,
        redact: Iterable[object] | None = None,
        retention: Mapping[str, timedelta] | None = None,
        consumers: Iterable[ConsumerGroup] = (),
        audit_key: bytes | str | None = None,
        audit_reads: bool = False,
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
        if max_committed_queue < 1:
            raise ValueError("need max_committed_queue >= 1")
        if idle_timeout is not None and not _MIN_IDLE <= idle_timeout <= _MAX_IDLE:
            raise ValueError(f"idle_timeout must be from 1 second to 10 years, got {idle_timeout}")
        if not isinstance(completion_grace, timedelta):
            raise TypeError(
                f"completion_grace must be a timedelta, got {type(completion_grace).__name__}"
            )
        if not timedelta(0) <= completion_grace <= _MAX_GRACE:
            raise ValueError(f"completion_grace must be from 0 to 1 hour, got {completion_grace}")
        if not 0 <= commit_delay <= 1:
            raise ValueError(f"commit_delay must be from 0 to 1 second, got {commit_delay!r}")
        self._redaction = None if redact is None else Redaction(redact)
        rules = {} if retention is None else check_retention(retention, completion_grace)
        self._audit_key = _audit_key(audit_key)
        self.audit_reads = audit_reads
        if isinstance(url_or_engine, Store):
            self.store: Store = url_or_engine
            if not analytics and hasattr(url_or_engine, "analytics"):
                url_or_engine.analytics = False
        else:
            self.store = create_store(url_or_engine, prefix=prefix, analytics=analytics)
        self.stats = TrackerStats()
        self._idle_s = int(idle_timeout.total_seconds()) if idle_timeout is not None else None
        self._grace_s = completion_grace.total_seconds()
        self._commit_delay = commit_delay
        self._sweep_interval = sweep_interval
        self._max_batch = max_batch
        self._high_water = high_water
        self._migrate = migrate
        self._poll_interval = poll_interval
        self._shutdown_timeout = shutdown_timeout
        self._retry = (retry_initial, retry_max)
        self._max_committed_queue = max_committed_queue
        self._intake = Intake(self.stats, max_buffered=max_buffered, overflow=overflow)
        self._enqueue = self._intake.put  # the hook implementations' hand-over
        self._conversations = Conversations(self.stats)
        self._closing = False
        self._stack: AsyncExitStack | None = None
        self._feed = Feed(self.store)
        self._sessions = SessionQueries(self.store)
        self._analytics = Analytics(self.store)
        self._retention = Retention(self.store, rules) if rules else None
        if plugin_manager is None:
            plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        if not hasattr(plugin_manager.hook, "sessiontrack_session_started"):
            plugin_manager.add_hookspecs(hookspecs)
        self.plugin_manager = plugin_manager
        self._host = HostHooks(plugin_manager, self)
        self._stops = StopRequests(self.store, self._host, self._enqueue, self.flush)
        self._owned = self._stops.owned
        self._feed.add_listener(self._stops.on_event)
        self._writer = self._new_writer()
        self.consumers: tuple[ConsumerGroup, ...] = tuple(consumers)
        """The consumer groups this tracker runs (see :mod:`sessiontrack.consumer`)."""
        for group in self.consumers:
            if not isinstance(group, ConsumerGroup):
                raise TypeError(f"consumers must be ConsumerGroup objects, got {group!r}")
            self._feed.add_listener(_poker(group))
        plugin_manager.register(self)

    def __repr__(self) -> str:
        return f"Tracker({self.store!r})"

    def __dir__(self) -> list[str]:
        # pluggy's register() lists our attributes with dir(): the moment to learn which
        # managers we are registered on (pluggy has no registration callback)
        host = self.__dict__.get("_host")
        if host is not None:
            host.note_registration()
        return list(super().__dir__())

    def _new_writer(self) -> BatchWriter:
        self._dispatcher = CommittedDispatcher(self._host, max_events=self._max_committed_queue)
        return BatchWriter(
            self.store,
            self._intake,
            self._feed,
            self._dispatcher,
            self.stats,
            max_batch=self._max_batch,
            idle_timeout_s=self._idle_s,
            retry=self._retry,
            on_result=self._stops.settle,
            completion_grace_s=self._grace_s,
            commit_delay=self._commit_delay,
        )

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
        """Open the store and start the writer, the dispatcher, the sweeper and the log
        watcher."""
        if self._stack is not None:
            raise RuntimeError("tracker already started")
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.store.close)  # also when opening fails midway
            await self.store.open(migrate=self._migrate)
            await self._feed.start()
            self._writer = self._new_writer()  # its conditions belong to this loop
            self._stops.start()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            self._intake.open()
            stack.callback(self._intake.close, NOT_STARTED)
            tg.start_soon(self._writer.run)
            tg.start_soon(self._dispatcher.run)
            tg.start_soon(self._stops.run)
            tg.start_soon(self._feed.run)
            tg.start_soon(self._watch)
            if self._sweep_interval is not None:
                tg.start_soon(Sweeper(self.store, self._enqueue, self._sweep_interval).run)
                if self._retention is not None:
                    tg.start_soon(self._retention.run, self._sweep_interval)
            for group in self.consumers:
                tg.start_soon(group.run, self.store)
            self._stack = stack.pop_all()
        log.info("sessiontrack tracker started on %r", self.store)

    async def _watch(self) -> None:
        lo, hi = self._retry
        await self.store.watch(
            self._feed.poke, poll_interval=self._poll_interval, retry_initial=lo, retry_max=hi
        )

    async def aclose(self) -> None:
        """Stop accepting reports (hook calls raise :class:`TrackerNotRunning` from now on),
        commit and publish what was accepted, waiting ``shutdown_timeout`` at the most,
        then stop. The log says how many reports were committed while closing and how
        many were not."""
        if self._stack is None or self._closing:
            return
        self._closing = True
        self._intake.close()
        self._writer.hurry.set()
        async with self._writer.progress:
            self._writer.progress.notify_all()  # drain() returns: closing
        committed_before = self.stats.committed
        with anyio.move_on_after(self._shutdown_timeout) as scope:
            await self._writer.done.wait()
            await self._published(self._writer.committed_seq)
        self._log_shutdown(self.stats.committed - committed_before, scope.cancelled_caught)
        self._feed.close()  # iterators end instead of outliving the tracker
        stack, self._stack = self._stack, None
        await stack.aclose()
        self._closing = False

    def _log_shutdown(self, committed: int, timed_out: bool) -> None:
        if not timed_out:
            log.info(
                "sessiontrack tracker stopped: %d reports committed while closing, "
                "0 not committed; %s",
                committed,
                self.stats,
            )
            return
        outage, hooked = self._writer.outage, self._dispatcher.queued_events
        if outage:
            why = f"database unavailable: {outage}"
        elif hooked:
            why = f"sessiontrack_events_committed had not returned for {hooked} events"
        else:
            why = "the writer was still committing"
        log.error(
            "sessiontrack tracker stopped after its shutdown_timeout (%ss): %d reports "
            "committed while closing, %d not committed (%s)",
            self._shutdown_timeout,
            committed,
            self._intake.pending,
            why,
        )

    def _require_running(self) -> None:
        if self._stack is None:
            raise TrackerNotRunning(NOT_STARTED)

    # --- the public API -----------------------------------------------------------------

    @property
    def sessions(self) -> SessionQueries:
        """The query service: ``list``, ``active``, ``completed``, ``get``, ``messages``,
        ``stats``."""
        self._require_running()
        return self._sessions

    @property
    def analytics(self) -> Analytics:
        """Flow analytics per flow version: ``summary``, ``nodes``, ``paths``, ``funnel``,
        ``versions`` (see docs/analytics.md)."""
        self._require_running()
        return self._analytics

    @property
    def published_seq(self) -> int:
        """The sequence number of the last event handed to this process's subscribers."""
        return self._feed.cursor

    @property
    def subscriber_count(self) -> int:
        """Open :meth:`subscribe` iterators in this process (SSE streams, socket pumps)."""
        return self._feed.subscriber_count

    async def flush(self) -> None:
        """Return once everything reported before this call is committed, handed to this
        process's subscribers (a subscription opened afterwards starts after it) and to
        the ``sessiontrack_events_committed`` implementations."""
        self._require_running()
        target = self.stats.enqueued
        writer = self._writer
        writer.flush_target = max(writer.flush_target, target)
        writer.hurry.set()
        async with writer.progress:
            await writer.progress.wait_for(lambda: self.stats.committed >= target)
        await self._published(writer.committed_seq)

    async def _published(self, seq: int) -> None:
        await self._feed.wait_for(seq)
        await self._dispatcher.wait_for(seq)

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
        writer = self._writer
        async with writer.progress:
            await writer.progress.wait_for(lambda: self.stats.buffered <= low or self._closing)

    async def stop(
        self,
        session_id: str,
        principal: Principal | str | None = None,
        *,
        reason: str = "stopped_by_api",
    ) -> None:
        """Stop an active session: it becomes ``stopped`` and the engine's process gets
        ``sessiontrack_stop_requested``. Returns once the stop is committed.

        A session this process reported and the writer has not committed yet is
        committed first (the call flushes), so an engine may stop what it just started.

        :raises SessionNotFound: no such session, or the principal may not see it.
        :raises SessionAlreadyTerminal: the session has already ended, including when it
            ended while the stop was on its way to the database.
        """
        self._require_running()
        await self._stops.stop(session_id, principal, self._redacted_reason(reason, "stop"))

    def _redacted_reason(self, reason: str, call: str) -> str:
        if self._redaction is not None and isinstance(reason, str) and reason:
            return self._redaction.text(reason, "reason", call, REASON)
        return reason

    async def stop_many(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        principal: Principal | str | None = None,
        reason: str = "stopped_by_api",
    ) -> StopManyResult:
        """Stop several sessions: the ones in ``ids``, or the active sessions that match
        ``filter`` (keyword arguments of :meth:`sessions.list
        <sessiontrack.query.SessionQueries.list>`: ``chatbot_id``, ``status``,
        ``search``, ...; at least one). Each is stopped as :meth:`stop` stops one (the
        engine's process gets ``sessiontrack_stop_requested``, the stop records
        ``principal``), and all are committed together; returns once they are.

        At most 1,000 sessions a call. A session the principal may not see is "not
        found", as in :meth:`stop`; a ``filter`` sees only what ``sessions.list`` shows
        the principal (a ``Principal``; an id is recorded only).

        :raises InvalidParameter: both or neither of ``ids`` and ``filter``, an id that is
            not a UUID, more than 1,000 ids or matching sessions, or a filter argument
            ``sessions.list`` refuses (``field`` is ``ids``, ``filter`` or
            ``filter.<argument>``).
        """
        self._require_running()
        if (ids is None) == (filter is None):
            raise InvalidParameter("ids", "give ids or filter: exactly one of them")
        if ids is not None:
            chosen = stop_ids(ids)
        else:
            assert filter is not None
            who = principal if isinstance(principal, Principal) else None
            chosen = await select_active(self._sessions, filter, who)
        reason = self._redacted_reason(reason, "stop_many")
        return await self._stops.stop_many(chosen, principal, reason)

    async def active_session(self, chatbot_id: str, conversation_id: str | int) -> str | None:
        """The id of the conversation's active session, or ``None``: what an adapter asks
        when a message arrives for a conversation it has no session for in memory.

        A session whose start this process reported counts at once, before it is
        committed; one whose completion this process reported does not, even before that
        is committed. Otherwise (another process's sessions, or after a restart) the
        answer comes from the store: the newest active session of the conversation.
        ``conversation_id`` may be an integer, as in ``sessiontrack_session_started``.
        """
        self._require_running()
        h = "active_session"
        cid = _validate.text(chatbot_id, "chatbot_id", h, CHATBOT_ID)
        conv = _validate.opt_text(conversation_id, "conversation_id", h, CONVERSATION_ID, ints=True)
        if cid is None or conv is None:
            raise TypeError(f"{h}(): conversation_id must be a string or an integer, got None")
        pending = self._conversations.pending_start(cid, conv)
        if pending is not None:
            return pending
        before = self.stats.committed
        stored = await self.store.active_sessions(cid, conv)
        for sid in stored:
            if self._conversations.ending(sid):
                continue
            if self.stats.committed != before:
                # A batch committed while the store was read: maybe this session's
                # completion, no longer noted here. Read the session again, after it.
                head = await self.store.session_head(sid)
                if head is None or head[1] in TERMINAL_STATUSES:
                    continue
                if self._conversations.ending(sid):
                    continue
            return sid
        return None

    async def erase(
        self,
        *,
        phone: str | None = None,
        conversation_id: str | None = None,
        session_id: str | None = None,
        principal: Principal | str | None = None,
        scrub: bool = True,
        batch_size: int = 500,
    ) -> ErasureResult:
        """Remove every stored trace of one person: the sessions of this phone number
        (the contact's phone, or a conversation keyed by it), conversation or session,
        with their events, messages, tags, search index entries and analytics traces;
        the analytics rollups are recomputed without them. Give exactly one key.

        Everything reported before the call is committed first; the erasure then runs
        in transactions of ``batch_size`` sessions under the writer's lock. A
        :class:`Principal` erases within its chatbots only, and needs ``can_erase``; a
        ``str`` is recorded only. The audit keeps who, when, the key's kind and its
        HMAC (see ``audit_key``) and the counts, never the key. ``scrub`` (default)
        then rewrites what held the rows so the bytes are gone from the files too:
        SQLite ``VACUUM``, PostgreSQL ``VACUUM FULL`` of the touched tables, both
        locking them meanwhile (docs/privacy.md gives the cost and what stays).

        :raises InvalidParameter: not exactly one key, or one that is blank or too long
            (``field`` names it), or a malformed session id.
        :raises ErasureNotAllowed: a principal without ``can_erase``.
        """
        self._require_running()
        kind, value = erasure_key(
            phone=phone, conversation_id=conversation_id, session_id=session_id
        )
        who, scope = _who(principal)
        if isinstance(principal, Principal) and not principal.can_erase:
            raise ErasureNotAllowed(principal.id)
        await self.flush()
        counts = await self.store.erase(
            kind,
            value,
            chatbot_ids=scope,
            principal=who,
            audit_key=self._audit_key,
            batch_size=batch_size,
            scrub=scrub,
        )
        return ErasureResult(**counts)

    async def audit(
        self,
        *,
        action: Literal["erase", "read"] | None = None,
        phone: str | None = None,
        conversation_id: str | None = None,
        session_id: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The audit records, newest first: erasures (``action="erase"``) and recorded
        reads (``"read"``, see ``audit_reads``). A ``phone`` or ``conversation_id``
        finds the erasures of that key (by its hash); a ``session_id`` the reads of that
        session and its erasure by id. ``before`` (an id) pages back; ``limit`` 1-1000."""
        self._require_running()
        if action not in (None, "erase", "read"):
            raise InvalidParameter("action", "must be erase or read")
        if not 1 <= limit <= 1000:
            raise InvalidParameter("limit", "must be from 1 to 1000")
        keys = {k: v for k, v in (("phone", phone), ("conversation_id", conversation_id)) if v}
        if len(keys) > 1:
            raise InvalidParameter("phone", "give at most one of phone and conversation_id")
        digest = None
        if keys:
            ((kind, value),) = keys.items()
            digest = await self.store.audit_hash(kind, value, self._audit_key)
        sid = None
        if session_id is not None:
            sid = erasure_key(session_id=session_id)[1]
        records = await self.store.audit_records(
            action=action, key_hash=digest, session_id=sid, before=before, limit=limit
        )
        if sid is not None:
            by_id = await self.store.audit_records(
                action="erase",
                key_hash=await self.store.audit_hash("session_id", sid, self._audit_key),
                before=before,
                limit=limit,
            )
            records = sorted({r.id: r for r in [*records, *by_id]}.values(), key=lambda r: -r.id)
            records = records[:limit]
        return records

    async def session_read(
        self, session_ids: list[str], principal: Principal | str | None, what: str
    ) -> None:
        """Note reads of sessions (``what``: ``detail``, ``messages``, ``fixture`` or
        ``export``): ``sessiontrack_session_read`` for each, and with ``audit_reads`` an
        audit row each, in one transaction. The web app calls it after every such read."""
        who = principal.id if isinstance(principal, Principal) else principal
        for sid in session_ids:
            await self.call_hook(
                "sessiontrack_session_read", session_id=sid, principal=who, what=what
            )
        if self.audit_reads and session_ids:
            await self.store.record_reads(list(session_ids), who, what)

    async def purge(self, older_than: timedelta, **kwargs: Any) -> int:
        """Delete sessions that ended more than ``older_than`` ago, with their events."""
        self._require_running()
        return await self.store.purge(datetime.now(UTC) - older_than, **kwargs)

    async def apply_retention(self) -> int:
        """Purge now the terminal sessions past their chatbot's ``retention`` (what the
        sweeper does every ``sweep_interval`` seconds); returns how many were purged
        (0 without ``retention``)."""
        self._require_running()
        if self._retention is None:
            return 0
        return await self._retention.apply()

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

    async def call_hook(self, hook: str, **kwargs: Any) -> None:
        """Call a tracker → host hook on ``plugin_manager`` and on every other manager the
        tracker is registered on, awaiting async implementations; a failing
        implementation is logged, never raised."""
        await self._host.call(hook, **kwargs)


def _poker(group: ConsumerGroup) -> Callable[[object], None]:
    def poke(_event: object) -> None:
        group.poke()

    return poke


def _audit_key(key: bytes | str | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes):
        raise TypeError(f"audit_key must be bytes or str, got {type(key).__name__}")
    if len(key) < 16:
        raise ValueError("audit_key must be at least 16 bytes")
    return key


def _who(principal: Principal | str | None) -> tuple[str | None, frozenset[str] | None]:
    if isinstance(principal, Principal):
        return principal.id, principal.chatbot_ids
    return principal, None


__all__ = ["REQUIRED", "Tracker", "TrackerOptions", "TrackerStats"]
