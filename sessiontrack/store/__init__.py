"""Storage: the SQLAlchemy Core store for SQLite and PostgreSQL, and its migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._reads import SessionFilter
from ._tables import DEFAULT_PREFIX, Tables, make_tables
from ._transfer import ExportOrder, FullSession, NotEmpty
from ._urls import normalize_url
from .sqlalchemy import SQLAlchemyStore, mask_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..abc import Store


def create_store(
    url_or_engine: str | AsyncEngine, *, prefix: str = DEFAULT_PREFIX, analytics: bool = True
) -> Store:
    """The store for a database URL or an existing ``AsyncEngine`` (never disposed)."""
    return SQLAlchemyStore(url_or_engine, prefix=prefix, analytics=analytics)


__all__ = [
    "DEFAULT_PREFIX",
    "ExportOrder",
    "FullSession",
    "NotEmpty",
    "SQLAlchemyStore",
    "SessionFilter",
    "Tables",
    "create_store",
    "make_tables",
    "mask_url",
    "normalize_url",
]
