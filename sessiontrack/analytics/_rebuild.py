"""Rebuilding the analytics rollups from the event log.

:func:`replay` folds the whole log, in sequence order and in chunks, with the same code
the writer runs on each batch (:class:`~._rollup.Rollup`), so a rebuilt database holds the
rollups that live ingestion would have written. It works on a synchronous connection: the
migration that creates the tables calls it directly, and :func:`rebuild` runs it through
``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..events import SESSION_STARTED, StoredEvent
from ._rollup import Rollup

if TYPE_CHECKING:
    from ..store._tables import Tables
    from ..store.sqlalchemy import SQLAlchemyStore

log = logging.getLogger(__name__)
CHUNK = 20_000
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
    :func:`clear`), ``chunk`` events at a time; returns how many events were read."""
    from ..store._bulk import bulk_writer  # the store imports this package's rollup

    bulk = bulk_writer(tables, conn.dialect)
    e = tables.events
    total = conn.scalar(sa.select(sa.func.count()).select_from(e)) or 0
    query = sa.select(e.c.seq, e.c.kind, e.c.session_id, e.c.chatbot_id, e.c.at)
    query = query.add_columns(e.c.flow_version, e.c.data).order_by(e.c.seq).limit(chunk)
    done, after = 0, None
    while True:
        q = query if after is None else query.where(e.c.seq > after)
        events = [
            StoredEvent(
                seq=r.seq,
                kind=r.kind,
                session_id=str(r.session_id),
                chatbot_id=r.chatbot_id,
                at=r.at,
                flow_version=r.flow_version,
                data=r.data,
            )
            for r in conn.execute(q)
        ]
        if not events:
            break
        started = {ev.session_id for ev in events if ev.kind == SESSION_STARTED}
        ids = list({ev.session_id for ev in events} - started)
        rollup = Rollup(bulk.load_traces_sync(conn, ids))
        rollup.add(events)
        bulk.write_rollup_sync(conn, rollup)
        done += len(events)
        after = events[-1].seq
        if progress is not None:
            progress(done, total)
    log.info("sessiontrack: analytics rebuilt from %d events", done)
    return done


async def rebuild(
    store: SQLAlchemyStore, *, progress: Progress | None = None, chunk: int = CHUNK
) -> int:
    """Delete every rollup, path and trace and replay the whole log, in ONE transaction
    that holds the log's write lock: writers (every process's batches) wait until it
    commits, and readers see the old rollups until then. Returns the events replayed.
    """
    tables = store.tables
    async with store.engine.begin() as conn:
        st = tables.state
        # the write lock, as every batch takes it first (SQLAlchemyStore._lock_log)
        await conn.execute(st.update().where(st.c.key == "last_seq").values(value=st.c.value))
        await conn.run_sync(clear, tables)
        return await conn.run_sync(lambda c: replay(c, tables, progress=progress, chunk=chunk))
