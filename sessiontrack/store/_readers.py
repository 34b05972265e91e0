"""SQLite's reader engine: synchronous connections that the list reads run on in a thread.

A read through aiosqlite hands each DBAPI call (cursor, execute, fetch, close) to the
connection's own thread and waits for the answer on the event loop: half a dozen
thread hand-offs per query, each passing the GIL back and forth. Under 50 concurrent
requests those hand-offs, not SQLite, were most of a list request's time. Here one read
(the counters and the page, say) is one hop: a worker thread runs it all on a plain
``sqlite3`` connection, which releases the GIL while SQLite works.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

READERS = 4
"""Reader connections (and threads); SQLite readers run in parallel under WAL."""


def _reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA query_only=ON")  # this engine never writes
    cursor.close()


@dataclass(frozen=True)
class Readers:
    engine: sa.Engine
    executor: ThreadPoolExecutor
    """As many threads as the engine has connections: a read never waits for the pool."""
    quick: sa.Engine
    """One connection of its own for the quick reads run on the event loop: never
    waiting for a connection that a worker thread's slow read holds."""

    def dispose(self) -> None:
        self.executor.shutdown(wait=True)
        self.engine.dispose()
        self.quick.dispose()


def sqlite_readers(url: sa.URL, size: int = READERS) -> Readers | None:
    """Reader connections to the SQLite file of ``url``, or ``None`` for an in-memory
    database (its connections would each see a database of their own)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode"):
        return None
    sync_url = url.set(drivername="sqlite+pysqlite")
    engine = sa.create_engine(
        sync_url,
        poolclass=sa.pool.QueuePool,
        pool_size=size,
        max_overflow=0,
        # each read runs in whichever worker thread the limiter lends it
        connect_args={"check_same_thread": False},
    )
    sa.event.listen(engine, "connect", _reader_pragmas)
    # the event loop's thread, though not the one that opened the store, perhaps
    quick = sa.create_engine(
        sync_url, poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
    )
    sa.event.listen(quick, "connect", _reader_pragmas)
    executor = ThreadPoolExecutor(size, thread_name_prefix="sessiontrack-reader")
    return Readers(engine=engine, executor=executor, quick=quick)
