"""The interfaces the tracker, the query service and the live feed are written against.

As in APScheduler 4's ``abc.py``: abstract classes whose method docstrings are the
contract (what is returned, in which order, what is raised). The tracker and its parts
take these types, never a concrete backend, and never import a database driver; the one
backend today is :class:`sessiontrack.store.SQLAlchemyStore` (SQLite and PostgreSQL).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type-only: importing the store package would import SQLAlchemy
    from .events import StoredEvent
    from .models import AuditRecord, Message, SessionDetail, SessionSummary, Stats
    from .store._fold import FoldResult, Report
    from .store._reads import SessionFilter
    from .store._search import MessageHit
    from .store._transfer import ExportOrder, FullSession, SummaryRow

__all__ = ["BatchAttempt", "Feed", "Lease", "Span", "Store", "Subscription"]

Span = tuple[int, int, int]
"""``(grain, first_bucket, end_bucket)``: the rollup rows of one grain (0 quarter-hours,
1 UTC days) whose bucket (epoch seconds) is in ``[first_bucket, end_bucket)``."""


@dataclass
class BatchAttempt:
    """One :meth:`Store.apply` of a batch by one writer, named so that it can be asked
    about after the connection failed while it was committing.

    ``number`` grows with every attempt of the writer ``writer_id`` (retries included), so
    a store that records the last number it committed for a writer can tell whether *this*
    attempt committed. ``result`` is set by the store once the batch is folded and its
    transaction is about to commit; while it is ``None`` nothing was committed.
    """

    writer_id: str
    number: int
    result: FoldResult | None = None


class Lease(metaclass=ABCMeta):
    """The right of one process, among every process sharing a store, to run a named
    group of log consumers (see :meth:`Store.acquire_lease`)."""

    @abstractmethod
    async def alive(self) -> bool:
        """Whether the lease is still held (PostgreSQL: its connection still answers).
        ``False`` means it is lost: stop delivering and acquire it again."""

    @abstractmethod
    async def release(self) -> None:
        """Give the lease up (another process may take it at once); never raises."""


class Store(metaclass=ABCMeta):
    """Where reports become events: an append-only log plus the session projection.

    Sequence numbers start at 1, have no gaps within one store and grow in commit order
    across every process writing to it: a reader that has seen ``seq`` N never later finds
    a smaller one appear. Every method may raise the backend's own errors; the tracker
    asks :meth:`is_transient` which of them mean "not now" (retry) rather than "not this".
    """

    @property
    @abstractmethod
    def dialect(self) -> str:
        """The backend's name (``"sqlite"``, ``"postgresql"``); only for messages and
        tests, never to choose behaviour outside the store."""

    @abstractmethod
    async def open(self, *, migrate: bool | None = None) -> None:
        """Connect and make sure the schema is current (``migrate=None``: the backend's
        default). :raises SchemaOutdated: the schema is behind and ``migrate`` is false."""

    @abstractmethod
    async def close(self) -> None:
        """Release what :meth:`open` acquired; never closes a resource the caller passed
        in (an existing engine)."""

    # --- writing ------------------------------------------------------------------------

    @abstractmethod
    async def apply(
        self,
        reports: Sequence[Report],
        *,
        idle_timeout_s: int | None,
        attempt: BatchAttempt | None = None,
        completion_grace_s: float = 0.0,
    ) -> FoldResult:
        """Fold ``reports`` into the log and the projection in **one** transaction.

        ``completion_grace_s`` is the completion grace window of the fold (see
        :mod:`sessiontrack.store._fold`). Observed edges are added to the stored graph of
        their flow version in the same transaction.

        Either everything commits (the result lists the appended events, in sequence
        order, and every report it dropped as a duplicate, orphan or late report) or
        nothing does and the backend's error is raised. The same batch may be applied
        again after a failure: it must fold to the same result. After the commit,
        every other process watching the store (:meth:`watch`) is woken.

        With ``attempt``, the transaction also records ``attempt.number`` as the last
        attempt of ``attempt.writer_id`` to commit (one small statement), and
        ``attempt.result`` is set just before the commit is sent. An error raised after
        that may have come after the commit took effect (the connection broke before the
        answer arrived): ask :meth:`attempt_committed` before applying the batch again.
        """

    @abstractmethod
    async def attempt_committed(self, attempt: BatchAttempt) -> bool:
        """Whether ``attempt`` committed: call it after :meth:`apply` raised with
        ``attempt.result`` set, before the batch is applied again.

        It waits for the log's write lock, so a transaction of that attempt still
        running in the database (its connection broken, the server not yet aware) has
        committed or rolled back by the time it answers; the answer is final. ``True``:
        the batch is stored, ``attempt.result`` is its result, and the store has done
        what it does after a commit. ``False``: nothing of it was stored. May raise the
        backend's errors (ask :meth:`is_transient`); asking again is safe.
        """

    @abstractmethod
    async def forget_writer(self, writer_id: str) -> None:
        """Delete what :meth:`apply` recorded for ``writer_id``: call it once that writer
        has stopped for good (a writer that never comes back leaves one small row, which
        nothing reads but :meth:`attempt_committed`)."""

    @abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised by a method of this store, means the database is not
        reachable now (worth retrying the same work later) rather than refusing this work
        for what it contains."""

    @abstractmethod
    async def watch(
        self,
        wake: Callable[[int | None], None],
        *,
        poll_interval: float,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        """Call ``wake(seq)`` whenever the log may hold events committed elsewhere, up to
        ``seq`` when known (``None``: read to find out). Runs until cancelled, never
        returns and never raises: transient errors are retried with backoff from
        ``retry_initial`` to ``retry_max`` seconds, others are logged and retried too.
        A wake-up may be spurious or may repeat; the reader decides by sequence number.
        ``poll_interval`` is the longest a commit elsewhere may go unnoticed where the
        backend cannot push (SQLite)."""

    # --- the log ------------------------------------------------------------------------

    @abstractmethod
    async def events_after(
        self,
        after: int,
        *,
        limit: int = 1000,
        session_id: str | None = None,
        until: int | None = None,
    ) -> list[StoredEvent]:
        """Committed events with ``after < seq <= until`` (of one session, if given),
        oldest first, at most ``limit``."""

    @abstractmethod
    async def last_seq(self) -> int:
        """The newest committed sequence number (0 for an empty log)."""

    # --- durable consumers (sessiontrack/consumer.py, docs/notifications.md) ------------
    @abstractmethod
    async def read_cursor(self, name: str) -> int | None:
        """The sequence number stored under cursor ``name``, or ``None`` if it has none."""

    @abstractmethod
    async def create_cursor(self, name: str, seq: int | None = None) -> int:
        """Create cursor ``name`` at ``seq`` (``None``: the log's head, read in the same
        transaction) unless it exists; returns the cursor's stored value either way."""

    @abstractmethod
    async def advance_cursor(self, name: str, seq: int) -> bool:
        """Move cursor ``name`` forward to ``seq`` (never back: a smaller value leaves it
        as it is). Returns ``False`` if the cursor no longer exists (deleted meanwhile)."""

    @abstractmethod
    async def delete_cursor(self, name: str) -> None:
        """Delete cursor ``name`` (nothing happens if there is none)."""

    @abstractmethod
    async def cursors(self, prefix: str = "") -> dict[str, int]:
        """Every cursor whose name starts with ``prefix``: ``{name: seq}``."""

    @abstractmethod
    async def acquire_lease(self, name: str) -> Lease | None:
        """Try to take lease ``name`` without waiting: the lease, or ``None`` while
        another process (or another consumer group of this one) holds it. A lease held
        by a process that dies is released by the database or the kernel, at once."""

    # --- sessions -----------------------------------------------------------------------

    @abstractmethod
    async def session_head(self, session_id: str) -> tuple[str, str, str | None] | None:
        """``(chatbot_id, status, conversation_id)`` of a committed session, or ``None``."""

    @abstractmethod
    async def active_sessions(
        self, chatbot_id: str, conversation_id: str, *, limit: int = 10
    ) -> list[str]:
        """Ids of the committed sessions of this chatbot and conversation that have not
        ended, newest (by start time) first, at most ``limit``."""

    @abstractmethod
    async def overdue_sessions(self, now: datetime, limit: int = 1000) -> list[str]:
        """Ids of active sessions whose ``expires_at`` is before ``now``, soonest first."""

    @abstractmethod
    async def purge(
        self,
        cutoff: datetime,
        *,
        batch_size: int = 1000,
        progress: Callable[[int], None] | None = None,
        chatbot_ids: Collection[str] | None = None,
        exclude_chatbot_ids: Collection[str] = (),
        ids: Collection[str] | None = None,
    ) -> int:
        """Delete terminal sessions completed before ``cutoff``, with their events, in
        transactions of ``batch_size`` sessions; returns how many were deleted. Active
        sessions are never deleted. ``chatbot_ids`` limits the purge to those chatbots,
        ``exclude_chatbot_ids`` spares those, ``ids`` limits it to these sessions (an id
        not stored, or not matching the rest, is passed over)."""

    @abstractmethod
    async def list_sessions(
        self,
        f: SessionFilter,
        *,
        sort_by: str,
        descending: bool,
        limit: int,
        offset: int,
        after: tuple[datetime, str] | None,
    ) -> tuple[list[SessionSummary], int, bool]:
        """One page (``limit`` rows after ``offset``, or after the keyset ``after``), the
        total matching, and whether more rows follow."""

    @abstractmethod
    async def get_session(
        self, session_id: str, *, message_limit: int, call_limit: int | None = None
    ) -> SessionDetail | None:
        """A session with its node executions, its newest ``message_limit`` messages, its
        newest ``call_limit`` LLM and tool calls of each kind (``None``: all; the totals
        count every call) and the flow graph of the version it ran, or ``None``."""

    @abstractmethod
    async def messages(
        self, session_id: str, conversation_id: str | None, *, limit: int | None, before: int | None
    ) -> list[Message]:
        """A session's messages, oldest first; ``limit`` and ``before`` (a message id)
        page backwards from the newest."""

    @abstractmethod
    async def search_messages(
        self,
        words: list[str],
        *,
        chatbot_ids: frozenset[str] | None,
        limit: int,
        before: int | None,
    ) -> list[MessageHit]:
        """Messages whose text has every one of ``words`` (case-folded; each begins a
        word of the text), newest first (by sequence number), at most ``limit``, only
        those older than the message ``before`` if given, of these chatbots if given."""

    @abstractmethod
    async def stats(self, *, chatbot_ids: frozenset[str] | None, since: datetime) -> Stats:
        """Counts by status (of these chatbots, or all) and completions since ``since``."""

    @abstractmethod
    async def chatbots(self) -> list[dict[str, Any]]:
        """Every registered chatbot: ``{chatbot_id, name, current_version, updated_at}``,
        by name."""

    # --- export and import (sessiontrack export / import; docs/export.md) ---------------

    @abstractmethod
    def iter_summaries(
        self, f: SessionFilter, order: ExportOrder, *, batch_size: int = 1000
    ) -> AsyncIterator[list[SummaryRow]]:
        """Every session matching ``f`` as list items, in ``order`` (the sort column, then
        id), in batches of up to ``batch_size``: tuples of the fields of
        :class:`~sessiontrack.models.SessionSummary` in their order. Each batch is a keyset
        query on a connection of its own: memory and the cost of a batch do not grow with
        the export. A session whose sort value changes while the export runs may be missed or
        appear twice (``started_at`` never changes)."""

    @abstractmethod
    def iter_details(
        self, f: SessionFilter, order: ExportOrder, *, batch_size: int = 200
    ) -> AsyncIterator[list[FullSession]]:
        """Like :meth:`iter_summaries`, each session with its whole detail (every message,
        node execution, LLM and tool call, the flow graph) and its node executions'
        sequence numbers."""

    @abstractmethod
    async def is_empty(self) -> bool:
        """Whether no session and no event is stored (an import needs an empty store)."""

    @abstractmethod
    async def import_sessions(
        self, sessions: Sequence[FullSession], chatbots: Sequence[dict[str, Any]]
    ) -> None:
        """Write whole sessions (as :meth:`iter_details` read them) in one transaction, under
        their own sequence numbers, so that :meth:`get_session` returns the same details;
        ``chatbots`` (``chatbot_id, name, current_version, updated_at, flows``) are added
        where missing.

        :raises sessiontrack.store.NotEmpty: if one of the sessions is stored already.
        """

    # --- analytics (the rollups of sessiontrack.analytics; docs/analytics.md) -----------

    @abstractmethod
    async def flow_versions(
        self, chatbot_id: str
    ) -> tuple[str | None, list[tuple[str, datetime]]] | None:
        """The chatbot's current version and every registered ``(version, registered_at)``,
        newest first; ``(None, [])`` for a chatbot that registered no flow but has sessions
        (or rollup rows); ``None`` when no chatbot has this id."""

    @abstractmethod
    async def flow_graphs(
        self, chatbot_id: str, versions: Collection[str] | None
    ) -> list[tuple[str, datetime, dict[str, Any]]]:
        """``(version, registered_at, flow)`` of these registered versions (``None``:
        all), newest first."""

    @abstractmethod
    async def analytics_counts(
        self,
        chatbot_id: str,
        *,
        metrics: Collection[str],
        spans: Sequence[Span],
        versions: Collection[str] | None,
        dims: Collection[str] | None = None,
        by_version: bool = False,
        local_days: Sequence[tuple[int, int]] | None = None,
        top: int | None = None,
    ) -> list[tuple[str, str | None, str, int | None, float]]:
        """Sums of the additive rollup ``an_counts`` over ``spans``, as rows
        ``(metric, version, dim, day, value)`` in no particular order.

        Only the rows of these ``metrics``, ``versions`` (``None``: every version) and
        ``dims`` (``None``: every dim) are summed. ``version`` is ``None`` unless
        ``by_version``. ``day`` is ``None`` unless ``local_days`` is given: then rows are
        summed by local day, the number of days since 1970-01-01 of ``bucket + offset``,
        where ``local_days`` lists ``(from_bucket, offset_seconds)`` in bucket order (the
        first applies to every earlier bucket too). ``top`` (one metric only): just the
        dims whose sum ranks within the ``top`` largest, ties included."""

    @abstractmethod
    async def analytics_bins(
        self,
        chatbot_id: str,
        *,
        metrics: Collection[str],
        spans: Sequence[Span],
        versions: Collection[str] | None,
        dims: Collection[str] | None = None,
    ) -> list[tuple[str, str, int, int]]:
        """Sums of the sketch counts ``an_bins`` over ``spans`` as rows ``(metric, dim,
        bin, n)``, filtered as in :meth:`analytics_counts`; rows with ``n`` 0 left out."""

    @abstractmethod
    async def analytics_paths(self, chatbot_id: str, keys: Collection[str]) -> dict[str, list[str]]:
        """The node ids of each of these path keys (unknown keys are left out)."""

    @abstractmethod
    async def analytics_step_times(
        self,
        chatbot_id: str,
        *,
        versions: Collection[str] | None,
        start: datetime,
        end: datetime,
        positions: Mapping[str, Sequence[int]],
        sample: int | None = None,
    ) -> list[tuple[float | None, int]]:
        """Median times between funnel steps, from the per-session traces.

        ``positions`` maps a path key to the indexes (in its path) of the executions
        matched by steps 1, 2, ... (as many as it reached). For the sessions started in
        ``[start, end)`` whose current path key is one of them, step ``i``'s time is
        ``t[pos_i] - t[pos_(i-1)]`` ms (step 1: ``t[pos_1]``, from the session's start);
        the answer lists, per step, the nearest-rank median of those times (the
        ``ceil(n/2)``-th smallest, exact, in ms; ``None`` when no session reached it) and
        how many sessions it is the median of. With ``sample``, only the ``sample``
        sessions started last (of those on the matched paths) are read."""

    # --- erasure and the audit (docs/privacy.md) ---------------------------------------

    @abstractmethod
    async def erase(
        self,
        kind: str,
        value: str,
        *,
        chatbot_ids: frozenset[str] | None = None,
        principal: str | None = None,
        audit_key: bytes | None = None,
        batch_size: int = 500,
        scrub: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Delete the sessions whose ``kind`` (``phone``: the contact's phone or the
        conversation id; ``conversation_id``; ``session_id``) is ``value``, of
        ``chatbot_ids`` only if given, with everything they left: events, tags, search
        entries, analytics traces, their share of the status counts and of the analytics
        rollups. Transactions of ``batch_size`` sessions, each under the log's write
        lock; ``progress`` gets the running number of sessions. An audit row (who, when,
        ``kind``, the HMAC-SHA256 of the key with ``audit_key`` or the database's key) is
        written before and gets the counts after. ``scrub`` then makes the freed bytes
        unreadable (rewriting the touched tables: see docs/privacy.md for the cost).
        Returns ``sessions``, ``events``, ``messages``, ``tags``, ``analytics_traces``,
        ``audit_id`` and ``scrubbed`` (whether the scrub ran and nothing older than the
        erasure kept a snapshot open meanwhile)."""

    @abstractmethod
    async def audit_hash(self, kind: str, value: str, key: bytes | None = None) -> str:
        """The hash an erasure of ``value`` by ``kind`` records (hex HMAC-SHA256 with
        ``key``, or else the database's audit key)."""

    @abstractmethod
    async def record_reads(self, session_ids: list[str], principal: str | None, what: str) -> None:
        """Write an audit row (``action='read'``) for each session read."""

    @abstractmethod
    async def audit_records(
        self,
        *,
        action: str | None = None,
        key_hash: str | None = None,
        session_id: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Audit rows, newest first, with ``id`` below ``before`` if given."""


class Subscription(metaclass=ABCMeta):
    """An async iterator of committed events, in strictly increasing sequence order.

    It never yields an event before its transaction committed and never yields one twice.
    A subscriber that falls behind does not make the process hold more than a bounded
    number of events for it: it catches up from the log by sequence number. Iteration ends
    when the feed closes, after what was committed before the close has been yielded.
    """

    last_seq: int
    """The sequence number of the last event yielded (where a resume would start)."""

    def __aiter__(self) -> Subscription:
        return self

    @abstractmethod
    async def __anext__(self) -> StoredEvent:
        """The next event; waits for one. :raises StopAsyncIteration: the feed closed."""

    @abstractmethod
    def get_nowait(self) -> StoredEvent | None:
        """The next event if one is already held in memory, else ``None``; never waits."""


class Feed(metaclass=ABCMeta):
    """Hands committed events to in-process subscribers, in sequence order, exactly once.

    The local writer hands over each batch it committed (:meth:`deliver`); commits of
    other processes arrive as wake-ups (:meth:`poke`) and are read from the log. Either
    way every event reaches every subscriber, in order, after its commit.
    """

    cursor: int
    """The sequence number of the last event dispatched in this process."""

    @property
    @abstractmethod
    def subscriber_count(self) -> int:
        """Open subscriptions."""

    @abstractmethod
    async def start(self) -> None:
        """Begin at the log's current head (on the running event loop)."""

    @abstractmethod
    async def run(self) -> None:
        """Read and dispatch whatever the wake-ups announce; runs until cancelled."""

    @abstractmethod
    def add_listener(self, listener: Callable[[StoredEvent], None]) -> None:
        """Call ``listener`` synchronously for every dispatched event, before any
        subscriber sees it; a listener that raises is logged and skipped."""

    @abstractmethod
    def committing(self) -> AbstractAsyncContextManager[object]:
        """Held by the local writer from its transaction until it has delivered the batch:
        a wake-up for that very batch (its own NOTIFY, a poll of the log's head) waits for
        the delivery instead of reading the batch back."""

    @abstractmethod
    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Dispatch events this process just committed (in sequence order); if they do not
        follow the cursor, the gap is read from the log first."""

    @abstractmethod
    def poke(self, seq: int | None = None) -> None:
        """The log may hold events past the cursor (up to ``seq``, when known)."""

    @abstractmethod
    async def wait_for(self, seq: int) -> None:
        """Return once every event up to ``seq`` has been dispatched in this process."""

    @abstractmethod
    def close(self) -> None:
        """End every subscription once it has yielded what was dispatched."""

    @abstractmethod
    def subscribe(
        self, *, after: int | None = None, session_id: str | None = None, buffer: int = 1000
    ) -> AbstractAsyncContextManager[Subscription]:
        """A subscription to events after ``after`` (reading the log first) or, without
        it, from the next event dispatched; only those of ``session_id`` if given.
        ``buffer`` bounds the events held in memory for it."""
