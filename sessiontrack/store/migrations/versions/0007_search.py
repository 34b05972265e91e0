"""Search indexes: message text and the customer's name and phone.

Revision ID: 0007
Revises: 0006

SQLite: the FTS5 tables ``message_fts`` (words) and ``contact_fts`` (trigrams), filled
from the stored messages and sessions. PostgreSQL: the ``pg_trgm`` extension (``CREATE
EXTENSION`` needs a role allowed to create it, or an administrator who ran it first), a
GIN index on the messages' ``to_tsvector('simple', text)`` and trigram GIN indexes on
``name_key`` and ``customer_phone``. See ``sessiontrack/store/_search.py``. On a large
database this revision takes a while: docs/search.md has the figures for 1M sessions.
Migration 0012_contacts replaced the customer search's index: 0007's is in
``sessiontrack/store/migrations/_legacy.py``.
"""

from __future__ import annotations

import logging
import time

from alembic import context, op

from sessiontrack.store._search import SearchSQL
from sessiontrack.store._tables import make_tables
from sessiontrack.store.migrations._legacy import (
    backfill_contacts_0007,
    contact_drop_statements_0007,
    contact_statements_0007,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("sessiontrack.migrations")


def _search() -> SearchSQL:
    conn = op.get_bind()
    return SearchSQL(make_tables(context.config.attributes["prefix"]), conn.dialect.name)


def upgrade() -> None:
    conn = op.get_bind()
    search = _search()
    p = context.config.attributes["prefix"]
    t0 = time.perf_counter()
    for sql in [*search.create_statements(), *contact_statements_0007(p, conn.dialect.name)]:
        log.info("sessiontrack: search index: %s", sql.split(" (")[0])
        conn.exec_driver_sql(sql)
    log.info("sessiontrack: search index: indexing the stored messages and contacts")

    def progress(done: int, total: int) -> None:
        log.info("sessiontrack: search index: %d of %d events", done, total)

    search.backfill(conn, progress)
    backfill_contacts_0007(conn, p)
    log.info("sessiontrack: search indexes built in %.1f s", time.perf_counter() - t0)


def downgrade() -> None:
    conn = op.get_bind()
    p = context.config.attributes["prefix"]
    for sql in [*_search().drop_statements(), *contact_drop_statements_0007(p, conn.dialect.name)]:
        conn.exec_driver_sql(sql)
