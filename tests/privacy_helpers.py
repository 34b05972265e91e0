"""Reading a database as bytes, for the privacy proofs (redaction, erasure).

SQLite: the file with its WAL and shared-memory index. PostgreSQL: every row of the
prefix's tables as text, and the files of every relation of the prefix (tables, their
TOAST tables, all their indexes) after a CHECKPOINT, read with ``pg_read_binary_file``
(which needs a superuser, as the test server's ``postgres`` is).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

# Every relation of the prefix's tables: the tables, their TOAST tables, all their indexes.
RELATIONS = """
WITH t AS (SELECT oid, reltoastrelid FROM pg_class WHERE relkind = 'r' AND relname LIKE :p),
     heap AS (SELECT oid FROM t UNION SELECT reltoastrelid FROM t WHERE reltoastrelid <> 0)
SELECT pg_relation_filepath(r.oid) FROM (
    SELECT oid FROM heap
    UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM heap)
) r
"""


def sqlite_files(folder: Path, name: str = "sessions.db") -> bytes:
    """The SQLite database ``name`` in ``folder`` with its ``-wal`` and ``-shm``, as bytes."""
    files = sorted(folder.glob(f"{name}*"))
    assert files and files[0].name == name, files
    return b"".join(f.read_bytes() for f in files)


async def postgres_dump(url: str, prefix: str) -> tuple[bytes, bytes]:
    """Every row of the prefix's tables as text; the files of every relation of them."""
    engine = create_async_engine(url)
    rows, files = [], []
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE :p"),
                    {"p": prefix + "%"},
                )
            ).scalars()
            for table in list(tables):
                for (row,) in await conn.execute(sa.text(f'SELECT t::text FROM "{table}" t')):
                    rows.append(row.encode())
            await conn.execute(sa.text("CHECKPOINT"))  # the relation files, up to date
            relations = await conn.execute(sa.text(RELATIONS), {"p": prefix + "%"})
            paths = [p for (p,) in relations if p is not None]
            assert len(paths) > 10, paths
            for path in paths:
                read = sa.text("SELECT pg_read_binary_file(:f)")
                files.append((await conn.execute(read, {"f": path})).scalar_one())
    finally:
        await engine.dispose()
    return b"\n".join(rows), b"".join(files)


async def postgres_wal(url: str, start_lsn: str) -> bytes:
    """The WAL segments written since ``start_lsn``, as bytes (``pg_ls_waldir`` and
    ``pg_read_binary_file``; the caller keeps them from recycling, e.g. with a slot)."""
    engine = create_async_engine(url)
    wal = []
    try:
        async with engine.connect() as conn:
            segments = await conn.execute(
                sa.text(
                    "SELECT name FROM pg_ls_waldir() "
                    "WHERE name >= pg_walfile_name(CAST(CAST(:s AS text) AS pg_lsn)) "
                    "AND name <= pg_walfile_name(pg_current_wal_lsn()) "
                    "AND length(name) = 24 ORDER BY name"
                ),
                {"s": start_lsn},
            )
            for (name,) in list(segments):
                read = sa.text("SELECT pg_read_binary_file(:f)")
                wal.append((await conn.execute(read, {"f": f"pg_wal/{name}"})).scalar_one())
    finally:
        await engine.dispose()
    return b"".join(wal)
