"""Index sessions by (chatbot_id, started_at, id).

Revision ID: 0003
Revises: 0002

A chatbot's sessions newest first, with no status or with several statuses, are then read
in index order and stop after one page instead of sorting all of that chatbot's sessions.
"""

from __future__ import annotations

from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.create_index(
        f"ix_{p}sessions_chatbot_started", f"{p}sessions", ["chatbot_id", "started_at", "id"]
    )


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    op.drop_index(f"ix_{p}sessions_chatbot_started", f"{p}sessions")
