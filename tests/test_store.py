"""The Store interface (sessiontrack.abc), against the SQLAlchemy store on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

import sessiontrack
from sessiontrack.abc import Store
from sessiontrack.store import SessionFilter, SQLAlchemyStore

pytestmark = pytest.mark.anyio


async def test_watch_wakes_for_a_commit_made_by_another_store(
    database_url: str, prefix: str
) -> None:
    watcher, writer = (SQLAlchemyStore(database_url, prefix=prefix) for _ in range(2))
    await watcher.open(migrate=True)
    await writer.open(migrate=True)
    woken: list[int | None] = []
    seen = anyio.Event()

    def wake(seq: int | None) -> None:
        woken.append(seq)
        if seq is not None and seq >= 1:
            seen.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: watcher.watch(wake, poll_interval=0.05))
            sid = sessiontrack.new_session_id()
            res = await writer.apply(
                [("session_started", sid, datetime.now(UTC), {"chatbot_id": "b"})],
                idle_timeout_s=None,
            )
            with anyio.fail_after(10):
                await seen.wait()
            tg.cancel_scope.cancel()
        assert res.last_seq == 1 and 1 in woken
        events = await watcher.events_after(0)
        assert [(e.seq, e.session_id) for e in events] == [(1, sid)]
    finally:
        await watcher.close()
        await writer.close()


async def test_a_tracker_takes_any_store(database_url: str, prefix: str) -> None:
    store: Store = SQLAlchemyStore(database_url, prefix=prefix)
    async with sessiontrack.Tracker(store, migrate=True) as tracker:
        assert tracker.store is store
        sid = sessiontrack.new_session_id()
        tracker.plugin_manager.hook.sessiontrack_session_started(session_id=sid, chatbot_id="b")
        await tracker.flush()
        assert (await store.session_head(sid)) == ("b", "running", None)


def test_the_store_refuses_what_the_database_refuses_and_retries_an_outage() -> None:
    import sqlalchemy as sa

    store = SQLAlchemyStore("sqlite+aiosqlite://")
    assert store.is_transient(ConnectionResetError())
    assert store.is_transient(sa.exc.OperationalError("SELECT 1", None, OSError()))
    assert not store.is_transient(ValueError("bad report"))
    assert not store.is_transient(sa.exc.IntegrityError("INSERT", None, Exception()))


def test_the_tracker_and_its_parts_know_only_the_interfaces() -> None:
    """The shape of sessiontrack.abc, kept: no driver, no SQLAlchemy, no concrete store
    imported at run time (``if TYPE_CHECKING:`` imports for annotations are fine)."""
    import ast
    from pathlib import Path

    def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
        out: list[ast.AST] = []
        for node in ast.iter_child_nodes(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                continue
            out += [node, *runtime_nodes(node)]
        return out

    package = Path(sessiontrack.__file__).parent
    parts = ["tracker", "_intake", "_writer", "_dispatch", "_stops", "_sweeper", "_host"]
    parts += ["_feed", "query", "abc"]
    for name in parts:
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in runtime_nodes(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                imported |= {a.name for a in node.names}
        assert not imported & {"sqlalchemy", "asyncpg", "aiosqlite", "SQLAlchemyStore"}, name


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def test_quick_lists_replace_connections_the_server_closed(
    database_url: str, prefix: str
) -> None:
    """The quick lists' own asyncpg pool (no ping before lending): a connection the server
    terminated is replaced when it is next taken, not handed to a request; closing the
    store closes the pool's connections. Both pools' sessions run without parallel
    plans."""
    store = SQLAlchemyStore(database_url, prefix=prefix)
    await store.open(migrate=True)
    try:
        sid = sessiontrack.new_session_id()
        at = datetime.now(UTC)
        await store.apply([("session_started", sid, at, {"chatbot_id": "b"})], idle_timeout_s=None)
        assert store.quick_readers is not None
        f = SessionFilter()
        assert f.countable_from_counters  # read on the quick readers' pool
        first_page = {"sort_by": "started_at", "descending": True, "limit": 20}
        first_page |= {"offset": 0, "after": None}
        page = await store.list_sessions(f, **first_page)
        assert [s.id for s in page[0]] == [sid] and page[1] == 1
        async with store.quick_readers.acquire() as conn:
            pids = {conn.get_server_pid()}
            # no parallel plans on the store's own connections (POSTGRESQL_SETTINGS)
            assert await conn.fetchval("SHOW max_parallel_workers_per_gather") == "0"
        async with store.engine.connect() as other:
            shown = await other.exec_driver_sql("SHOW max_parallel_workers_per_gather")
            assert shown.scalar() == "0"
        async with store.engine.connect() as other:
            await other.exec_driver_sql(f"SELECT pg_terminate_backend({', '.join(map(str, pids))})")
        await anyio.sleep(0.2)  # the pool's connection sees its socket closed
        for _ in range(3):
            page = await store.list_sessions(f, **first_page)
            assert [s.id for s in page[0]] == [sid] and page[1] == 1
        async with store.quick_readers.acquire() as conn:
            assert conn.get_server_pid() not in pids
        pool = store.quick_readers.pool
    finally:
        await store.close()
    assert store.quick_readers is None and pool.get_size() == 0
