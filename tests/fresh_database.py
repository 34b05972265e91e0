"""A PostgreSQL database of its own for a test whose code uses the default table prefix
(the README's, the quickstart's and the example's code has no ``prefix=``): created on the
test server, dropped afterwards, so parallel runs never share those tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_URL, require_postgres


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[sa.URL]:
    """Yield the URL of a new, empty database on the test server (as asyncpg's URL)."""
    await require_postgres()
    server = sa.make_url(POSTGRES_URL)
    name = f"st_docs_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name)
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
