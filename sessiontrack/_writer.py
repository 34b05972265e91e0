"""The batch writer: buffer → one transaction → publication.

It takes what the intake holds (up to ``max_batch`` reports), applies it to the store in
one transaction, retrying with backoff while the store says the database is unreachable,
and isolates a report the database refuses by bisecting the batch. After each commit it
hands the events to the feed (under the feed's commit lock, so a wake-up for this very
batch is not read back) and then, outside that lock, to the ``events_committed``
dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio

from ._dispatch import CommittedDispatcher
from ._intake import Intake
from ._stats import TrackerStats
from .abc import Feed, Store
from .store._fold import Dropped, FoldResult, Report

log = logging.getLogger(__name__)
_NAMED = 10  # dropped reports named in one batch's warning, at the most


class BatchWriter:
    """Commits the intake's reports, one batch at a time, in call order."""

    def __init__(
        self,
        store: Store,
        intake: Intake,
        feed: Feed,
        dispatcher: CommittedDispatcher,
        stats: TrackerStats,
        *,
        max_batch: int,
        idle_timeout_s: int | None,
        retry: tuple[float, float],
        on_result: Callable[[FoldResult], None] = lambda _res: None,
    ) -> None:
        self._store = store
        self._intake = intake
        self._feed = feed
        self._dispatcher = dispatcher
        self.stats = stats
        self.max_batch = max_batch
        self._idle_s = idle_timeout_s
        self._retry = retry
        self._on_result = on_result
        self.committed_seq = 0  # the last sequence number this writer committed
        self.outage: str | None = None  # why the last attempt failed, while it is retried
        self.progress = asyncio.Condition()
        self.done = anyio.Event()

    async def run(self) -> None:
        """Commit until the intake is closed and empty."""
        intake = self._intake
        try:
            while True:
                batch = intake.take(self.max_batch)
                if not batch:
                    if intake.closed:
                        return
                    intake.wake.clear()
                    await intake.wake.wait()
                    continue
                try:
                    async with self._feed.committing():
                        res = await self._commit(batch)
                    if res is not None:
                        await self._dispatcher.put(res.events)
                finally:
                    intake.done(len(batch))
                self.stats.committed += len(batch)
                async with self.progress:
                    self.progress.notify_all()
        finally:
            self.done.set()

    async def _commit(self, batch: list[Report]) -> FoldResult | None:
        """Commit ``batch``, retrying while the database is unreachable; a report the
        database rejects for itself is isolated by bisection, logged and counted. Returns
        the combined result of what committed."""
        delay, max_delay = self._retry
        while True:
            try:
                res = await self._store.apply(batch, idle_timeout_s=self._idle_s)
            except Exception as exc:
                if self._store.is_transient(exc):
                    self.outage = type(exc).__name__
                    self.stats.retries += 1
                    log.warning(
                        "sessiontrack: database unavailable (%s); %d reports buffered, "
                        "retrying in %.2fs",
                        type(exc).__name__,
                        self._intake.pending,
                        delay,
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, max_delay)
                    continue
                self.outage = None
                if len(batch) == 1:
                    self.stats.failed += 1
                    log.error(
                        "sessiontrack: the database rejected a report, dropped: %r",
                        batch[0],
                        exc_info=True,
                    )
                    return None
                half = len(batch) // 2
                first = await self._commit(batch[:half])
                second = await self._commit(batch[half:])
                if first is None or second is None:
                    return first or second
                first.events.extend(second.events)
                return first
            self.outage = None
            self._committed(res)
            return res

    def _committed(self, res: FoldResult) -> None:
        s = self.stats
        s.batches += 1
        s.events_stored += len(res.events)
        if res.duplicates or res.orphans or res.late:
            s.duplicates += res.duplicates
            s.orphans += res.orphans
            s.late += res.late
            log.warning(
                "sessiontrack: ignored %d duplicate, %d orphan (session never started) "
                "and %d late (session already ended) reports%s",
                res.duplicates,
                res.orphans,
                res.late,
                _named(res.dropped),
            )
        self._on_result(res)
        if res.events:
            self.committed_seq = res.last_seq
            self._feed.deliver(res.events)


def _named(dropped: list[Dropped]) -> str:
    if not dropped:
        return ""
    parts = [
        f"{d.reason} {d.hook} for session {d.session_id}"
        + (f" (already {d.status})" if d.reason == "late" else "")
        for d in dropped[:_NAMED]
    ]
    more = len(dropped) - _NAMED
    return ": " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
