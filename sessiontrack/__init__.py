"""sessiontrack: session history and live monitoring for chatbot execution engines.

Report what happens through the pluggy hooks in :mod:`sessiontrack.hookspecs`; a
:class:`Tracker` records it and serves it back through ``tracker.sessions``.
"""

from . import hookspecs
from ._ids import new_session_id
from ._sync import SyncTracker as SyncTracker
from .errors import (
    BufferFull,
    InvalidParameter,
    SchemaOutdated,
    SessionAlreadyTerminal,
    SessionNotFound,
    SessionTrackError,
    TrackerNotRunning,
)
from .events import WIRE_NAMES, StoredEvent
from .hookspecs import REQUIRED, hookimpl, hookspec
from .models import Message, NodeExecution, Page, Principal, SessionDetail, SessionSummary, Stats
from .status import ACTIVE_STATUSES, TERMINAL_STATUSES, Status
from .tracker import Tracker, TrackerStats

__version__ = "0.1.0"

__all__ = [
    "ACTIVE_STATUSES",
    "REQUIRED",
    "TERMINAL_STATUSES",
    "WIRE_NAMES",
    "BufferFull",
    "InvalidParameter",
    "Message",
    "NodeExecution",
    "Page",
    "Principal",
    "SchemaOutdated",
    "SessionAlreadyTerminal",
    "SessionDetail",
    "SessionNotFound",
    "SessionSummary",
    "SessionTrackError",
    "Stats",
    "Status",
    "StoredEvent",
    "Tracker",
    "TrackerNotRunning",
    "TrackerStats",
    "hookimpl",
    "hookspec",
    "hookspecs",
    "new_session_id",
]
