"""The audit table of erasures and audited reads, and the key of its hashes.

Revision ID: 0010
Revises: 0009 (notify)

Creates ``<prefix>audit`` (a row per erasure, and per audited read when the tracker is
asked to record them) and ``<prefix>audit_key`` with one row: 32 random bytes, the key of
the HMAC-SHA256 an erasure records instead of the key it erased (docs/privacy.md says why
an HMAC and what this key protects against). Both are new and empty: instant.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import audit_tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    conn = op.get_bind()
    audit, key = audit_tables(sa.MetaData(), p)
    audit.create(conn)
    key.create(conn)
    conn.execute(key.insert().values(id=1, key=os.urandom(32), created_at=datetime.now(UTC)))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    op.drop_table(f"{p}audit_key")
    op.drop_table(f"{p}audit")
