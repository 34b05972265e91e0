"""Versioned migrations: an older, populated database upgrades in place without losing a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import sessiontrack
from sessiontrack.store import _migrate, make_tables
from sessiontrack.store._search import SearchSQL

pytestmark = pytest.mark.anyio


async def test_upgrade_from_0001_keeps_every_row_and_backfills(
    database_url: str, prefix: str
) -> None:
    engine = create_async_engine(database_url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    names = ["ÀNN Lee", "Bob", None]
    ids = [sessiontrack.new_session_id() for _ in range(30)]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade, prefix, "0001")
            assert await conn.run_sync(_migrate.current, prefix) == "0001"
            # rows written the way revision 0001's code wrote them (no name_key, no counts)
            md = sa.MetaData()
            await conn.run_sync(
                md.reflect, only=[f"{prefix}sessions", f"{prefix}events", f"{prefix}state"]
            )
            sessions, events = md.tables[f"{prefix}sessions"], md.tables[f"{prefix}events"]
            seq = 0
            for i, sid in enumerate(ids):
                status = ["running", "completed", "expired"][i % 3]
                await conn.execute(
                    sessions.insert().values(
                        id=sid,
                        chatbot_id=f"bot{i % 2}",
                        status=status,
                        customer_name=names[i % 3],
                        customer_phone=f"+1{i}",
                        variables={"i": i},
                        metadata={},
                        started_at=(t0 + timedelta(minutes=i)).replace(tzinfo=None)
                        if database_url.startswith("sqlite")
                        else t0 + timedelta(minutes=i),
                        updated_at=(t0 + timedelta(minutes=i)).replace(tzinfo=None)
                        if database_url.startswith("sqlite")
                        else t0 + timedelta(minutes=i),
                        node_count=1,
                        message_count=0,
                    )
                )
                seq += 1
                await conn.execute(
                    events.insert().values(
                        seq=seq,
                        session_id=sid,
                        chatbot_id=f"bot{i % 2}",
                        kind="session_started",
                        at=t0.replace(tzinfo=None) if database_url.startswith("sqlite") else t0,
                        data={},
                    )
                )
            await conn.execute(sa.text(f"UPDATE {prefix}state SET value = {seq}"))
        async with sessiontrack.Tracker(
            database_url, prefix=prefix, migrate=True, sweep_interval=None
        ) as tracker:
            async with tracker.store.engine.connect() as conn:
                assert await conn.run_sync(_migrate.current, prefix) == _migrate.HEAD
            stats = await tracker.sessions.stats()
            assert stats.total == 30
            assert (
                stats.by_status["running"],
                stats.by_status["completed"],
                stats.by_status["expired"],
            ) == (10, 10, 10)
            found = await tracker.sessions.list(search="àNN", limit=100)
            assert found.total == 10  # backfilled case-folded key
            detail = await tracker.sessions.get(ids[4])
            assert detail.variables == {"i": 4}
            # new events continue the log after the old ones
            tracker.plugin_manager.hook.sessiontrack_node_executed(session_id=ids[0], node_id="x")
            await tracker.flush()
            assert (await tracker.store.last_seq()) == 31
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_table_definitions(
    database_url: str, prefix: str
) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate.upgrade, prefix)

            def indexes(sync_conn: sa.Connection, table: str) -> set[str]:
                if sync_conn.dialect.name != "sqlite":
                    return {str(i["name"]) for i in sa.inspect(sync_conn).get_indexes(table)}
                # the inspector skips SQLite's expression indexes: ask the catalog
                q = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                rows = sync_conn.exec_driver_sql(q + " AND sql IS NOT NULL", (table,))
                return {r[0] for r in rows}

            def describe(sync_conn: sa.Connection) -> dict[str, tuple[set[str], set[str]]]:
                insp = sa.inspect(sync_conn)
                return {
                    name: ({c["name"] for c in insp.get_columns(name)}, indexes(sync_conn, name))
                    for name in insp.get_table_names()
                    if name.startswith(prefix) and not name.endswith("alembic_version")
                }

            actual = await conn.run_sync(describe)
        tables = make_tables(prefix)
        dialect = engine.dialect.name

        def made_on(index: sa.Index) -> bool:  # an index may be for one backend only
            ddl_if = index._ddl_if
            return ddl_if is None or ddl_if.dialect in (None, dialect)

        expected = {
            t.name: ({c.name for c in t.columns}, {str(i.name) for i in t.indexes if made_on(i)})
            for t in tables.metadata.sorted_tables
        }
        # the search indexes are DDL of their own (store/_search.py): FTS5 tables on
        # SQLite, expression and trigram indexes on PostgreSQL
        search_tables, search_indexes = SearchSQL(tables, engine.dialect.name).schema_objects()
        assert {name for name in actual if name in search_tables} == search_tables
        for name, indexes in search_indexes.items():
            expected[name][1].update(indexes)
        assert {k: v for k, v in actual.items() if k not in search_tables} == expected
    finally:
        await engine.dispose()


@pytest.mark.postgresql
async def test_postgres_is_not_migrated_behind_the_users_back(prefix: str) -> None:
    from tests.conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres

    await require_postgres()
    try:
        with pytest.raises(sessiontrack.SchemaOutdated, match="sessiontrack migrate"):
            async with sessiontrack.Tracker(POSTGRES_URL, prefix=prefix):
                pass
    finally:
        await drop_prefixed_tables(POSTGRES_URL, prefix)


async def test_host_tables_and_alembic_version_are_untouched(
    database_url: str, prefix: str
) -> None:
    engine = create_async_engine(database_url)
    host_table = f"{prefix}host_orders".replace(prefix, "h" + prefix)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"CREATE TABLE {host_table} (id INTEGER PRIMARY KEY)"))
            await conn.execute(sa.text(f"INSERT INTO {host_table} VALUES (1)"))
        async with sessiontrack.Tracker(
            database_url, prefix=prefix, migrate=True, sweep_interval=None
        ):
            pass
        async with engine.begin() as conn:
            assert await conn.scalar(sa.text(f"SELECT count(*) FROM {host_table}")) == 1
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert "alembic_version" not in names
            await conn.execute(sa.text(f"DROP TABLE {host_table}"))
    finally:
        await engine.dispose()
