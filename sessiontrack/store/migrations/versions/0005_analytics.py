"""Analytics rollups per flow version.

Revision ID: 0005
Revises: 0004

Creates ``an_counts``, ``an_bins``, ``an_paths`` and ``an_traces`` and builds them from
the event log already there (``sessiontrack.analytics._rebuild.replay``, the same fold the
writer runs on each batch), so an upgraded database answers analytics for its past
sessions at once. The replay reads the whole log: on a large database this revision takes
a while (about as long as ingesting the log took the writer's rollups).

On PostgreSQL the primary keys of ``an_counts`` and ``an_bins`` carry their value
(``INCLUDE (value)`` / ``INCLUDE (n)``), so the analytics reads sum them by index-only
scans once the visibility map is set: by autovacuum, or ``VACUUM (ANALYZE)`` of the two
tables after the upgrade where autovacuum is off (VACUUM cannot run in the migration's
transaction; ``sessiontrack analytics rebuild`` runs it after its own).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.analytics._rebuild import replay
from sessiontrack.store._tables import analytics_tables, make_tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

log = logging.getLogger("sessiontrack.migrations")


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    for table in analytics_tables(sa.MetaData(), p):
        table.create(conn)

    def progress(done: int, total: int) -> None:
        log.info("sessiontrack: analytics from the log: %d of %d events", done, total)

    replay(conn, make_tables(p), progress=progress)


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for name in ("an_traces", "an_paths", "an_bins", "an_counts"):
        op.drop_table(f"{p}{name}")
