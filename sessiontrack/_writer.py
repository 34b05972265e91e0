"""The batch writer: buffer → one transaction → publication.

It takes what the intake holds (up to ``max_batch`` reports), applies it to the store in
one transaction, retrying with backoff while the store says the database is unreachable,
and isolates a report the database refuses by bisecting the batch. A failure while the
batch was committing is ambiguous (the commit may have taken effect, its answer lost with
the connection): the writer asks the store whether that attempt committed before applying
the batch again, so a batch is stored exactly once. After each commit it
hands the events to the feed (under the feed's commit lock, so a wake-up for this very
batch is not read back) and then, outside that lock, to the ``events_committed``
dispatcher.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable

import anyio

from ._dispatch import CommittedDispatcher
from ._intake import Intake
from ._stats import TrackerStats
from .abc import BatchAttempt, Feed, Store
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
        completion_grace_s: float = 0.0,
        commit_delay: float = 0.0,
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
        self._grace_s = completion_grace_s
        self._delay = commit_delay
        self.hurry = asyncio.Event()  # set by flush() and closing: no delay for this batch
        self.flush_target = 0  # the reports a waiting flush() needs committed (enqueued count)
        self.writer_id = uuid.uuid4().hex  # names this writer's attempts in the store
        self._attempts = itertools.count(1)
        self._applied = False  # whether the store holds a row for this writer
        self.committed_seq = 0  # the last sequence number this writer committed
        self.outage: str | None = None  # why the last attempt failed, while it is retried
        self.progress = asyncio.Condition()
        self.done = anyio.Event()

    async def run(self) -> None:
        """Commit until the intake is closed and empty."""
        intake = self._intake
        last_take = -math.inf
        try:
            while True:
                if not intake.waiting:
                    if intake.closed:
                        await self._forget()
                        return
                    intake.wake.clear()
                    await intake.wake.wait()
                    continue
                if self._delay:
                    await self._gather(last_take + self._delay - time.monotonic())
                last_take = time.monotonic()
                self.hurry.clear()  # a flush waiting now is served by this batch
                batch = intake.take(self.max_batch)
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

    async def _gather(self, wait: float) -> None:
        """Start batches ``commit_delay`` apart at the most: what arrives meanwhile joins
        the next one, so that an engine reporting a few events at a time pays for one
        commit per delay rather than one per burst. :meth:`Tracker.flush` and closing cut
        the wait short (``hurry``); a full batch does not wait, and under a heavy load a
        commit takes longer than the delay, so the writer never waits there."""
        if wait <= 0 or self.hurry.is_set() or self._intake.closed:
            return
        if self.stats.committed < self.flush_target:
            return  # a flush waits for reports beyond the batches taken so far
        if self._intake.waiting >= self.max_batch:
            return
        with anyio.move_on_after(wait):
            await self.hurry.wait()

    async def _commit(self, batch: list[Report]) -> FoldResult | None:
        """Commit ``batch``, retrying while the database is unreachable; a report the
        database rejects for itself is isolated by bisection, logged and counted. Returns
        the combined result of what committed."""
        delay, max_delay = self._retry
        while True:
            try:
                res = await self._apply(batch)
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

    async def _apply(self, batch: list[Report]) -> FoldResult:
        """One attempt at ``batch``; if it failed after the commit was sent and the store
        says the commit took effect, its result, as if the answer had arrived."""
        attempt = BatchAttempt(self.writer_id, next(self._attempts))
        self._applied = True
        try:
            return await self._store.apply(
                batch,
                idle_timeout_s=self._idle_s,
                attempt=attempt,
                completion_grace_s=self._grace_s,
            )
        except Exception as exc:
            if attempt.result is None or not await self._took_effect(attempt, exc):
                raise
            return attempt.result

    async def _took_effect(self, attempt: BatchAttempt, exc: Exception) -> bool:
        """Ask the store, until it can answer, whether ``attempt`` committed. Not knowing
        is never guessed either way: applying the batch again could store it twice, and
        dropping it could lose it."""
        delay, max_delay = self._retry
        log.warning(
            "sessiontrack: the connection failed while committing a batch (%s); asking "
            "the database whether it committed",
            type(exc).__name__,
        )
        while True:
            try:
                committed = await self._store.attempt_committed(attempt)
            except Exception as check_exc:
                self.outage = type(check_exc).__name__
                transient = self._store.is_transient(check_exc)
                log.log(
                    logging.WARNING if transient else logging.ERROR,
                    "sessiontrack: database unavailable (%s); %d reports buffered, asking "
                    "again in %.2fs whether the last batch committed",
                    type(check_exc).__name__,
                    self._intake.pending,
                    delay,
                    exc_info=not transient,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, max_delay)
                continue
            if committed:
                self.stats.retries += 1  # a retry that found the work already done
                log.warning("sessiontrack: that batch had committed; it is not applied again")
            return committed

    async def _forget(self) -> None:
        if not self._applied:
            return
        try:
            await self._store.forget_writer(self.writer_id)
        except Exception:
            # one small row left behind, harmless (docs/durability.md)
            log.warning(
                "sessiontrack: could not delete the writer's row batch:%s",
                self.writer_id,
                exc_info=True,
            )

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
