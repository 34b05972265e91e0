"""The sessions' tags for the nodeId and variable list filters (the "filter plans" migration).

Revision ID: 0008
Revises: 0007 (search)

Creates ``<prefix>tags`` (store/_tags.py): one row per session and node it executed
(from the node executions in the log) and per top-level scalar variable it has (from the
``variables`` column, encoded in Python so that the writer and the migration agree), then
its indexes ``(tag, started_at, session_id)`` and ``(tag, chatbot_id, started_at,
session_id)``. On a large database this takes a while (docs/storage.md gives the figure
for 1,000,000 sessions and 10,000,000 events).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import make_tables, tags_table
from sessiontrack.store._tags import variable_tags

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("sessiontrack.migrations")

BATCH = 20_000


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    tags = tags_table(sa.MetaData(), p)
    indexes = list(tags.indexes)
    for index in indexes:  # built after the rows: faster than row by row
        tags.indexes.discard(index)
    tags.create(conn)
    t = make_tables(p)
    s, e = t.sessions, t.events
    q = conn.dialect.identifier_preparer.quote
    log.info("sessiontrack: tags of the node executions")
    conn.exec_driver_sql(
        f"INSERT INTO {q(tags.name)} (session_id, tag, chatbot_id, started_at) "
        f"SELECT s.id, 'n' || r.node_id, s.chatbot_id, s.started_at FROM "
        f"(SELECT DISTINCT session_id, node_id FROM {q(e.name)} "
        f"WHERE kind = 'node_executed' AND node_id IS NOT NULL) AS r "
        f"JOIN {q(s.name)} AS s ON s.id = r.session_id"
    )
    after: str | None = None
    done = 0
    while True:
        page = sa.select(s.c.id, s.c.chatbot_id, s.c.started_at, s.c.variables)
        if after is not None:
            page = page.where(s.c.id > after)
        rows = conn.execute(page.order_by(s.c.id).limit(BATCH)).all()
        if not rows:
            break
        add = [
            {"session_id": r.id, "tag": tag, "chatbot_id": r.chatbot_id, "started_at": r.started_at}
            for r in rows
            if isinstance(r.variables, dict)
            for tag in sorted(variable_tags(r.variables))
        ]
        if add:
            conn.execute(tags.insert(), add)
        after = rows[-1].id
        done += len(rows)
        log.info("sessiontrack: tags of the variables: %d sessions", done)
    for index in indexes:
        index.create(conn)
    if conn.dialect.name == "postgresql":
        op.execute(f"ANALYZE {q(tags.name)}")


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    op.drop_table(f"{p}tags")
