"""The sessions' tags (migration 0008_filter_plans, store/_tags.py) behind the nodeId and
variable list filters: the writer keeps them in step in the batch's transaction, purge
deletes them, the migration builds the same rows from the log and the variables, and the
lists they drive (pages, cursors, totals, tenants) agree with the plain-Python oracle, on
SQLite and PostgreSQL; SQLite reads the page from the tag's index."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pluggy
import pytest
import sqlalchemy as sa
from test_queries import NOW, T0, build, oracle

import sessiontrack
from sessiontrack.query import SessionQueries
from sessiontrack.store import _migrate
from sessiontrack.store._tags import node_tag, variable_tag, variable_tags

pytestmark = pytest.mark.anyio


async def _stored(tracker: sessiontrack.Tracker) -> set[tuple[str, str, str, Any]]:
    t = tracker.store.tables.tags
    async with tracker.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(t.c.session_id, t.c.tag, t.c.chatbot_id, t.c.started_at)
        )
        return {(str(r.session_id), r.tag, r.chatbot_id, r.started_at) for r in rows}


async def _expected(
    tracker: sessiontrack.Tracker, ids: list[str]
) -> set[tuple[str, str, str, Any]]:
    """The tags as the sessions' details say they must be."""
    out = set()
    for sid in ids:
        d = await tracker.sessions.get(sid)
        tags = {node_tag(n) for n in d.node_history} | variable_tags(d.variables)
        out |= {(sid, tag, d.chatbot_id, d.started_at) for tag in tags if tag is not None}
    return out


def test_the_tags_tell_json_types_apart_and_numbers_by_value() -> None:
    assert variable_tag("tier", 1) == variable_tag("tier", 1.0) == 'v"tier"=d1'
    assert variable_tag("tier", 1) != variable_tag("tier", "1")
    assert variable_tag("vip", True) != variable_tag("vip", 1)
    assert variable_tag("x", 0.0) == variable_tag("x", -0.0) == variable_tag("x", 0)
    assert variable_tag("x", 1e16) == variable_tag("x", 10**16)
    assert variable_tag("x", 2**63 - 1) != variable_tag("x", float(2**63 - 1))
    assert variable_tag("a=b", "c") != variable_tag("a", "b=c")  # the name is quoted
    assert variable_tag("x", {"a": 1}) is None and variable_tag("x", [1]) is None
    assert variable_tag("x", "y" * 500) is None  # too long: the test reads the column


async def test_the_writer_keeps_the_tags_in_step_and_purge_deletes_them(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    known = build(pm, 40, seed=3)
    await tracker.flush()
    ids = [k.id for k in known]
    assert await _stored(tracker) == await _expected(tracker, ids)
    # later batches: a value changes, one becomes an object (no tag), one is new; a node
    # runs again and a new one runs
    a, b = [k.id for k in known if k.completed_at is None][:2]
    hook = pm.hook
    hook.sessiontrack_variables_changed(session_id=a, variables={"lang": "pt", "n": 2.0})
    hook.sessiontrack_variables_changed(session_id=b, variables={"lang": {"x": 1}, "tier": None})
    hook.sessiontrack_node_executed(session_id=a, node_id="again")
    hook.sessiontrack_node_executed(session_id=a, node_id="again")
    await tracker.flush()
    stored = await _stored(tracker)
    assert stored == await _expected(tracker, ids)
    assert {t for s, t, *_ in stored if s == a} >= {'v"lang"=spt', 'v"n"=d2', "nagain"}
    assert not any(s == b and t.startswith('v"lang"') for s, t, *_ in stored)
    # purge: the tags of the purged sessions go with them, the others stay
    ended = {k.id for k in known if k.completed_at is not None}
    assert ended
    purged = await tracker.purge(older_than=timedelta(0))
    assert purged == len(ended)
    left = await _stored(tracker)
    assert left and not {s for s, *_ in left} & ended
    assert left == await _expected(tracker, [i for i in ids if i not in ended])


async def test_the_migration_builds_the_tags_the_writer_keeps(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    build(pm, 40, seed=5)
    hook = pm.hook
    sid = sessiontrack.new_session_id()
    hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="b", variables={"x": "y" * 500, "o": [1], "f": 1.5}, at=T0
    )
    await tracker.flush()
    written = await _stored(tracker)
    assert any(t == 'v"f"=d1.5' for s, t, *_ in written if s == sid)
    engine = tracker.store.engine
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade_and_upgrade, prefix)
    assert await _stored(tracker) == written


