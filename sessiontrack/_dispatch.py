"""The ``sessiontrack_events_committed`` dispatcher: its own task, its own bounded queue.

The writer hands each committed batch over and goes on to the next transaction; the
dispatcher calls the hook with the batches one at a time, in commit order. At most
``max_events`` events wait in its queue (a batch larger than that is queued alone). When
the queue is full the writer waits for room: a slow hook slows ingestion down, which the
engine sees through ``drain()`` and ``BufferFull``, and no notification is ever dropped.
Nothing is queued while no manager has an implementation.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from ._host import HostHooks
from .events import StoredEvent

HOOK = "sessiontrack_events_committed"
DEFAULT_MAX_EVENTS = 10_000


class CommittedDispatcher:
    """Calls ``sessiontrack_events_committed`` for committed batches, in order."""

    def __init__(self, host: HostHooks, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self._host = host
        self.max_events = max_events
        self._queue: deque[Sequence[StoredEvent]] = deque()
        self._queued_events = 0
        self.done_seq = 0  # every batch up to this sequence number has been dispatched
        self._changed = asyncio.Condition()

    @property
    def queued_events(self) -> int:
        return self._queued_events

    async def put(self, events: Sequence[StoredEvent]) -> None:
        """Queue a committed batch (in sequence order), waiting while the queue is full."""
        if not events:
            return
        async with self._changed:
            if not self._host.implemented(HOOK) and not self._queue:
                self.done_seq = events[-1].seq
                self._changed.notify_all()
                return
            await self._changed.wait_for(
                lambda: not self._queue or self._queued_events + len(events) <= self.max_events
            )
            self._queue.append(events)
            self._queued_events += len(events)
            self._changed.notify_all()

    async def wait_for(self, seq: int) -> None:
        """Return once every batch up to ``seq`` has been given to the hook."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.done_seq >= seq)

    async def run(self) -> None:
        """Dispatch for the tracker's lifetime."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._queue))
                events = self._queue[0]
            await self._host.call(HOOK, events=events)
            async with self._changed:
                self._queue.popleft()
                self._queued_events -= len(events)
                self.done_seq = events[-1].seq
                self._changed.notify_all()
