"""The events_committed dispatcher: ordered, bounded, outside the writer's commit path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack._dispatch import CommittedDispatcher
from sessiontrack._host import HostHooks

pytestmark = pytest.mark.anyio


def batch(first: int, n: int) -> list[sessiontrack.StoredEvent]:
    return [
        sessiontrack.StoredEvent(
            seq=seq,
            kind="node_executed",
            session_id="s",
            chatbot_id="b",
            at=datetime.now(UTC),
            flow_version=None,
            data={},
        )
        for seq in range(first, first + n)
    ]


class Gated:
    def __init__(self) -> None:
        self.open = anyio.Event()
        self.entered = anyio.Event()
        self.seen: list[int] = []

    @sessiontrack.hookimpl
    async def sessiontrack_events_committed(self, events: Any) -> None:
        self.entered.set()
        await self.open.wait()
        self.seen.extend(e.seq for e in events)


def host_with(*plugins: object) -> HostHooks:
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return HostHooks(pm, object())


async def test_batches_are_dispatched_in_order_and_the_queue_is_bounded() -> None:
    hook = Gated()
    dispatcher = CommittedDispatcher(host_with(hook), max_events=5)
    puts_done: list[int] = []

    async def put(first: int) -> None:
        await dispatcher.put(batch(first, 2))
        puts_done.append(first)

    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        await put(1)
        await put(3)  # 4 events queued: room left
        tg.start_soon(put, 5)  # 6 > 5: the writer would wait here
        await anyio.wait_all_tasks_blocked()
        assert puts_done == [1, 3] and dispatcher.queued_events == 4
        hook.open.set()
        with anyio.fail_after(5):
            await dispatcher.wait_for(6)
        tg.cancel_scope.cancel()
    assert puts_done == [1, 3, 5]
    assert hook.seen == [1, 2, 3, 4, 5, 6]


async def test_a_batch_larger_than_the_bound_is_queued_alone() -> None:
    hook = Gated()
    hook.open.set()
    dispatcher = CommittedDispatcher(host_with(hook), max_events=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        with anyio.fail_after(5):
            await dispatcher.put(batch(1, 10))
            await dispatcher.put(batch(11, 1))
            await dispatcher.wait_for(11)
        tg.cancel_scope.cancel()
    assert hook.seen == list(range(1, 12))


async def test_without_implementations_nothing_is_queued() -> None:
    dispatcher = CommittedDispatcher(host_with(), max_events=1)
    await dispatcher.put(batch(1, 3))  # no run() task: would block if it queued
    await dispatcher.put(batch(4, 3))
    assert dispatcher.done_seq == 6 and dispatcher.queued_events == 0


async def test_a_failing_implementation_is_logged_and_dispatch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailsOnce:
        failed = False

        @sessiontrack.hookimpl
        def sessiontrack_events_committed(self, events: Any) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("notifier down")

    hook = Gated()
    hook.open.set()
    # pluggy calls the last registered first, and a raising implementation ends that call
    dispatcher = CommittedDispatcher(host_with(hook, FailsOnce()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        with anyio.fail_after(5):
            await dispatcher.put(batch(1, 1))
            await dispatcher.put(batch(2, 1))
            await dispatcher.wait_for(2)
        tg.cancel_scope.cancel()
    assert "sessiontrack_events_committed hook implementation failed" in caplog.text
    assert caplog.records[0].levelno == logging.ERROR
    assert hook.seen == [2]


async def test_a_slow_hook_does_not_hold_up_the_next_commit(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    hook = Gated()
    tracker.plugin_manager.register(hook)
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
    with anyio.fail_after(10):
        await hook.entered.wait()  # the hook now holds the first batch
        first = await tracker.store.last_seq()
        async with tracker.subscribe() as sub:
            for i in range(5):
                pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
            async for event in sub:  # published after commit, while the hook waits
                if event.seq == first + 5:
                    break
        assert hook.seen == []
        hook.open.set()
        await tracker.flush()  # flush also waits for the hook
    assert hook.seen == list(range(first, first + 6))


async def test_a_hook_that_never_returns_does_not_hold_shutdown_past_its_timeout(
    database_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "sessiontrack")
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True, shutdown_timeout=0.5)
    hook = Gated()  # never opened
    tracker.plugin_manager.register(hook)
    with anyio.fail_after(20):
        async with tracker:
            sid = sessiontrack.new_session_id()
            tracker.plugin_manager.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
            await hook.entered.wait()
    (line,) = [r.getMessage() for r in caplog.records if "shutdown_timeout" in r.message]
    assert "0 not committed" in line
    assert "sessiontrack_events_committed had not returned for 1 events" in line
