"""Initial tables: chatbots, flows, sessions, events, state.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import UTCDateTime, id_type, json_type

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.create_table(
        f"{p}chatbots",
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("current_version", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        f"{p}flows",
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("flow", json_type(), nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        f"{p}sessions",
        sa.Column("id", id_type(), primary_key=True),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("flow_version", sa.String(64)),
        sa.Column("conversation_id", sa.String(200)),
        sa.Column("customer_phone", sa.String(64)),
        sa.Column("customer_name", sa.String(500)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("current_node_id", sa.String(200)),
        sa.Column("current_node_label", sa.String(500)),
        sa.Column("variables", json_type(), nullable=False),
        sa.Column("metadata", json_type(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("idle_timeout_s", sa.Integer()),
        sa.Column("completion_reason", sa.String(200)),
        sa.Column("node_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
    )
    s = f"{p}sessions"
    op.create_index(f"ix_{p}sessions_status_started", s, ["status", "started_at", "id"])
    op.create_index(f"ix_{p}sessions_chatbot_status", s, ["chatbot_id", "status", "started_at"])
    op.create_index(f"ix_{p}sessions_started", s, ["started_at", "id"])
    op.create_index(f"ix_{p}sessions_updated", s, ["updated_at", "id"])
    op.create_index(f"ix_{p}sessions_conversation", s, ["conversation_id"])
    done = sa.text("completed_at IS NOT NULL")
    active = sa.text("completed_at IS NULL")
    op.create_index(
        f"ix_{p}sessions_completed", s, ["completed_at"], sqlite_where=done, postgresql_where=done
    )
    op.create_index(
        f"ix_{p}sessions_expiry", s, ["expires_at"], sqlite_where=active, postgresql_where=active
    )
    op.create_table(
        f"{p}events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("session_id", id_type(), nullable=False),
        sa.Column("chatbot_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("flow_version", sa.String(64)),
        sa.Column("node_id", sa.String(200)),
        sa.Column("message_id", sa.String(200)),
        sa.Column("data", json_type(), nullable=False),
    )
    e = f"{p}events"
    op.create_index(f"ix_{p}events_session_seq", e, ["session_id", "seq"])
    has_mid = sa.text("message_id IS NOT NULL")
    op.create_index(
        f"ux_{p}events_message",
        e,
        ["message_id", "session_id"],
        unique=True,
        sqlite_where=has_mid,
        postgresql_where=has_mid,
    )
    state = op.create_table(
        f"{p}state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(state, [{"key": "last_seq", "value": 0}])


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for name in ("state", "events", "sessions", "flows", "chatbots"):
        op.drop_table(f"{p}{name}")
