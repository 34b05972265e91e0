"""The readers beside the store's engine.

SQLite's reader engine: synchronous connections that the list reads run on in a thread.

A read through aiosqlite hands each DBAPI call (cursor, execute, fetch, close) to the
connection's own thread and waits for the answer on the event loop: half a dozen
thread hand-offs per query, each passing the GIL back and forth. Under 50 concurrent
requests those hand-offs, not SQLite, were most of a list request's time. Here one read
(the counters and the page, say) is one hop: a worker thread runs it all on a plain
``sqlite3`` connection, which releases the GIL while SQLite works.

PostgreSQL's quick readers: a pool of asyncpg connections of their own for the quick
lists (:meth:`ReadQueries.list_sessions`), two statements each in autocommit. Checked out
of SQLAlchemy's pool, each such list paid a ping (a round trip, ``pool_pre_ping``) and
the pool's own bookkeeping, together more of the server process's CPU than the two
statements took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

READERS = 4
"""Reader connections (and threads); SQLite readers run in parallel under WAL."""
QUICK_READERS = 20
"""PostgreSQL connections of the quick lists, at the most (opened when first needed)."""


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


async def _unchanged(_connection: Any) -> None:
    """A quick reader's connection goes back to the pool as it came: its reads run in
    autocommit and change no setting (asyncpg's own check still rolls back a
    transaction left open), so the reset query of every release is skipped."""


class QuickReaders:
    """The quick lists' asyncpg pool, taken in turn: a request that waits for a connection
    gets the next one free. (asyncpg's pool hands a connection to whichever request asks
    first once it is back, so under 50 concurrent requests some waited again and again:
    the slowest took 600-700 ms where the median took 40.)"""

    def __init__(self, pool: Any, size: int) -> None:
        self.pool = pool
        self._turns = asyncio.Semaphore(size)  # first come, first served (CPython >= 3.11.1)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._turns, self.pool.acquire() as connection:
            yield connection

    async def close(self) -> None:
        await self.pool.close()


async def postgresql_quick_readers(
    engine: AsyncEngine, settings: dict[str, str], size: int = QUICK_READERS
) -> QuickReaders:
    """An asyncpg pool connecting as ``engine`` does (its URL's host, database, user and
    options, and the session ``settings``), of at most ``size`` connections. A connection
    the server has closed is seen closed when it is next acquired, and replaced: no ping
    is needed."""
    import asyncpg

    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("async_creator_fn", None)
    kwargs.pop("prepared_statement_name_func", None)
    cache = kwargs.pop("prepared_statement_cache_size", None)
    if cache is not None:
        kwargs["statement_cache_size"] = cache
    kwargs["server_settings"] = {**kwargs.get("server_settings", {}), **settings}
    pool = await asyncpg.create_pool(*args, min_size=0, max_size=size, reset=_unchanged, **kwargs)
    return QuickReaders(pool, size)
