"""What the query service returns: plain, typed, read-only values.

Field names are Python's (snake_case); the HTTP layer renders them in camelCase. These
dataclasses are the single definition of the wire models: ``sessiontrack.web.schemas``
builds its pydantic response models from their fields (the core needs no pydantic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from .status import ACTIVE_STATUSES

T = TypeVar("T")

MESSAGE_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
"""The directions a :class:`Message` can have."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is asking: returned by the host's authenticator.

    :param id: a stable identifier, recorded with stop requests and audit reads.
    :param chatbot_ids: the chatbots this principal may see; ``None`` means all.
    :param can_see_pii: whether phone numbers are shown unmasked.
    :param can_manage: whether it may manage notifications (``/webhooks``: add, list,
        remove, resume; ``/alerts``: rules and recent alerts); ``False`` by default, the
        local principal included. One limited to some chatbots manages only subscriptions
        and rules limited to those chatbots (and sees only their alerts).
    :param can_erase: whether this principal may erase a person's data (``POST /erase``)
        and read the audit (``GET /audit``); within ``chatbot_ids`` only.
    """

    id: str
    chatbot_ids: frozenset[str] | None = None
    can_see_pii: bool = True
    can_manage: bool = False
    can_erase: bool = False

    def may_see(self, chatbot_id: str) -> bool:
        return self.chatbot_ids is None or chatbot_id in self.chatbot_ids


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionSummary:
    """A session as it appears in lists."""

    id: str
    conversation_id: str | None
    chatbot_id: str
    chatbot_name: str | None
    customer_phone: str | None
    customer_name: str | None
    status: str
    current_node_id: str | None
    current_node_label: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    node_count: int
    message_count: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    error_count: int = 0
    """Node errors, LLM call errors and tool call errors."""

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeExecution:
    node_id: str
    label: str | None
    type: str | None
    at: datetime
    duration_ms: float | None
    error: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeTotals:
    """The figures of one node of a session: its executions and the calls made in it."""

    node_id: str
    executions: int
    duration_ms: float
    """The sum of the durations its executions reported."""
    input_tokens: int
    output_tokens: int
    cost: float
    llm_calls: int
    tool_calls: int
    error_count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMCall:
    """A call to a language model; ``seq`` is its event sequence number."""

    seq: int
    node_id: str | None
    model: str
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    ttfb_ms: float | None
    cost: float | None
    finish_reason: str | None
    error: str | None
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """A tool call; ``arguments`` and ``result`` are any JSON value, as reported."""

    seq: int
    node_id: str | None
    name: str
    call_id: str | None
    arguments: Any
    result: Any
    error: str | None
    duration_ms: float | None
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A message of a session; ``id`` is its event sequence number."""

    id: int
    session_id: str
    conversation_id: str | None
    direction: str
    type: str
    text: str | None
    payload: dict[str, Any] | None
    node_id: str | None
    timestamp: datetime
    channel_message_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionDetail(SessionSummary):
    """A session with its history, variables, messages and the flow graph it ran."""

    node_history: list[str] = field(default_factory=list)
    node_executions: list[NodeExecution] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    flow_data: dict[str, Any] = field(default_factory=lambda: {"nodes": [], "edges": []})
    flow_version: str | None = None
    expires_at: datetime | None = None
    completion_reason: str | None = None
    node_totals: list[NodeTotals] = field(default_factory=list)
    """Per node id, in the order the nodes first appear."""
    llm_call_history: list[LLMCall] = field(default_factory=list)
    tool_call_history: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, slots=True)
class Page(Generic[T]):
    """One page of a list.

    ``next_cursor`` continues after the last item with a keyset query, which costs the same
    at any depth; ``offset`` paging stays available for small offsets.
    """

    data: list[T]
    total: int
    limit: int
    offset: int
    has_next: bool
    has_previous: bool
    next_cursor: str | None = None
    total_exact: bool = True
    """``False``: with advanced filters, more sessions match than are counted; ``total``
    is then that limit (:data:`sessiontrack.query.COUNT_LIMIT`, 1,000)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageMatch:
    """A message that a search found: ``highlights`` are the ``[start, end]`` ranges of
    the matched words in ``text`` (Unicode code points, end exclusive)."""

    session_id: str
    message_id: int
    chatbot_id: str
    direction: str
    timestamp: datetime
    text: str | None
    highlights: list[list[int]]


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageSearchPage:
    """One page of message search results, newest first; ``next_cursor`` continues."""

    data: list[MessageMatch]
    next_cursor: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats:
    active: int
    completed_today: int
    total: int
    by_status: dict[str, int]


@dataclass(frozen=True, kw_only=True, slots=True)
class StopManyResult:
    """What :meth:`~sessiontrack.Tracker.stop_many` did, session ids in the order asked.

    ``stopped``: stopped by this call. ``already_ended``: had ended before its stop was
    committed (a filter selects active sessions only, so there it means one that ended
    meanwhile). ``not_found``: no such session, or one the principal may not see.
    """

    stopped: list[str]
    already_ended: list[str]
    not_found: list[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class ErasureResult:
    """What :meth:`~sessiontrack.Tracker.erase` removed.

    ``sessions``, ``events`` (every kind, messages included), ``messages``, ``tags`` (the
    list filters' rows) and ``analytics_traces`` (sessions whose figures were taken out of
    the analytics rollups) are row counts; ``audit_id`` is the audit record written.
    ``scrubbed``: the freed bytes were overwritten too (``scrub``, see docs/privacy.md);
    ``False`` when not asked for, or when a transaction (PostgreSQL) or a reader (SQLite)
    older than the erasure stayed open for 30 s, keeping what it could still see.
    """

    sessions: int
    events: int
    messages: int
    tags: int
    analytics_traces: int
    audit_id: int
    scrubbed: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """A row of the audit: an erasure or (when recorded) a read of a session.

    An erasure has ``key_kind`` (``phone``, ``conversation_id`` or ``session_id``),
    ``key_hash`` (the HMAC-SHA256 of the key, hex; never the key) and ``counts`` (the
    :class:`ErasureResult`'s figures); a read has ``session_id`` and ``what``
    (``detail``, ``messages``, ``fixture`` or ``export``).
    """

    id: int
    at: datetime
    action: str
    principal: str | None
    key_kind: str | None = None
    key_hash: str | None = None
    counts: dict[str, int] | None = None
    session_id: str | None = None
    what: str | None = None
