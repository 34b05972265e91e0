"""The intake: capacity reserved in the calling thread, from any number of threads."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack._intake import Intake
from sessiontrack._stats import TrackerStats

pytestmark = pytest.mark.anyio


def report(i: int) -> tuple[str, str, float, dict[str, Any]]:
    return ("node_executed", "s", float(i), {"node_id": f"n{i}"})


async def test_the_bound_counts_what_the_writer_holds_until_it_is_done() -> None:
    stats = TrackerStats()
    intake = Intake(stats, max_buffered=3, overflow="raise")
    intake.open()
    for i in range(3):
        intake.put(report(i))
    with pytest.raises(sessiontrack.BufferFull):
        intake.put(report(3))
    batch = intake.take(2)
    assert [r[3]["node_id"] for r in batch] == ["n0", "n1"]
    with pytest.raises(sessiontrack.BufferFull):  # taken is not yet committed
        intake.put(report(4))
    intake.done(len(batch))
    intake.put(report(5))
    assert intake.pending == 2
    assert (stats.enqueued, stats.dropped_overflow) == (4, 2)


async def test_a_closed_intake_refuses_with_tracker_not_running_and_keeps_what_it_has() -> None:
    intake = Intake(TrackerStats(), max_buffered=10, overflow="drop")
    with pytest.raises(sessiontrack.TrackerNotRunning, match="not running"):
        intake.put(report(0))  # never opened
    intake.open()
    intake.put(report(1))
    intake.close()
    with pytest.raises(sessiontrack.TrackerNotRunning, match="closing"):
        intake.put(report(2))
    assert [r[3]["node_id"] for r in intake.take(10)] == ["n1"]


async def test_a_call_from_another_thread_wakes_the_writer() -> None:
    intake = Intake(TrackerStats(), max_buffered=10, overflow="raise")
    intake.open()
    intake.wake.clear()
    await anyio.to_thread.run_sync(intake.put, report(1))
    with anyio.fail_after(5):
        await intake.wake.wait()
    assert len(intake.take(10)) == 1


class Gate:
    """An events_committed implementation that holds the dispatcher until opened: with
    ``max_committed_queue=1`` the writer then waits too, and the buffer fills."""

    def __init__(self) -> None:
        self.open = anyio.Event()

    @sessiontrack.hookimpl
    async def sessiontrack_events_committed(self, events: Any) -> None:
        await self.open.wait()


@pytest.mark.parametrize(
    "tracker_options",
    [{"max_buffered": 200, "max_batch": 50, "overflow": "raise", "max_committed_queue": 1}],
)
async def test_calls_from_many_threads_raise_buffer_full_there_or_are_stored(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    sid = sessiontrack.new_session_id()
    pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
    await tracker.flush()
    gate = Gate()
    tracker.plugin_manager.register(gate)
    accepted: dict[int, list[str]] = {}
    refused: dict[int, int] = {}
    peak = 0

    def engine(t: int) -> None:
        nonlocal peak
        mine, n_refused = [], 0
        for i in range(300):
            node = f"t{t}-{i}"
            try:
                pm.hook.sessiontrack_node_executed(session_id=sid, node_id=node)
            except sessiontrack.BufferFull:
                n_refused += 1
            else:
                mine.append(node)
            peak = max(peak, tracker.stats.buffered)
        accepted[t], refused[t] = mine, n_refused

    async with anyio.create_task_group() as tg:
        for t in range(8):
            tg.start_soon(anyio.to_thread.run_sync, engine, t)
    assert peak <= 200  # the other threads' backlog counts against max_buffered
    assert sum(refused.values()) == tracker.stats.dropped_overflow > 0
    gate.open.set()
    await tracker.flush()
    history = (await tracker.sessions.get(sid)).node_history
    assert sorted(history) == sorted(n for nodes in accepted.values() for n in nodes)
    for t, nodes in accepted.items():  # each thread's reports keep their order
        assert [n for n in history if n.startswith(f"t{t}-")] == nodes


async def test_a_thread_reporting_while_the_tracker_closes_gets_tracker_not_running(
    database_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, "sessiontrack")
    tracker = sessiontrack.Tracker(database_url, prefix=prefix, migrate=True)
    accepted: list[str] = []
    refusal: list[BaseException] = []
    started = threading.Event()
    async with tracker:
        pm = tracker.plugin_manager
        sid = sessiontrack.new_session_id()
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")

        def engine() -> None:
            for i in range(10**9):
                try:
                    pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
                except sessiontrack.TrackerNotRunning as exc:
                    refusal.append(exc)
                    return
                accepted.append(f"n{i}")
                started.set()

        thread = threading.Thread(target=engine)
        thread.start()
        await anyio.to_thread.run_sync(started.wait)
        # leaving the block closes the tracker while the engine still reports
    await anyio.to_thread.run_sync(thread.join)
    assert "closing" in str(refusal[0])
    async with sessiontrack.Tracker(database_url, prefix=prefix) as reopened:
        assert (await reopened.sessions.get(sid)).node_history == accepted
    assert ", 0 not committed" in caplog.text
