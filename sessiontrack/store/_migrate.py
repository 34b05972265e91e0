"""Running the package's Alembic migrations on a connection of the host's database.

The configuration is built in code: the scripts live in ``sessiontrack/store/migrations``,
the version table is ``<prefix>alembic_version``, and only the library's own tables are
touched, so a host's tables and its own ``alembic_version`` stay as they are.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

HEAD = "0011"
"""The newest revision; the tables in ``_tables.py`` are the schema at this revision."""


def _config(connection: Connection, prefix: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "sessiontrack.store:migrations")
    cfg.attributes["connection"] = connection
    cfg.attributes["prefix"] = prefix
    return cfg


def upgrade(connection: Connection, prefix: str, revision: str = "head") -> None:
    """Upgrade the library's tables to ``revision`` (default the newest)."""
    command.upgrade(_config(connection, prefix), revision)


def current(connection: Connection, prefix: str) -> str | None:
    """The revision the library's tables are at, or ``None`` before the first migration."""
    ctx = MigrationContext.configure(connection, opts={"version_table": f"{prefix}alembic_version"})
    return ctx.get_current_revision()
