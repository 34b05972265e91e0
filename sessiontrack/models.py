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
    """

    id: str
    chatbot_ids: frozenset[str] | None = None
    can_see_pii: bool = True

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


@dataclass(frozen=True, kw_only=True, slots=True)
class Stats:
    active: int
    completed_today: int
    total: int
    by_status: dict[str, int]
