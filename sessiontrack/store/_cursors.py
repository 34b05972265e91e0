"""The durable consumers' cursors and their lease (``sessiontrack/consumer.py``).

A cursor is a row of ``<prefix>cursors``: a name and the last sequence number its
consumer handled. A lease makes one process at a time run a group of consumers: on
PostgreSQL a session-level advisory lock held on a connection of its own (released by the
server the moment that connection ends, a killed process included), on SQLite an
exclusive ``flock`` on a file beside the database (released by the kernel when the
process ends), for an in-memory database a lock of this process.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..abc import Lease
from ._part import StorePart
from ._shield import uncancelled

log = logging.getLogger(__name__)
_LOCAL_LEASES: set[str] = set()  # in-memory databases, and flock files held in this process
_LOCAL_GUARD = threading.Lock()


def lease_key(prefix: str, name: str) -> int:
    """The advisory lock number of a lease: a stable signed 64-bit hash of its name."""
    digest = hashlib.blake2b(f"{prefix}consumers:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_path(database: str, name: str) -> Path:
    """The lock file of lease ``name`` beside the SQLite file ``database``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return Path(f"{database}.{safe}.consumers.lock")


class _PostgresLease(Lease):
    def __init__(self, conn: AsyncConnection, key: int) -> None:
        self._conn = conn
        self._key = key

    async def alive(self) -> bool:
        try:
            with anyio.fail_after(10):
                await self._conn.execute(sa.text("SELECT 1"))
        except Exception:
            log.warning("sessiontrack: the consumers' lease connection failed", exc_info=True)
            return False
        return True

    async def release(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            except Exception:
                await self._conn.invalidate()  # the server ends the session, and the lock
            finally:
                await self._conn.close()


class _FileLease(Lease):
    def __init__(self, fd: int | None, token: str) -> None:
        self._fd = fd
        self._token = token

    async def alive(self) -> bool:
        return True

    async def release(self) -> None:
        with _LOCAL_GUARD:
            _LOCAL_LEASES.discard(self._token)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


class CursorQueries(StorePart):
    """The cursors' SQL, mixed into :class:`~sessiontrack.store.SQLAlchemyStore`."""

    def _dialect_insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def read_cursor(self, name: str) -> int | None:
        c = self.tables.cursors
        async with uncancelled(self.engine.connect()) as conn:
            value = await conn.scalar(sa.select(c.c.seq).where(c.c.name == name))
        return None if value is None else int(value)

    async def create_cursor(self, name: str, seq: int | None = None) -> int:
        c, st = self.tables.cursors, self.tables.state
        async with uncancelled(self.engine.begin()) as conn:
            if seq is None:
                head = await conn.scalar(sa.select(st.c.value).where(st.c.key == "last_seq"))
                seq = int(head or 0)
            stmt = self._dialect_insert(c).values(name=name, seq=seq, updated_at=datetime.now(UTC))
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            value = await conn.scalar(sa.select(c.c.seq).where(c.c.name == name))
        return int(value or 0)

    async def advance_cursor(self, name: str, seq: int) -> bool:
        c = self.tables.cursors
        with anyio.CancelScope(shield=True):  # a cancelled UPDATE would leave it unsure
            async with uncancelled(self.engine.begin()) as conn:
                done = await conn.execute(
                    c.update()
                    .where(c.c.name == name, c.c.seq < seq)
                    .values(seq=seq, updated_at=datetime.now(UTC))
                )
                if done.rowcount:
                    return True
                exists = await conn.scalar(sa.select(c.c.seq).where(c.c.name == name))
        return exists is not None

    async def delete_cursor(self, name: str) -> None:
        c = self.tables.cursors
        async with uncancelled(self.engine.begin()) as conn:
            await conn.execute(c.delete().where(c.c.name == name))

    async def cursors(self, prefix: str = "") -> dict[str, int]:
        c = self.tables.cursors
        q = sa.select(c.c.name, c.c.seq)
        if prefix:
            q = q.where(c.c.name.startswith(prefix, autoescape=True))
        async with uncancelled(self.engine.connect()) as conn:
            return {r.name: int(r.seq) for r in await conn.execute(q)}

    async def acquire_lease(self, name: str) -> Lease | None:
        if self.dialect == "postgresql":
            return await self._pg_lease(name)
        return self._file_lease(name)

    async def _pg_lease(self, name: str) -> Lease | None:
        key = lease_key(self.tables.prefix, name)
        conn = await self.engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = await conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        if not got:
            await conn.close()
            return None
        return _PostgresLease(conn, key)

    def _file_lease(self, name: str) -> Lease | None:
        database = self.engine.url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file:")
        token = f"{id(self.engine) if memory else os.path.abspath(database)}:{name}"
        with _LOCAL_GUARD:
            if token in _LOCAL_LEASES:
                return None
            fd = None
            if not memory:
                path = lock_path(os.path.abspath(database), name)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return None
            _LOCAL_LEASES.add(token)
        return _FileLease(fd, token)