def _downgrade_and_upgrade(conn: Any, prefix: str) -> None:
    from alembic import command

    cfg = _migrate._config(conn, prefix)
    command.downgrade(cfg, "0006")
    assert _migrate.current(conn, prefix) == "0006"
    command.upgrade(cfg, "head")


async def test_driven_pages_cursors_and_totals_match_the_oracle(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    known = build(pm, 80, seed=11)
    await tracker.flush()
    queries = SessionQueries(tracker.store, count_limit=6)
    bots = sorted({k.chatbot_id for k in known})
    cases: list[dict[str, Any]] = [
        {"node_id": "ask"},
        {"node_id": "n", "variable": ["lang:en"]},
        {"variable": ["lang:en"]},
        {"variable": ["lang:es", "tier:1"]},
        {"variable": ["tier:1"]},  # two tags: the json test drives nothing, a seek each
        {"node_id": "pay", "chatbot_id": bots[0]},
        {"variable": ["lang:en"], "chatbot_id": bots[1], "has_error": False},
        {"node_id": "n", "status": "completed", "max_duration": 900},
        {
            "node_id": "ask",
            "start_date": T0 + timedelta(days=3),
            "end_date": T0 + timedelta(days=7),
        },
        {"node_id": "never"},
    ]
    for q in cases:
        for order in ("DESC", "ASC"):
            expected = oracle(known, {**q, "now": NOW, "sort_order": order})
            page = await queries.list(**q, now=NOW, limit=4, sort_order=order)
            assert page.total == min(len(expected), 6), q
            assert page.total_exact == (len(expected) <= 6), q
            got = [s.id for s in page.data]
            while page.has_next:
                page = await queries.list(
                    **q, now=NOW, limit=4, sort_order=order, cursor=page.next_cursor
                )
                got += [s.id for s in page.data]
            assert got == expected, (q, order)
            second = await queries.list(**q, now=NOW, limit=3, offset=3, sort_order=order)
            assert [s.id for s in second.data] == expected[3:6], (q, order)


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL plans by its statistics
async def test_sqlite_reads_a_node_or_variable_page_from_the_tag_index(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker
) -> None:
    build(pm, 30, seed=2)
    await tracker.flush()
    plans: list[str] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "_tags" in statement:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            plans.append(" | ".join(str(r[-1]) for r in rows))

    store: Any = tracker.store  # list reads on a SQLite file run on its reader engine
    sync = store.readers.engine if store.readers else store.engine.sync_engine
    sa.event.listen(sync, "before_cursor_execute", grab)
    try:
        await tracker.sessions.list(node_id="ask", variable="tier:1")
        await tracker.sessions.list(variable="lang:en", chatbot_id="sales", has_error=False)
    finally:
        sa.event.remove(sync, "before_cursor_execute", grab)
    pages = [p for p in plans if "TEMP B-TREE" not in p]
    assert len(plans) == 4 and len(pages) == 4, plans
    assert "ix_" in plans[1] and "tags_started" in plans[1], plans
    assert "tags_chatbot" in plans[3], plans


async def test_an_import_writes_the_tags_the_writer_keeps(
    pm: pluggy.PluginManager, tracker: sessiontrack.Tracker, database_url: str, prefix: str
) -> None:
    from conftest import drop_prefixed_tables

    from sessiontrack.store._reads import SessionFilter
    from sessiontrack.store._transfer import ExportOrder

    build(pm, 30, seed=7)
    await tracker.flush()
    written = await _stored(tracker)
    other = prefix + "copy_"
    try:
        async with sessiontrack.Tracker(database_url, prefix=other, migrate=True) as copy:
            async for batch in tracker.store.iter_details(SessionFilter(), ExportOrder()):
                await copy.store.import_sessions(batch, [])
            assert await _stored(copy) == written
            page = await copy.sessions.list(node_id="ask", limit=100)
            assert page.total == len({s for s, t, *_ in written if t == "nask"}) > 0
    finally:
        if database_url.startswith("postgresql"):
            await drop_prefixed_tables(database_url, other)
