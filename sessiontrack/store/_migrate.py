"""Running the package's Alembic migrations on a connection of the host's database.

The configuration is built in code: the scripts live in ``sessiontrack/store/migrations``,
the version table is ``<prefix>alembic_version``, and only the library's own tables are
touched, so a host's tables and its own ``alembic_version`` stay as they are.

Alembic is imported only to migrate: checking the revision is one query, and a process
that finds its tables current (most starts, every command) never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0012"
"""The newest revision; the tables in ``_tables.py`` are the schema at this revision."""


_RUNNING = threading.Lock()


@asynccontextmanager
async def one_at_a_time() -> AsyncIterator[None]:
    """Hold the process's migration turn: Alembic keeps its ``context`` and ``op`` in
    module globals for the duration of a run, so two runs at once in one process (two
    trackers started together, on one event loop or in two threads) undo each other's
    (``KeyError: 'config'``). Polled, not blocking: the run holding the turn may be a
    coroutine of this very event loop, waiting for its database."""
    while not _RUNNING.acquire(blocking=False):  # noqa: ASYNC110 (a thread lock: no Event)
        await anyio.sleep(0.005)
    try:
        yield
    finally:
        _RUNNING.release()


def _config(connection: Connection, prefix: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "sessiontrack.store:migrations")
    cfg.attributes["connection"] = connection
    cfg.attributes["prefix"] = prefix
    return cfg


def upgrade(connection: Connection, prefix: str, revision: str = "head") -> None:
    """Upgrade the library's tables to ``revision`` (default the newest)."""
    from alembic import command

    command.upgrade(_config(connection, prefix), revision)


def upgrade_to_head(connection: Connection, prefix: str) -> None:
    """Upgrade the library's tables to the newest revision, unless they are there already
    (then one query: Alembic's scripts are not loaded, which is most of a run's time)."""
    if current(connection, prefix) != HEAD:
        upgrade(connection, prefix)


def current(connection: Connection, prefix: str) -> str | None:
    """The revision the library's tables are at, or ``None`` before the first migration
    (what Alembic's ``MigrationContext.get_current_revision`` reads, without Alembic)."""
    table = f"{prefix}alembic_version"
    if not sa.inspect(connection).has_table(table):
        return None
    rows = connection.execute(sa.text(f'SELECT version_num FROM "{table}"')).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"{table} holds several revisions: {rows}")
    return str(rows[0]) if rows else None
