"""The batch writer on its own: a real store, intake, feed and dispatcher, no tracker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pluggy
import pytest

import sessiontrack
from sessiontrack._dispatch import CommittedDispatcher
from sessiontrack._feed import Feed
from sessiontrack._host import HostHooks
from sessiontrack._intake import Intake
from sessiontrack._stats import TrackerStats
from sessiontrack._writer import BatchWriter
from sessiontrack.store import SQLAlchemyStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str, prefix: str) -> AsyncIterator[SQLAlchemyStore]:
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    yield store
    await store.close()


async def run_writer(store: SQLAlchemyStore, reports: list[Any], max_batch: int) -> BatchWriter:
    stats = TrackerStats()
    intake = Intake(stats, max_buffered=1000, overflow="raise")
    intake.open()
    feed = Feed(store)
    await feed.start()
    pm = pluggy.PluginManager("sessiontrack")
    pm.add_hookspecs(sessiontrack.hookspecs)
    writer = BatchWriter(
        store,
        intake,
        feed,
        CommittedDispatcher(HostHooks(pm, object())),
        stats,
        max_batch=max_batch,
        idle_timeout_s=None,
        retry=(0.01, 0.1),
    )
    for report in reports:
        intake.put(report)
    intake.close()
    with anyio.fail_after(20):
        await writer.run()  # returns once the closed intake is empty
    assert feed.cursor == writer.committed_seq
    return writer


def started(sid: str, **data: Any) -> tuple[str, str, datetime, dict[str, Any]]:
    return ("session_started", sid, datetime.now(UTC), {"chatbot_id": "b", **data})


async def test_the_writer_commits_in_batches_in_call_order_and_stops_when_closed(
    store: SQLAlchemyStore,
) -> None:
    sid = sessiontrack.new_session_id()
    nodes = [("node_executed", sid, datetime.now(UTC), {"node_id": f"n{i}"}) for i in range(24)]
    writer = await run_writer(store, [started(sid), *nodes], max_batch=10)
    s = writer.stats
    assert (s.enqueued, s.committed, s.batches, s.events_stored) == (25, 25, 3, 25)
    events = await store.events_after(0, limit=100)
    assert [e.data.get("node_id") for e in events[1:]] == [f"n{i}" for i in range(24)]
    assert writer.committed_seq == events[-1].seq


async def test_a_report_the_store_refuses_is_bisected_out_and_the_rest_commits(
    store: SQLAlchemyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "sessiontrack")
    good, bad, also_good = (sessiontrack.new_session_id() for _ in range(3))
    reports = [started(good), started(bad, variables="{not json"), started(also_good)]
    writer = await run_writer(store, reports, max_batch=10)
    assert (writer.stats.failed, writer.stats.retries, writer.stats.committed) == (1, 0, 3)
    assert {e.session_id for e in await store.events_after(0)} == {good, also_good}
    assert "rejected a report" in caplog.text and writer.outage is None
