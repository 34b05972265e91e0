"""The exceptions sessiontrack raises.

Each class also inherits the builtin it refines, so ``except LookupError`` keeps working
for callers that do not know this library.
"""

from __future__ import annotations


class SessionTrackError(Exception):
    """Base class of every sessiontrack error."""


class SessionNotFound(SessionTrackError, LookupError):
    """No session has this id (or the principal may not see it)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} not found")
        self.session_id = session_id


class SessionAlreadyTerminal(SessionTrackError, ValueError):
    """The session has a terminal status, so it cannot be stopped or changed."""

    def __init__(self, session_id: str, status: str) -> None:
        super().__init__(f"session {session_id} is already {status}")
        self.session_id = session_id
        self.status = status


class BufferFull(SessionTrackError, RuntimeError):
    """The tracker's in-memory buffer is at its bound and the overflow policy is 'raise'."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"sessiontrack buffer is full ({limit} events not yet committed); "
            "await tracker.flush() to apply back-pressure or raise max_buffered"
        )
        self.limit = limit


class TrackerNotRunning(SessionTrackError, RuntimeError):
    """The tracker was used outside ``async with`` (or after it closed)."""


class SchemaOutdated(SessionTrackError, RuntimeError):
    """The database schema is older than this version of sessiontrack expects."""

    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(
            f"sessiontrack tables are at revision {current or 'none'}, this version needs {head}: "
            "run `sessiontrack migrate --database-url URL` or pass migrate=True"
        )
        self.current = current
        self.head = head


class InvalidParameter(SessionTrackError, ValueError):
    """A query argument is out of range or malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PermissionDenied(SessionTrackError, PermissionError):
    """The principal may not do this (``action`` says what): 403."""

    def __init__(self, action: str, why: str) -> None:
        super().__init__(f"not allowed to {action}: {why}")
        self.action = action
        self.why = why


class WebhookNotFound(SessionTrackError, LookupError):
    """No webhook subscription has this id (or the principal may not see it)."""

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"webhook {webhook_id} not found")
        self.webhook_id = webhook_id


class AlertRuleNotFound(SessionTrackError, LookupError):
    """No alert rule has this id (or the principal may not see it)."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"alert rule {rule_id} not found")
        self.rule_id = rule_id


class ErasureNotAllowed(SessionTrackError, PermissionError):
    """The principal may not erase (nor read the audit): its ``can_erase`` is false."""

    def __init__(self, principal: str) -> None:
        super().__init__(f"principal {principal!r} may not erase data nor read the audit")
        self.principal = principal
