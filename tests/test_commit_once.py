"""A batch is stored exactly once, even when the connection breaks during its COMMIT.

The faults are real: a TCP proxy in front of PostgreSQL throws away the server's answer to
the batch's COMMIT (the transaction committed, the writer cannot know) or the COMMIT
itself (it rolled back); SQLite's write lock is held by another connection.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import sessiontrack
from sessiontrack.abc import BatchAttempt
from sessiontrack.events import StoredEvent
from sessiontrack.store import SQLAlchemyStore, make_tables
from tests.conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from tests.netproxy import Proxy

pytestmark = pytest.mark.anyio
N = 300  # node executions in the batch that meets the fault
NODES = [f"n{i}" for i in range(N)]


class Committed:
    """An ``events_committed`` plugin: what the hook was given."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    @sessiontrack.hookimpl
    def sessiontrack_events_committed(self, events: list[StoredEvent]) -> None:
        self.seqs.extend(e.seq for e in events)


async def stored_rows(url: str, prefix: str, sid: str) -> tuple[list[str], int, int]:
    """What the database holds for ``sid``, read past the proxy: the log's node ids, the
    session's node count, and the state rows the writers left."""
    engine = create_async_engine(url)
    t = make_tables(prefix)
    try:
        async with engine.connect() as conn:
            log = await conn.execute(
                sa.select(t.events.c.data)
                .where(t.events.c.session_id == sid, t.events.c.kind == "node_executed")
                .order_by(t.events.c.seq)
            )
            nodes = await conn.scalar(
                sa.select(t.sessions.c.node_count).where(t.sessions.c.id == sid)
            )
            rows = await conn.scalar(
                sa.select(sa.func.count()).where(t.state.c.key.like("batch:%"))
            )
    finally:
        await engine.dispose()
    return [r.data["node_id"] for r in log], int(nodes or 0), int(rows or 0)


@pytest.fixture
async def proxied(prefix: str) -> AsyncIterator[tuple[Proxy, str]]:
    await require_postgres()
    url = sa.make_url(POSTGRES_URL)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    finally:
        await proxy.cut()
        await drop_prefixed_tables(POSTGRES_URL, prefix)


@pytest.mark.postgresql
@pytest.mark.parametrize(
    "reaches_server", [True, False], ids=["answer-lost-after-commit", "commit-never-sent"]
)
async def test_a_batch_whose_commit_meets_a_broken_connection_is_stored_once(
    proxied: tuple[Proxy, str],
    prefix: str,
    reaches_server: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sessiontrack")
    proxy, url = proxied
    committed = Committed()
    options: dict[str, Any] = {"retry_initial": 0.02, "retry_max": 0.2, "sweep_interval": None}
    async with sessiontrack.Tracker(url, prefix=prefix, migrate=True, **options) as tracker:
        pm = tracker.plugin_manager
        pm.register(committed)
        sid = sessiontrack.new_session_id()
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
        await tracker.flush()
        before = astuple(tracker.stats)
        async with tracker.subscribe(buffer=10 * N) as sub:
            proxy.fail_next_commit(reaches_server=reaches_server)
            for i in range(N):  # no await between: one batch meets the fault
                pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
            with anyio.fail_after(30):
                await tracker.flush()
            assert proxy.commit_cut.is_set()
            seen = []
            while (event := sub.get_nowait()) is not None:
                seen.append(event)
        delta = [now - then for now, then in zip(astuple(tracker.stats), before, strict=True)]
        # counted once: enqueued, committed, one batch, events stored; one retry; no failure
        assert delta == [N, N, 1, N, 0, 0, 0, 0, 0, 1]
        assert [e.data["node_id"] for e in seen] == NODES
        assert committed.seqs == list(range(1, N + 2))  # the start, then the batch, once
        log_ids, nodes, _ = await stored_rows(POSTGRES_URL, prefix, sid)
        assert log_ids == (await tracker.sessions.get(sid)).node_history == NODES
        assert nodes == N
    assert "asking the database whether it committed" in caplog.text
    assert ("had committed; it is not applied again" in caplog.text) is reaches_server
    assert (await stored_rows(POSTGRES_URL, prefix, sid))[2] == 0  # closed: its row deleted


async def test_a_store_answers_which_attempt_committed(database_url: str, prefix: str) -> None:
    """The store's side of the check, on both backends: only the attempt that committed,
    with its number, counts; another writer's attempts never do."""
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    try:
        sid = sessiontrack.new_session_id()
        report = ("session_started", sid, datetime.now(UTC), {"chatbot_id": "b"})
        first = BatchAttempt("w1", 1)
        res = await store.apply([report], idle_timeout_s=None, attempt=first)
        assert first.result is res and await store.attempt_committed(first)
        # the folded-but-failed attempt the writer would ask about next
        assert not await store.attempt_committed(BatchAttempt("w1", 2, res))
        assert not await store.attempt_committed(BatchAttempt("w2", 1, res))
        assert not await store.attempt_committed(BatchAttempt("w1", 1))  # never folded
        second = BatchAttempt("w1", 2)
        await store.apply([], idle_timeout_s=None, attempt=second)
        assert await store.attempt_committed(second) and not await store.attempt_committed(first)
        await store.forget_writer("w1")
        assert not await store.attempt_committed(second)
        assert [e.session_id for e in await store.events_after(0)] == [sid]
    finally:
        await store.close()


async def test_a_retry_after_sqlite_refused_the_lock_stores_the_batch_once(
    tmp_path: Path, prefix: str
) -> None:
    """SQLite has no network between commit and answer; the writer's check must not get in
    the way of a plain retry: another connection holds the write lock, the writer is
    refused (SQLITE_BUSY, after a busy timeout shortened for the test) and retries."""
    path = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{path}"
    options: dict[str, Any] = {"retry_initial": 0.02, "retry_max": 0.05, "sweep_interval": None}
    async with sessiontrack.Tracker(url, prefix=prefix, migrate=True, **options) as tracker:
        engine = tracker.store.engine
        sa.event.listen(engine.sync_engine, "connect", _short_busy_timeout)
        await engine.dispose()  # the pool's connections reopen with it
        pm = tracker.plugin_manager
        sid = sessiontrack.new_session_id()
        pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
        await tracker.flush()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            for i in range(N):
                pm.hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{i}")
            with anyio.move_on_after(0.5):
                await tracker.flush()
            assert tracker.stats.retries >= 1 and tracker.stats.buffered == N
        finally:
            holder.rollback()
            holder.close()
        with anyio.fail_after(20):
            await tracker.flush()
        assert tracker.stats.committed == N + 1 and tracker.stats.failed == 0
    assert await stored_rows(url, prefix, sid) == (NODES, N, 0)


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=20")
    cursor.close()
