"""Rebuilding the analytics rollups from the event log.

:func:`replay` folds the whole log, in sequence order and in chunks, with the same code
the writer runs on each batch (:class:`~._rollup.Rollup`), so a rebuilt database holds the
rollups that live ingestion would have written. It works on a synchronous connection: the
migration that creates the tables calls it directly, and :func:`rebuild` runs it through
``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..events import SESSION_STARTED, StoredEvent
from ._rollup import REBUILDS, Rollup, Trace

if TYPE_CHECKING:
    from ..store._tables import Tables
    from ..store.sqlalchemy import SQLAlchemyStore

log = logging.getLogger(__name__)
CHUNK = 50_000
"""Events folded and written at a time."""

Progress = Callable[[int, int], None]
"""``progress(events_done, events_total)``."""


def clear(conn: Connection, tables: Tables) -> None:
    """Delete every rollup, path and trace."""
    for table in (tables.an_counts, tables.an_bins, tables.an_paths, tables.an_traces):
        conn.execute(table.delete())


def replay(
    conn: Connection,
    tables: Tables,
    *,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> int:
    """Fold every event of the log into the rollups (which should be empty: see
    :func:`clear`), ``chunk`` events at a time; returns how many events were read.

    The log is read with the driver's plain rows (no SQLAlchemy type processing: that
    was most of a replay's time), ``data`` parsed by orjson and ``at`` made aware here.
    The traces a chunk touched stay in memory for the next one (they are what the chunk
    wrote), so only sessions not seen in the previous chunk have theirs loaded.
    """
    from ..store._bulk import bulk_writer  # the store imports this package's rollup

    bulk = bulk_writer(tables, conn.dialect)
    e = tables.events
    total = conn.scalar(sa.select(sa.func.count()).select_from(e)) or 0
    read = _reader(conn, e)
    path_keys: dict[tuple[str, str], str] = {}
    kept: dict[str, Trace] = {}  # the previous chunk's traces, as written
    done, after = 0, -(2**63)
    while True:
        events = read(after, chunk)
        if not events:
            break
        started = {ev.session_id for ev in events if ev.kind == SESSION_STARTED}
        traces: dict[str, Trace] = {}
        missing = []
        for sid in {ev.session_id for ev in events} - started:
            tr = kept.get(sid)
            if tr is None:
                missing.append(sid)
            else:
                traces[sid] = tr
        if missing:
            traces.update(bulk.load_traces_sync(conn, missing))
        rollup = Rollup(traces, path_keys)
        rollup.add(events)
        bulk.write_rollup_sync(conn, rollup)
        for tr in traces.values():
            tr.dirty = tr.new = False
        kept = traces
        done += len(events)
        after = events[-1].seq
        if progress is not None:
            progress(done, total)
    log.info("sessiontrack: analytics rebuilt from %d events", done)
    return done


def _reader(conn: Connection, e: sa.Table) -> Callable[[int, int], list[StoredEvent]]:
    """``read(after, n)``: the next ``n`` events of the log after seq ``after``."""
    q = conn.dialect.identifier_preparer.quote
    if conn.dialect.name == "postgresql":
        # asyncpg hands timestamptz back aware (UTC); uuid and jsonb as text, parsed here
        picks = (
            "seq, kind, CAST(session_id AS text), chatbot_id, at, flow_version, CAST(data AS text)"
        )
        at_of: Callable[[Any], datetime] = _aware
    else:
        picks = "seq, kind, session_id, chatbot_id, at, flow_version, data"
        at_of = _utc_of_text
    # a text() statement: its columns are untyped, so the rows come as the driver made them
    sql = sa.text(f"SELECT {picks} FROM {q(e.name)} WHERE seq > :after ORDER BY seq LIMIT :n")

    def read(after: int, n: int) -> list[StoredEvent]:
        result = conn.execute(sql, {"after": after, "n": n})
        try:
            rows = result.cursor.fetchall()  # the DB-API's rows: no Row object each
        finally:
            result.close()
        return [
            StoredEvent(
                seq=seq,
                kind=kind,
                session_id=sid,
                chatbot_id=cid,
                at=at_of(at),
                flow_version=version,
                data=_loads(data),
            )
            for seq, kind, sid, cid, at, version, data in rows
        ]

    return read


def _loads(text: str) -> Any:
    """JSON text as the writer wrote it (``_bulk.dumps``): orjson's, or the standard
    library's for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _aware(value: datetime) -> datetime:
    return value


def _utc_of_text(text: str) -> datetime:
    """A timestamp as SQLite stores it (naive UTC text, see ``UTCDateTime``), aware."""
    return datetime.fromisoformat(text + "+00:00")  # tzinfo: timezone.utc, i.e. UTC


async def rebuild(
    store: SQLAlchemyStore, *, progress: Progress | None = None, chunk: int = CHUNK
) -> int:
    """Delete every rollup, path and trace and replay the whole log, in ONE transaction
    that holds the log's write lock: writers (every process's batches) wait until it
    commits, and readers see the old rollups until then; then, on PostgreSQL,
    :func:`vacuum`. Returns the events replayed.
    """
    tables = store.tables
    async with store.engine.begin() as conn:
        st = tables.state
        # the write lock, as every batch takes it first (SQLAlchemyStore._lock_log)
        await conn.execute(st.update().where(st.c.key == "last_seq").values(value=st.c.value))
        await conn.run_sync(clear, tables)
        rebuilds = await conn.scalar(sa.select(st.c.value).where(st.c.key == REBUILDS))
        if rebuilds is None:
            await conn.execute(st.insert().values(key=REBUILDS, value=1))
        else:
            await conn.execute(
                st.update().where(st.c.key == REBUILDS).values(value=int(rebuilds) + 1)
            )
        done = await conn.run_sync(lambda c: replay(c, tables, progress=progress, chunk=chunk))
    if store.engine.dialect.name == "postgresql":
        await vacuum(store)
    return done


async def vacuum(store: SQLAlchemyStore) -> None:
    """``VACUUM (ANALYZE)`` the rollups (PostgreSQL, after the rebuild's commit: VACUUM
    cannot run in a transaction). It sets the visibility map, without which the reads'
    sums of ``an_counts`` and ``an_bins`` are not index-only scans of their covering
    primary keys but visit a heap block per few rows; autovacuum would do the same in
    time, where it is on."""
    t = store.tables
    q = store.engine.dialect.identifier_preparer.quote
    async with store.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in (t.an_counts, t.an_bins, t.an_paths, t.an_traces):
            await auto.exec_driver_sql(f"VACUUM (ANALYZE) {q(table.name)}")
