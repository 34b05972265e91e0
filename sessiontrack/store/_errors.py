"""Telling an outage from a refusal: which driver errors mean "not now"."""

from __future__ import annotations

import sqlalchemy as sa

from ._bulk import transient_sqlstate

_SQLITE_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
    "SQLITE_READONLY",
)


def is_transient(exc: BaseException) -> bool:
    """Errors that mean "the database is not reachable now", worth retrying.

    SQLite raises ``OperationalError`` for a locked or unreadable file but also for a
    statement it refuses (say, JSON nested deeper than it parses): its error code tells
    the two apart, so a report SQLite refuses is isolated instead of retried forever.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlite_error = getattr(exc.orig, "sqlite_errorname", None)
        if isinstance(sqlite_error, str):
            return sqlite_error.startswith(_SQLITE_TRANSIENT)
        if transient_sqlstate(getattr(exc.orig, "sqlstate", None)):
            return True
        return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
    return isinstance(exc, OSError | TimeoutError | ConnectionError)
