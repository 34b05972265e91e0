"""The log consumers' cursors and the webhook subscriptions (issue 15).

Revision ID: 0009
Revises: 0008 (filter plans)

Creates ``<prefix>cursors`` (a named cursor per durable consumer of the event log:
``sessiontrack/consumer.py``), ``<prefix>webhooks`` (the subscriptions of
``sessiontrack.notify``) and ``<prefix>webhook_deliveries`` (their delivery log). New,
empty tables: instant on any database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import notify_tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    for table in notify_tables(sa.MetaData(), p):
        table.create(conn)


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for name in ("webhook_deliveries", "webhooks", "cursors"):
        op.drop_table(f"{p}{name}")
