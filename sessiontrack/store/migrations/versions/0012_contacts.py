"""The customer search reads distinct names and phones: ``contacts``.

Revision ID: 0012
Revises: 0011 (alerts)

Creates ``<prefix>contacts`` (each distinct name key and phone of the sessions, once) with
its trigram index (SQLite: the FTS5 table ``contact_fts`` keyed by the contact's id, kept
in step by triggers; PostgreSQL: a ``pg_trgm`` GIN index on the value), and B-tree
indexes on ``sessions.name_key`` and ``sessions.customer_phone``; drops migration 0007's
per-session trigram index. A customer search then finds the matching values among the
distinct ones and reads their sessions by those indexes (store/_search.py). On 1M
sessions the upgrade takes about a minute (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._search import SearchSQL
from sessiontrack.store._tables import contact_indexes, contacts_table, make_tables
from sessiontrack.store.migrations._legacy import (
    backfill_contacts_0007,
    contact_drop_statements_0007,
    contact_statements_0007,
)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("sessiontrack.migrations")


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    dialect = conn.dialect.name
    t0 = time.perf_counter()
    for sql in contact_drop_statements_0007(p, dialect):
        conn.exec_driver_sql(sql)
    contacts_table(sa.MetaData(), p).create(conn)
    log.info("sessiontrack: contacts: collecting and indexing the sessions' names and phones")
    SearchSQL(make_tables(p), dialect).build_contacts(conn)
    sessions = make_tables(p).sessions
    for index in contact_indexes(p, sa.Table(sessions.name, sa.MetaData(), *_columns(sessions))):
        log.info("sessiontrack: contacts: index %s", index.name)
        index.create(conn)
    if dialect == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {p}contacts")
        conn.exec_driver_sql(f"ANALYZE {p}sessions")
    log.info("sessiontrack: contacts indexed in %.1f s", time.perf_counter() - t0)


def _columns(table: sa.Table) -> list[sa.Column[object]]:
    return [sa.Column(c.name, c.type) for c in table.columns]


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    dialect = conn.dialect.name
    search = SearchSQL(make_tables(p), dialect)
    for sql in search.contact_drop_statements():
        conn.exec_driver_sql(sql)
    op.drop_index(f"ix_{p}sessions_phone", table_name=f"{p}sessions")
    op.drop_index(f"ix_{p}sessions_name_key", table_name=f"{p}sessions")
    op.drop_table(f"{p}contacts")
    for sql in contact_statements_0007(p, dialect):
        conn.exec_driver_sql(sql)
    backfill_contacts_0007(conn, p)
