"""Alert rules, the alerts they fired, and the alerts' outbox (issue 15, part 2).

Revision ID: 0011
Revises: 0010 (audit)

Creates ``<prefix>alert_rules`` (the rules of ``sessiontrack.notify.Alerts``: defined in
code or through ``/alerts/rules``), ``<prefix>alerts`` (one row per alert fired, unique
per rule and key) and ``<prefix>alert_deliveries`` (a row per alert and target: the
durable outbox the delivering process works through). New, empty tables: instant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import alert_tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    for table in alert_tables(sa.MetaData(), p):
        table.create(conn)


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for name in ("alert_deliveries", "alerts", "alert_rules"):
        op.drop_table(f"{p}{name}")
