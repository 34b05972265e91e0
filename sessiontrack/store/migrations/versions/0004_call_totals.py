"""Session totals of LLM and tool calls.

Revision ID: 0004
Revises: 0003

Adds ``input_tokens``, ``output_tokens``, ``cost``, ``llm_calls``, ``tool_calls`` and
``error_count`` to the sessions, all 0 for the existing rows except ``error_count``, which
is backfilled from the node errors already in the log (no LLM or tool call was logged
before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from sessiontrack.store._tables import total_columns

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}sessions") as batch:
        for column in total_columns():
            batch.add_column(column)
    q = op.get_context().dialect.identifier_preparer.quote
    sessions, events = q(f"{p}sessions"), q(f"{p}events")
    failed = (
        "data ->> 'error' IS NOT NULL"
        if op.get_context().dialect.name == "postgresql"
        else "json_extract(data, '$.error') IS NOT NULL"
    )
    # one look-up of the session's events (by the session_id, seq index) per failing session
    node_errors = f"FROM {events} WHERE kind = 'node_executed' AND {failed}"
    op.execute(
        sa.text(
            f"UPDATE {sessions} SET error_count = (SELECT count(*) {node_errors} "
            f"AND session_id = {sessions}.id) WHERE id IN (SELECT session_id {node_errors})"
        )
    )


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}sessions") as batch:
        for column in reversed(total_columns()):
            batch.drop_column(column.name)
