"""Case-folded customer-name search key and per-(chatbot, status) counters.

Revision ID: 0002
Revises: 0001

Both are backfilled from the existing rows: ``name_key`` in Python (``str.casefold``, the
same function the writer uses, which SQL's ``lower()`` is not) and the counters with one
``INSERT … SELECT … GROUP BY``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}sessions") as batch:
        batch.add_column(sa.Column("name_key", sa.String(500)))
    sessions = sa.table(
        f"{p}sessions",
        sa.column("id"),
        sa.column("customer_name"),
        sa.column("name_key"),
        sa.column("chatbot_id"),
        sa.column("status"),
    )
    conn = op.get_bind()
    last_id = None
    while True:
        q = (
            sa.select(sessions.c.id, sessions.c.customer_name)
            .where(sessions.c.customer_name.is_not(None))
            .order_by(sessions.c.id)
            .limit(_BATCH)
        )
        if last_id is not None:
            q = q.where(sessions.c.id > last_id)
        rows = conn.execute(q).all()
        if not rows:
            break
        conn.execute(
            sessions.update()
            .where(sessions.c.id == sa.bindparam("b_id"))
            .values(name_key=sa.bindparam("key")),
            [{"b_id": r.id, "key": r.customer_name.casefold()} for r in rows],
        )
        last_id = rows[-1].id
    counts = op.create_table(
        f"{p}counts",
        sa.Column("chatbot_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    conn.execute(
        counts.insert().from_select(
            ["chatbot_id", "status", "n"],
            sa.select(sessions.c.chatbot_id, sessions.c.status, sa.func.count()).group_by(
                sessions.c.chatbot_id, sessions.c.status
            ),
        )
    )


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    op.drop_table(f"{p}counts")
    with op.batch_alter_table(f"{p}sessions") as batch:
        batch.drop_column("name_key")
