"""The durable log consumer (sessiontrack/consumer.py): cursor, at-least-once, lease."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
import pytest

import sessiontrack
from sessiontrack.consumer import Consumer, ConsumerGroup, backoff
from sessiontrack.events import StoredEvent
from sessiontrack.store import SQLAlchemyStore
from tests.web_helpers.live import wait_until

pytestmark = pytest.mark.anyio
FAST = {"poll_interval": 0.05, "lease_retry": 0.05, "lease_check": 0.1, "retry_initial": 0.01}


class Recorder(Consumer):
    def __init__(self, name: str, *, fail_times: int = 0, stop_after: int | None = None) -> None:
        self.name = name
        self.batch_size = 7
        self.seen: list[int] = []
        self.fail_times = fail_times
        self.stop_after = stop_after

    async def handle(self, events: Sequence[StoredEvent]) -> int | None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("receiver down")
        if self.stop_after is not None:
            taken = [e for e in events if e.seq <= self.stop_after]
            self.seen.extend(e.seq for e in taken)
            return taken[-1].seq if taken else events[0].seq - 1
        self.seen.extend(e.seq for e in events)
        return None


async def report(tracker: sessiontrack.Tracker, sessions: int) -> None:
    hook = tracker.plugin_manager.hook
    for _ in range(sessions):
        sid = sessiontrack.new_session_id()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
        hook.sessiontrack_node_executed(session_id=sid, node_id="a")
        hook.sessiontrack_session_completed(session_id=sid)
    await tracker.flush()


async def cursor_at(store: object, name: str, seq: int | None = None) -> int:
    """Wait until cursor ``name`` exists (and is at ``seq``, if given); its value."""
    with anyio.fail_after(10):
        while True:
            value = await store.read_cursor(name)  # type: ignore[attr-defined]
            if value is not None and (seq is None or value == seq):
                return int(value)
            await anyio.sleep(0.02)


async def test_every_event_once_in_order_and_restart_resumes(
    database_url: str, prefix: str
) -> None:
    options = {"prefix": prefix, "migrate": True, "poll_interval": 0.05, "sweep_interval": None}
    rec = Recorder("test:rec")
    async with sessiontrack.Tracker(database_url, **options) as tracker:  # type: ignore[arg-type]
        await report(tracker, 2)  # before the consumer's cursor exists: not handled
        head = await tracker.store.last_seq()
    group = ConsumerGroup("test", [rec], **FAST)
    async with sessiontrack.Tracker(
        database_url,
        consumers=[group],
        **options,  # type: ignore[arg-type]
    ) as tracker:
        await wait_until(lambda: group.leading)
        assert await cursor_at(tracker.store, "test:rec") == head  # created at the head
        await report(tracker, 10)
        last = await tracker.store.last_seq()
        await wait_until(lambda: bool(rec.seen) and rec.seen[-1] == last)
        assert rec.seen == list(range(head + 1, last + 1))
        await cursor_at(tracker.store, "test:rec", last)
    # restart: nothing handled again, the next events continue the cursor
    rec2 = Recorder("test:rec")
    group2 = ConsumerGroup("test", [rec2], **FAST)
    async with sessiontrack.Tracker(
        database_url,
        consumers=[group2],
        **options,  # type: ignore[arg-type]
    ) as tracker:
        await report(tracker, 1)
        new_last = await tracker.store.last_seq()
        await wait_until(lambda: bool(rec2.seen) and rec2.seen[-1] == new_last)
        assert rec2.seen == list(range(last + 1, new_last + 1))


async def test_a_failing_handler_keeps_the_cursor_and_gets_the_same_events(
    database_url: str, prefix: str
) -> None:
    rec = Recorder("test:flaky", fail_times=3)
    part = Recorder("test:part")
    group = ConsumerGroup("flaky", [rec, part], **FAST)
    options = {"prefix": prefix, "migrate": True, "poll_interval": 0.05, "sweep_interval": None}
    async with sessiontrack.Tracker(
        database_url,
        consumers=[group],
        **options,  # type: ignore[arg-type]
    ) as tracker:
        start = await cursor_at(tracker.store, "test:flaky")
        await cursor_at(tracker.store, "test:part", start)
        part.stop_after = start + 5  # handles 5 events, then "pauses" at every batch
        await report(tracker, 4)
        last = await tracker.store.last_seq()
        await wait_until(lambda: bool(rec.seen) and rec.seen[-1] == last)
        assert rec.seen == list(range(start + 1, last + 1))  # the failures repeated nothing
        await cursor_at(tracker.store, "test:part", start + 5)
        await anyio.sleep(0.2)
        assert part.seen == list(range(start + 1, start + 6))
        group.remove("test:part")
        assert "test:part" not in group.consumers


async def test_one_group_of_a_name_leads_at_a_time(database_url: str, prefix: str) -> None:
    stores = [SQLAlchemyStore(database_url, prefix=prefix) for _ in range(2)]
    for store in stores:
        await store.open(migrate=True)
    try:
        a = await stores[0].acquire_lease("g")
        assert a is not None and await a.alive()
        assert await stores[1].acquire_lease("g") is None
        assert await stores[0].acquire_lease("g") is None  # not twice in one process either
        other = await stores[1].acquire_lease("other")  # another name is independent
        assert other is not None
        await a.release()
        b = await stores[1].acquire_lease("g")
        assert b is not None
        await b.release()
        await other.release()
        # groups: the second leads once the first stops
        recs = [Recorder("test:lead"), Recorder("test:lead")]
        groups = [ConsumerGroup("lead", [r], **FAST) for r in recs]
        async with anyio.create_task_group() as tg:
            tg.start_soon(groups[0].run, stores[0])
            await wait_until(lambda: groups[0].leading)
            tg.start_soon(groups[1].run, stores[1])
            await anyio.sleep(0.3)
            assert not groups[1].leading
            tg.cancel_scope.cancel()
        async with anyio.create_task_group() as tg:
            tg.start_soon(groups[1].run, stores[1])
            await wait_until(lambda: groups[1].leading)
            tg.cancel_scope.cancel()
    finally:
        for store in stores:
            await store.close()


def test_backoff_is_exponential_with_full_jitter() -> None:
    for failures in range(1, 12):
        cap = min(30.0, 0.5 * 2 ** (failures - 1))
        waits = [backoff(failures, 0.5, 30.0) for _ in range(200)]
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > cap / 2  # spread over the range, not a constant


async def test_a_store_call_cancelled_midway_leaves_no_connection_behind(
    database_url: str, prefix: str
) -> None:
    """anyio cancels a task again at each of its awaits until it ends. A second cancel
    reaching SQLAlchemy while it terminated the connection of the first one made it stop
    aiosqlite's thread twice, and its graceful-close task then waited forever, so that
    ``asyncio.run`` hung on exit (a tracker with consumers started and stopped at once).
    Each store call is cancelled here after a different number of loop turns."""
    import asyncio

    before = asyncio.all_tasks()
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    try:
        for turns in range(40):
            async with anyio.create_task_group() as tg:

                async def reads() -> None:
                    while True:  # the webhooks' housekeeping, as while_leading does it
                        await store.webhooks_rows()
                        await store.prune_deliveries(datetime.now(UTC))

                tg.start_soon(reads)
                for _ in range(turns):
                    await asyncio.sleep(0)
                tg.cancel_scope.cancel()
            assert await store.read_cursor("test:none") is None  # the store still works
    finally:
        await store.close()
    left = asyncio.all_tasks() - before
    if left:
        _, pending = await asyncio.wait(left, timeout=5)
        assert not pending, [repr(t) for t in pending]
