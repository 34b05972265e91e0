"""Indexes for the advanced list filters and for the updatedAt sorts (the "filters" migration).

Revision ID: 0006
Revises: 0005

- ``(status, updated_at, id)``, ``(chatbot_id, updated_at, id)`` and
  ``(chatbot_id, status, updated_at, id)``: a page sorted by ``updatedAt`` is read in index
  order and stops after one page instead of sorting every matching session (on SQLite,
  ``status=completed&sortBy=updatedAt`` sorted 800,000 rows: about a second);
- ``(completion_reason, started_at, id)``, ``(message_count, started_at)``;
- the duration of ended sessions (an expression index: ``EXTRACT(EPOCH FROM ...)`` on
  PostgreSQL, ``julianday`` in milliseconds on SQLite; NULL while active);
- the active sessions by ``started_at`` (partial on ``completed_at IS NULL``): an active
  session's duration runs to now;
- the sessions with an error (partial on ``error_count > 0``);
- the events of node executions by ``(node_id, session_id)`` (partial), for ``nodeId``;
- PostgreSQL only: a GIN index (``jsonb_path_ops``) on ``variables`` for ``variable``,
  then ``ANALYZE`` of the sessions for the duration expression's statistics.

Only indexes: nothing is rewritten, existing rows are indexed as they are. On a large
database the index builds take a while (docs/storage.md gives the figure for 1,000,000
sessions and 10,000,000 events).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_DURATION = {
    "postgresql": "(EXTRACT(EPOCH FROM (completed_at - started_at)))",
    "sqlite": "(round((julianday(completed_at) - julianday(started_at)) * 86400.0, 3))",
}


def _plain(p: str) -> list[tuple[str, str, list[str]]]:
    s = f"{p}sessions"
    return [
        (f"ix_{p}sessions_status_updated", s, ["status", "updated_at", "id"]),
        (f"ix_{p}sessions_chatbot_updated", s, ["chatbot_id", "updated_at", "id"]),
        (f"ix_{p}sessions_chatbot_status_updated", s, ["chatbot_id", "status", "updated_at", "id"]),
        (f"ix_{p}sessions_reason", s, ["completion_reason", "started_at", "id"]),
        (f"ix_{p}sessions_messages", s, ["message_count", "started_at"]),
    ]


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    dialect = op.get_bind().dialect.name
    for name, table, columns in _plain(p):
        op.create_index(name, table, columns)
    # not partial: PostgreSQL does not use the statistics of a partial index's expression
    op.create_index(
        f"ix_{p}sessions_duration",
        f"{p}sessions",
        [sa.text(_DURATION["postgresql" if dialect == "postgresql" else "sqlite"])],
    )
    active = sa.text("completed_at IS NULL")
    op.create_index(
        f"ix_{p}sessions_active_started",
        f"{p}sessions",
        ["started_at"],
        sqlite_where=active,
        postgresql_where=active,
    )
    erred = sa.text("error_count > 0")
    op.create_index(
        f"ix_{p}sessions_errors",
        f"{p}sessions",
        ["started_at", "id"],
        sqlite_where=erred,
        postgresql_where=erred,
    )
    ran = sa.text("kind = 'node_executed'")
    op.create_index(
        f"ix_{p}events_node",
        f"{p}events",
        ["node_id", "session_id"],
        sqlite_where=ran,
        postgresql_where=ran,
    )
    if dialect == "postgresql":
        op.create_index(
            f"ix_{p}sessions_variables",
            f"{p}sessions",
            ["variables"],
            postgresql_using="gin",
            postgresql_ops={"variables": "jsonb_path_ops"},
        )
        # the planner's statistics of the duration expression (only ANALYZE makes them)
        op.execute(f"ANALYZE {p}sessions")


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(f"ix_{p}sessions_variables", f"{p}sessions")
    op.drop_index(f"ix_{p}events_node", f"{p}events")
    op.drop_index(f"ix_{p}sessions_errors", f"{p}sessions")
    op.drop_index(f"ix_{p}sessions_active_started", f"{p}sessions")
    op.drop_index(f"ix_{p}sessions_duration", f"{p}sessions")
    for name, table, _ in reversed(_plain(p)):
        op.drop_index(name, table)
