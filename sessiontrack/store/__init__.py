"""Storage: the SQLAlchemy Core store for SQLite and PostgreSQL, and its migrations."""

from ._reads import SessionFilter
from ._tables import DEFAULT_PREFIX, Tables, make_tables
from ._urls import normalize_url
from .sqlalchemy import SQLAlchemyStore, mask_url

__all__ = [
    "DEFAULT_PREFIX",
    "SQLAlchemyStore",
    "SessionFilter",
    "Tables",
    "make_tables",
    "mask_url",
    "normalize_url",
]
