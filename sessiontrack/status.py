"""Session statuses and the rules for moving between them."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The status of a session.

    Active statuses move freely among themselves; an active session may become terminal;
    nothing leaves a terminal status.
    """

    RUNNING = "running"
    WAITING_INPUT = "waiting_input"
    WAITING_FLOW = "waiting_flow"
    COMPLETED = "completed"
    EXPIRED = "expired"
    STOPPED = "stopped"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


# Everything else about statuses (these sets, the HTTP API's enum and patterns, the
# OpenAPI document) is derived from the class above: add a status there, and only there.
STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in Status)
"""Every status, in declaration order (the order the HTTP API documents them in)."""
ACTIVE_STATUSES: frozenset[str] = frozenset(
    s.value for s in (Status.RUNNING, Status.WAITING_INPUT, Status.WAITING_FLOW)
)
ALL_STATUSES: frozenset[str] = frozenset(STATUS_VALUES)
TERMINAL_STATUSES: frozenset[str] = ALL_STATUSES - ACTIVE_STATUSES
