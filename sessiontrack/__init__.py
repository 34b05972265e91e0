"""sessiontrack: session history and live monitoring for chatbot execution engines.

Report what happens through the pluggy hooks in :mod:`sessiontrack.hookspecs`; a
:class:`Tracker` records it and serves it back through ``tracker.sessions``
(:class:`SyncTracker` for engines that run in threads). Adapters for real engines are in
:mod:`sessiontrack.adapters`.
"""

from . import hookspecs
from ._ids import new_session_id
from ._sync import SyncTracker
from .errors import (
    AlertRuleNotFound,
    BufferFull,
    ErasureNotAllowed,
    InvalidParameter,
    PermissionDenied,
    SchemaOutdated,
    SessionAlreadyTerminal,
    SessionNotFound,
    SessionTrackError,
    TrackerNotRunning,
    WebhookNotFound,
)
from .events import WIRE_NAMES, StoredEvent
from .hookspecs import REQUIRED, hookimpl, hookspec
from .models import (
    AuditRecord,
    ErasureResult,
    LLMCall,
    Message,
    MessageMatch,
    MessageSearchPage,
    NodeExecution,
    NodeTotals,
    Page,
    Principal,
    SessionDetail,
    SessionSummary,
    Stats,
    StopManyResult,
    ToolCall,
)
from .status import ACTIVE_STATUSES, TERMINAL_STATUSES, Status
from .tracker import Tracker, TrackerOptions, TrackerStats

__version__ = "0.1.0"

__all__ = [
    "ACTIVE_STATUSES",
    "REQUIRED",
    "TERMINAL_STATUSES",
    "WIRE_NAMES",
    "AlertRuleNotFound",
    "AuditRecord",
    "BufferFull",
    "ErasureNotAllowed",
    "ErasureResult",
    "InvalidParameter",
    "LLMCall",
    "Message",
    "MessageMatch",
    "MessageSearchPage",
    "NodeExecution",
    "NodeTotals",
    "Page",
    "PermissionDenied",
    "Principal",
    "SchemaOutdated",
    "SessionAlreadyTerminal",
    "SessionDetail",
    "SessionNotFound",
    "SessionSummary",
    "SessionTrackError",
    "Stats",
    "Status",
    "StopManyResult",
    "StoredEvent",
    "SyncTracker",
    "ToolCall",
    "Tracker",
    "TrackerNotRunning",
    "TrackerOptions",
    "TrackerStats",
    "WebhookNotFound",
    "hookimpl",
    "hookspec",
    "hookspecs",
    "new_session_id",
]
