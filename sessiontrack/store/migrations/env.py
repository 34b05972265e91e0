"""Alembic environment for sessiontrack's own tables; run through ``store._migrate``."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
prefix: str = config.attributes["prefix"]

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=f"{prefix}alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=lambda name, type_, parent: type_ != "table" or (name or "").startswith(prefix),
)
with context.begin_transaction():
    context.run_migrations()
