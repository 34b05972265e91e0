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


ACTIVE_STATUSES: frozenset[str] = frozenset({"running", "waiting_input", "waiting_flow"})
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "expired", "stopped"})
ALL_STATUSES: frozenset[str] = ACTIVE_STATUSES | TERMINAL_STATUSES
