"""Delivering committed events to in-process subscribers, in sequence order, exactly once.

The feed keeps a cursor: the last sequence number it dispatched. The local writer hands
over each committed batch; when a batch does not start right after the cursor (another
process committed in between) or a remote wake-up arrives (PostgreSQL NOTIFY, SQLite
polling), the feed reads the missing events from the log instead. Subscribers never see
an event before its transaction committed, and never see one twice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from . import abc
from .events import StoredEvent

log = logging.getLogger(__name__)
_PAGE = 500


class Feed(abc.Feed):
    """The in-process feed of a tracker (see :class:`sessiontrack.abc.Feed`)."""

    def __init__(self, store: abc.Store) -> None:
        self._store = store
        self.cursor = 0
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[StoredEvent], None]] = []
        self._dirty = anyio.Event()
        self._poked_to = 0
        self._poked_blind = False
        self._catching_up = False
        self._waiters: list[tuple[int, anyio.Event]] = []
        self.closed = False
        self.local_commit = anyio.Lock()

    async def start(self) -> None:
        # Events belong to the running loop: a tracker may be started again on another.
        self._dirty = anyio.Event()
        self._poked_to = 0
        self._poked_blind = False
        self._catching_up = False
        self._waiters = []
        self.closed = False
        self.local_commit = anyio.Lock()
        self.cursor = await self._store.last_seq()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def committing(self) -> AbstractAsyncContextManager[object]:
        return self.local_commit

    def add_listener(self, listener: Callable[[StoredEvent], None]) -> None:
        """Call ``listener`` synchronously for every dispatched event (the tracker's own
        bookkeeping: stop requests, owned sessions)."""
        self._listeners.append(listener)

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Dispatch events this process just committed, unless a gap needs reading first."""
        if self._catching_up or not events or events[0].seq != self.cursor + 1:
            if events and events[-1].seq > self.cursor:
                self.poke(events[-1].seq)
            return
        for event in events:
            self._dispatch(event)

    def poke(self, seq: int | None = None) -> None:
        """The log may hold events past the cursor (up to ``seq``, when known): read them.

        The writer of this process holds :attr:`local_commit` from its transaction until
        it has delivered the batch; a wake-up for that very batch (its own NOTIFY, or a
        poll of the log's head) waits for the delivery and then finds nothing to read.
        """
        if seq is None:
            self._poked_blind = True
        elif seq > self._poked_to:
            self._poked_to = seq
        self._dirty.set()

    async def run(self) -> None:
        """Catch up whenever poked (runs for the tracker's lifetime)."""
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            async with self.local_commit:
                pass  # a batch this process is committing is delivered, not read back
            if not self._poked_blind and self._poked_to <= self.cursor:
                continue
            self._poked_blind = False
            self._catching_up = True
            try:
                while True:
                    events = await self._store.events_after(self.cursor, limit=_PAGE)
                    for event in events:
                        if event.seq > self.cursor:
                            self._dispatch(event)
                    if len(events) < _PAGE:
                        break
            except Exception:
                log.exception("reading the event log failed; retrying on the next wake-up")
                await anyio.sleep(0.5)
                self.poke()
            finally:
                self._catching_up = False

    async def wait_for(self, seq: int) -> None:
        """Return once every event up to ``seq`` has been dispatched in this process."""
        if self.cursor >= seq:
            return
        reached = anyio.Event()
        self._waiters.append((seq, reached))
        await reached.wait()

    def _dispatch(self, event: StoredEvent) -> None:
        self.cursor = event.seq
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= event.seq]
            for w in ready:
                self._waiters.remove(w)
                w[1].set()
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on seq %s", event.seq)
        for sub in self._subscriptions:
            sub.offer(event)

    def close(self) -> None:
        """End every subscription once it has delivered what it holds (tracker shutdown)."""
        self.closed = True
        for sub in self._subscriptions:
            sub._wake.set()

    @asynccontextmanager
    async def subscribe(
        self, *, after: int | None = None, session_id: str | None = None, buffer: int = 1000
    ) -> AsyncIterator[Subscription]:
        sub = Subscription(self, after=after, session_id=session_id, buffer=buffer)
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)


class Subscription(abc.Subscription):
    """An async iterator of committed events, in sequence order.

    Starts after ``after`` (reading older events from the log first) or, without it, with
    the next event committed; ends when the tracker closes. It holds at most ``buffer``
    events (or one page of the log, whichever is larger): a consumer that falls further
    behind stops receiving live events, finishes what is queued, then reads the rest from
    the log by sequence number until it is level with the feed again. Nothing is lost or
    repeated and the order is kept; only the queue's memory is bounded.
    """

    def __init__(
        self, feed: Feed, *, after: int | None, session_id: str | None, buffer: int
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer!r}")
        self._feed = feed
        self.session_id = session_id
        self._buffer = buffer
        self.last_seq = feed.cursor if after is None else after
        # Every event up to _queued_to is delivered or in the queue; the log holds the rest.
        self._queued_to = self.last_seq
        self._queue: deque[StoredEvent] = deque()
        self._behind = after is not None and after < feed.cursor
        self._wake = anyio.Event()

    @property
    def behind(self) -> bool:
        """Whether the next events come from the log (the consumer fell behind)."""
        return self._behind

    def offer(self, event: StoredEvent) -> None:
        if self._behind or event.seq <= self._queued_to:
            return
        if self.session_id is not None and event.session_id != self.session_id:
            return
        if len(self._queue) >= self._buffer:
            # Keep what is queued and where it ends: the log read resumes right after it.
            self._behind = True
        else:
            self._queue.append(event)
            self._queued_to = event.seq
        self._wake.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StoredEvent:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._behind:
                await self._read_log()
                continue
            if self._feed.closed:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = anyio.Event()

    def get_nowait(self) -> StoredEvent | None:
        """The next event if one is already queued, else ``None`` (never waits or reads the
        log): lets a consumer take a whole burst in one pass without a cancel scope."""
        while self._queue:
            event = self._queue.popleft()
            if event.seq > self.last_seq:
                self.last_seq = event.seq
                return event
        return None

    async def _read_log(self) -> None:
        until = self._feed.cursor
        events = await self._feed._store.events_after(
            self._queued_to, limit=_PAGE, session_id=self.session_id, until=until
        )
        self._queue.extend(events)
        if events:
            self._queued_to = events[-1].seq
        if len(events) < _PAGE and self._feed.cursor == until:
            # Read up to the feed's cursor, and nothing was dispatched meanwhile: live
            # events take over from here.
            self._queued_to = max(self._queued_to, until)
            self._behind = False
