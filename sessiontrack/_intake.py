"""The intake: the bounded buffer between the hook calls and the writer.

Hook calls may come from the tracker's event loop or from any other thread. Capacity is
reserved under one lock in the calling thread, so ``BufferFull`` (and
``TrackerNotRunning`` once closing has begun) is raised there, to the caller, and a
report that got past the lock is in the buffer: the writer will see it. A thread other
than the loop's wakes the writer through ``call_soon_threadsafe``, once per burst.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from threading import get_ident

from ._stats import TrackerStats
from .errors import BufferFull, TrackerNotRunning
from .store._fold import Report

log = logging.getLogger(__name__)

NOT_STARTED = (
    "the tracker is not running: enter it with `async with tracker:` (or await "
    "tracker.start()) first; a mounted sub-app gets no lifespan events, so the "
    "host's own lifespan must do this"
)
CLOSING = (
    "the tracker is closing: it accepts no more reports (report before leaving "
    "`async with tracker:`, or stop the engine first)"
)


class Intake:
    """Reports accepted and not yet taken by the writer, at most ``max_buffered`` of them
    counting those the writer is committing."""

    def __init__(self, stats: TrackerStats, *, max_buffered: int, overflow: str) -> None:
        self.stats = stats
        self.max_buffered = max_buffered
        self.overflow = overflow
        self._lock = threading.Lock()
        self._buffer: deque[Report] = deque()
        self._in_flight = 0
        self._refusal: str | None = NOT_STARTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._remote_wake = False
        self.wake = asyncio.Event()

    def open(self) -> None:
        """Accept reports; the writer runs on the current event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = get_ident()
        self.wake = asyncio.Event()
        with self._lock:
            self._refusal = None
            self._remote_wake = False

    def close(self, refusal: str = CLOSING) -> None:
        """Refuse every report from now on (with ``TrackerNotRunning``); those accepted
        before stay for the writer."""
        with self._lock:
            self._refusal = refusal
        self.wake.set()

    @property
    def closed(self) -> bool:
        return self._refusal is not None

    @property
    def waiting(self) -> int:
        """Reports buffered and not yet taken by the writer."""
        return len(self._buffer)

    @property
    def pending(self) -> int:
        """Reports accepted and not yet committed (buffered plus in flight)."""
        return len(self._buffer) + self._in_flight

    def put(self, report: Report) -> None:
        """Accept ``report`` or raise, in the calling thread (the hook implementations'
        hand-over; the engine's hot path)."""
        on_loop = get_ident() == self._loop_thread
        schedule = False
        with self._lock:
            if self._refusal is not None:
                raise TrackerNotRunning(self._refusal)
            if len(self._buffer) + self._in_flight >= self.max_buffered:
                self.stats.dropped_overflow += 1
                dropped = self.stats.dropped_overflow
            else:
                self._buffer.append(report)
                self.stats.enqueued += 1
                dropped = 0
                if not on_loop and not self._remote_wake:
                    self._remote_wake = schedule = True
        if dropped:
            self._overflowed(dropped)
        elif on_loop:
            if not self.wake.is_set():
                self.wake.set()
        elif schedule:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._woken)
            except RuntimeError:  # the loop is gone: the tracker was never closed
                raise TrackerNotRunning(NOT_STARTED) from None

    def _woken(self) -> None:
        with self._lock:
            self._remote_wake = False
        self.wake.set()

    def _overflowed(self, dropped: int) -> None:
        if self.overflow == "raise":
            raise BufferFull(self.max_buffered)
        if dropped in (1, 10, 100) or not dropped % 1000:
            log.warning("sessiontrack buffer full: %d reports dropped so far", dropped)

    def take(self, limit: int) -> list[Report]:
        """Up to ``limit`` reports from the head, in call order; they still count against
        the bound until :meth:`done`."""
        with self._lock:
            n = min(len(self._buffer), limit)
            popleft = self._buffer.popleft
            batch = [popleft() for _ in range(n)]
            self._in_flight += n
        return batch

    def done(self, n: int) -> None:
        """``n`` taken reports are committed (or given up): their room is free again."""
        with self._lock:
            self._in_flight -= n
