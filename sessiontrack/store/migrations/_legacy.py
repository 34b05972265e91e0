"""Schema objects a later migration replaced, as the migration that made them wrote them:
what that migration's upgrade (and the replacing one's downgrade) creates.

- The customer search's index of migration 0007, replaced by 0012_contacts: on SQLite
  the FTS5 table ``contact_fts`` with an entry per session (rowid: the ``seq`` of its
  first event), on PostgreSQL trigram indexes on ``sessions.name_key`` and
  ``sessions.customer_phone``.
"""

from __future__ import annotations

import sqlalchemy as sa

from ...events import SESSION_STARTED


def contact_statements_0007(p: str, dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"CREATE VIRTUAL TABLE {p}contact_fts USING fts5(name, phone, "
            "content='', tokenize='trigram')"
        ]
    return [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        f"CREATE INDEX ix_{p}sessions_name_trgm ON {p}sessions USING gin (name_key gin_trgm_ops)",
        f"CREATE INDEX ix_{p}sessions_phone_trgm ON {p}sessions "
        "USING gin (customer_phone gin_trgm_ops)",
        f"ANALYZE {p}sessions",
    ]


def contact_drop_statements_0007(p: str, dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TABLE IF EXISTS {p}contact_fts"]
    return [
        f"DROP INDEX IF EXISTS ix_{p}sessions_name_trgm",
        f"DROP INDEX IF EXISTS ix_{p}sessions_phone_trgm",
    ]


def backfill_contacts_0007(conn: sa.Connection, p: str) -> None:
    """SQLite: an entry per session with a name or a phone, keyed by its first event."""
    if conn.dialect.name != "sqlite":
        return
    fts = f"{p}contact_fts"
    conn.exec_driver_sql(
        f"INSERT INTO {fts} (rowid, name, phone) "
        f"SELECT MIN(e.seq), s.name_key, s.customer_phone FROM {p}events AS e "
        f"JOIN {p}sessions AS s ON s.id = e.session_id WHERE e.kind = '{SESSION_STARTED}' "
        "AND (s.name_key IS NOT NULL OR s.customer_phone IS NOT NULL) GROUP BY s.id"
    )
    conn.exec_driver_sql(f"INSERT INTO {fts} ({fts}) VALUES ('optimize')")
