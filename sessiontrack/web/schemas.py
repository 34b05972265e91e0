"""The HTTP API's pydantic models: one set for validating requests, rendering responses
and generating the OpenAPI document.

Python attributes are snake_case; the JSON is camelCase (``alias_generator``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote_to_bytes

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic.alias_generators import to_camel

from ..errors import InvalidParameter

STATUS_VALUES = ("running", "waiting_input", "waiting_flow", "completed", "expired", "stopped")
_ONE_STATUS = "|".join(STATUS_VALUES)
STATUS_PATTERN = rf"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

_SURROGATE = re.compile("[\ud800-\udfff]")

Status = Literal["running", "waiting_input", "waiting_flow", "completed", "expired", "stopped"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        from_attributes=True,
        extra="ignore",
        frozen=True,
    )


# --- requests ---------------------------------------------------------------------------


class Query(_Model):
    """Query parameters: an unknown one is a 400 naming it (a typo never goes unnoticed)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_query_string(cls, raw: bytes) -> Self:
        """Validate a raw query string, percent-decoded as strict UTF-8: bytes that are not
        UTF-8 (a lone surrogate's encoding, say) become a 400 naming the parameter instead
        of the silent U+FFFD that servers substitute."""
        return cls.model_validate(_parse_query(raw))

    @field_validator("*", mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise ValueError("must be valid UTF-8 text")
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
        return value


def _decode(part: bytes) -> str:
    # surrogateescape keeps invalid bytes visible (as lone surrogates) for _plain_text
    return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


def _parse_query(raw: bytes) -> dict[str, str]:
    query = {}
    for name, _, value in (p.partition(b"=") for p in raw.split(b"&") if p):
        key = _decode(name)
        if _SURROGATE.search(key):  # pydantic cannot even report such a key
            shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InvalidParameter(shown, "is not a parameter name (not UTF-8)")
        query[key] = _decode(value)
    return query


class NoQuery(Query):
    """Routes that take no query parameters."""


class ListQuery(Query):
    """Query parameters of ``GET /`` and ``GET /chatbot/{chatbotId}``."""

    status: Annotated[
        str | None,
        Field(pattern=STATUS_PATTERN, description="One status or several, comma-separated"),
    ] = None
    filter: Literal["all", "active", "completed"] | None = Field(
        None, description="Status group: completed means any terminal status"
    )
    chatbot_id: str | None = Field(None, min_length=1)
    conversation_id: str | None = Field(None, min_length=1)
    search: str | None = Field(
        None, max_length=200, description="Substring of the customer's name or phone"
    )
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=2**31)
    sort_by: Literal["startedAt", "updatedAt"] = "startedAt"
    sort_order: Annotated[Literal["ASC", "DESC"], Field(description="ASC or DESC, any case")] = (
        "DESC"
    )
    start_date: AwareDatetime | None = Field(
        None, description="ISO 8601 with a timezone; sessions started at or after it"
    )
    end_date: AwareDatetime | None = Field(
        None, description="ISO 8601 with a timezone; sessions started at or before it"
    )
    cursor: str | None = Field(
        None,
        min_length=1,
        description="nextCursor of the previous page: keyset paging, same sort required",
    )

    @field_validator("sort_order", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class StatsQuery(Query):
    """Query parameters of ``GET /stats``."""

    chatbot_id: str | None = Field(None, min_length=1, description="Only this chatbot")


class MessagesQuery(Query):
    """Query parameters of ``GET /{id}/messages``."""

    limit: int | None = Field(None, ge=1, le=1000, description="At most this many, newest")
    before: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Only messages older than this message id"
    )


class EventsQuery(Query):
    """Query parameters of ``GET /events``."""

    session_id: str | None = Field(
        None, pattern=UUID_PATTERN, description="Only this session's events"
    )
    last_event_id: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="Resume after this sequence number (like the Last-Event-ID header)",
    )
    access_token: str | None = Field(
        None,
        alias="access_token",
        description="Credentials for clients that cannot set headers (EventSource)",
    )


# --- responses --------------------------------------------------------------------------


class Session(_Model):
    """A session as it appears in lists."""

    id: str
    conversation_id: str | None
    chatbot_id: str
    chatbot_name: str | None
    customer_phone: str | None
    customer_name: str | None
    status: Status
    current_node_id: str | None
    current_node_label: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    node_count: int
    message_count: int
    is_active: bool


class NodeExecution(_Model):
    node_id: str
    label: str | None
    type: str | None
    at: datetime
    duration_ms: float | None
    error: str | None


class Message(_Model):
    """A message; ``id`` is its event sequence number (use it as ``before``)."""

    id: int
    session_id: str
    conversation_id: str | None
    direction: Literal["inbound", "outbound"]
    type: str
    text: str | None
    payload: dict[str, Any] | None
    node_id: str | None
    timestamp: datetime


class FlowData(_Model):
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class SessionDetail(Session):
    """A session with its history, variables, newest messages and the flow it ran."""

    node_history: list[str]
    node_executions: list[NodeExecution]
    variables: dict[str, Any]
    messages: list[Message]
    flow_data: FlowData
    flow_version: str | None
    expires_at: datetime | None
    completion_reason: str | None


class SessionPage(_Model):
    data: list[Session]
    total: int
    limit: int
    offset: int
    has_next: bool
    has_previous: bool
    next_cursor: str | None = Field(
        None, description="Pass as cursor for the next page (cost independent of depth)"
    )


class Stats(_Model):
    active: int
    completed_today: int
    total: int
    by_status: dict[str, int]


class Chatbot(_Model):
    id: str
    name: str


class StopResult(_Model):
    session_id: str
    status: Literal["stopped"]
    success: bool


class ErrorDetail(_Model):
    field: str
    message: str


class Error(_Model):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Session,
    SessionDetail,
    SessionPage,
    Message,
    Stats,
    Chatbot,
    StopResult,
    Error,
)
