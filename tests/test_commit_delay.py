"""``Tracker(commit_delay=...)``: what follows a quiet moment is gathered into one commit,
and nothing that waits for durability waits for the delay."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import sessiontrack

pytestmark = pytest.mark.anyio


def options(prefix: str, delay: float) -> dict[str, Any]:
    return {"prefix": prefix, "migrate": True, "commit_delay": delay, "sweep_interval": None}


async def wait_committed(tracker: sessiontrack.Tracker, n: int, within: float) -> float:
    """Seconds until ``n`` reports are committed (watching the writer's progress)."""
    start = time.monotonic()
    progress = tracker._writer.progress
    with anyio.fail_after(within):
        async with progress:
            await progress.wait_for(lambda: tracker.stats.committed >= n)
    return time.monotonic() - start


async def test_reports_after_a_quiet_moment_wait_for_the_ones_that_follow(
    database_url: str, prefix: str
) -> None:
    async with sessiontrack.Tracker(database_url, **options(prefix, 0.5)) as tracker:
        hook = tracker.plugin_manager.hook
        sid = sessiontrack.new_session_id()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="delay")
        await tracker.flush()
        batches = tracker.stats.batches
        for step in range(5):  # an engine's steps, with awaits between them
            hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{step}")
            await anyio.sleep(0.02)
        assert tracker.stats.committed == 1  # still gathering
        await wait_committed(tracker, 6, within=5)
        assert tracker.stats.batches == batches + 1  # five steps, one commit
        assert (await tracker.sessions.get(sid)).node_count == 5


async def test_flush_and_stop_do_not_wait_for_the_delay(database_url: str, prefix: str) -> None:
    async with sessiontrack.Tracker(database_url, **options(prefix, 1.0)) as tracker:
        hook = tracker.plugin_manager.hook
        sid = sessiontrack.new_session_id()
        start = time.monotonic()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="delay")
        await anyio.sleep(0.05)  # the writer is gathering now
        await tracker.flush()
        hook.sessiontrack_node_executed(session_id=sid, node_id="a")
        await anyio.sleep(0.05)
        await tracker.stop(sid, "ops")
        assert time.monotonic() - start < 0.9  # neither waited out the 1 s delay
        assert (await tracker.sessions.get(sid)).status == "stopped"


async def test_a_flush_behind_several_batches_does_not_wait_for_the_delay(
    database_url: str, prefix: str
) -> None:
    async with sessiontrack.Tracker(
        database_url, **options(prefix, 1.0), max_batch=10, max_buffered=1000
    ) as tracker:
        hook = tracker.plugin_manager.hook
        sid = sessiontrack.new_session_id()
        start = time.monotonic()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="delay")
        for i in range(64):  # seven batches of ten: the last is not full
            hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
        await tracker.flush()
        assert time.monotonic() - start < 0.9
        assert (await tracker.sessions.get(sid)).node_count == 64


async def test_no_delay_commits_every_burst(database_url: str, prefix: str) -> None:
    async with sessiontrack.Tracker(database_url, **options(prefix, 0)) as tracker:
        hook = tracker.plugin_manager.hook
        sid = sessiontrack.new_session_id()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="delay")
        assert await wait_committed(tracker, 1, within=5) < 0.5


def test_the_delay_is_checked() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="commit_delay"):
            sessiontrack.Tracker("sqlite+aiosqlite:///unused.db", commit_delay=bad)
