"""Reusing migrated PostgreSQL prefixes between tests, one worker at a time.

Migrating a prefix takes about half a second on PostgreSQL (some 240 DDL statements), most
of a small test's time. A test of the ``tracker`` fixture gets a prefix migrated by an
earlier test of its worker when there is one; afterwards its tables are emptied (one
``TRUNCATE … RESTART IDENTITY``) and given back the rows the migrations write (the
revision, ``last_seq``, the audit key), and the prefix goes back to the pool. Only if its
schema is still the one the migrations make: a test that changed it (a downgrade, a
trigger of its own) has its tables dropped instead, as every other test's are.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from sessiontrack.store import SQLAlchemyStore

_free: list[str] = []  # prefixes migrated and empty, ready for a test
_pristine: dict[str, Any] = {}  # "schema": fingerprint, "seed": table → (columns, rows)

_SCHEMA = """
SELECT 'rel', c.relname, c.relkind::text, '' FROM pg_class c
  WHERE c.relname LIKE :pattern
UNION ALL
SELECT 'col', c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  WHERE c.relname LIKE :pattern AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'trigger', c.relname, t.tgname, '' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relname LIKE :pattern AND NOT t.tgisinternal
UNION ALL
SELECT 'constraint', c.relname, k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  WHERE c.relname LIKE :pattern
"""


lent: set[str] = set()  # prefixes given to a test and not given back yet


def lend() -> str:
    """A migrated, empty prefix, or a new one (the test migrates it), for one test."""
    prefix = _free.pop() if _free else new_prefix()
    lent.add(prefix)
    return prefix


def pooled() -> bool:
    return bool(_free)


def new_prefix() -> str:
    return f"st{uuid.uuid4().hex[:10]}_"


def _like(prefix: str) -> str:
    return prefix.replace("_", r"\_") + "%"


async def _fingerprint(conn: AsyncConnection, prefix: str) -> list[tuple[str, ...]]:
    rows = (await conn.execute(sa.text(_SCHEMA), {"pattern": _like(prefix)})).all()
    # names without the prefix, so that two prefixes compare
    return sorted(
        tuple(str(v).replace(prefix, "<p>") for v in (kind, rel, name, detail))
        for kind, rel, name, detail in rows
    )


async def _tables(conn: AsyncConnection, prefix: str) -> list[str]:
    rows = await conn.execute(
        sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE :pattern"),
        {"pattern": _like(prefix)},
    )
    return sorted(r[0] for r in rows)


async def _learn(url: str) -> None:
    """Migrate a scratch prefix once: its schema and the rows the migrations write."""
    prefix = new_prefix()
    store = SQLAlchemyStore(url, prefix=prefix)
    await store.open(migrate=True)
    await store.close()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            _pristine["schema"] = await _fingerprint(conn, prefix)
            seed: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
            for table in await _tables(conn, prefix):
                result = await conn.execute(sa.text(f'SELECT * FROM "{table}"'))
                rows = [tuple(r) for r in result]
                if rows:
                    seed[table.removeprefix(prefix)] = (list(result.keys()), rows)
            _pristine["seed"] = seed
            await _drop(conn, prefix)
    finally:
        await engine.dispose()


async def _drop(conn: AsyncConnection, prefix: str) -> None:
    for table in await _tables(conn, prefix):
        await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))


async def give_back(url: str, prefix: str) -> None:
    """After a test: empty the prefix's tables for the next test, or drop them if the test
    changed their schema (or never migrated them)."""
    lent.discard(prefix)
    if "schema" not in _pristine:
        await _learn(url)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            if await _fingerprint(conn, prefix) != _pristine["schema"]:
                await _drop(conn, prefix)
                return
            tables = ", ".join(f'"{t}"' for t in await _tables(conn, prefix))
            await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY"))
            for table, (columns, rows) in _pristine["seed"].items():
                names = ", ".join(f'"{c}"' for c in columns)
                values = ", ".join(f":{i}" for i in range(len(columns)))
                insert = sa.text(f'INSERT INTO "{prefix}{table}" ({names}) VALUES ({values})')
                await conn.execute(insert, [{str(i): v for i, v in enumerate(r)} for r in rows])
        _free.append(prefix)
    finally:
        await engine.dispose()


async def give_back_all(url: str) -> None:
    """Give back every prefix still lent."""
    for prefix in sorted(lent):
        await give_back(url, prefix)


async def drop_all(url: str) -> None:
    """At the end of a worker's session: drop the prefixes left in the pool."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            while _free:
                await _drop(conn, _free.pop())
    finally:
        await engine.dispose()
