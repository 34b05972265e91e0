"""The HTTP API's pydantic models: one set for validating requests, rendering responses
and generating the OpenAPI document.

The response models are built from the dataclasses of :mod:`sessiontrack.models` and the
statuses of :mod:`sessiontrack.status`, so neither is written twice. Python attributes
are snake_case; the JSON is camelCase (``alias_generator``).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote_to_bytes

import pydantic
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)
from pydantic.alias_generators import to_camel

from .. import models
from .._stops import MAX_STOPS
from ..errors import InvalidParameter
from ..events import WIRE_NAMES
from ..models import MESSAGE_DIRECTIONS
from ..notify._models import MAX_BATCH
from ..query import FILTER_GROUPS, SORT_FIELDS, unfit_text
from ..status import STATUS_VALUES

_ONE_STATUS = "|".join(STATUS_VALUES)
STATUS_PATTERN = rf"^({_ONE_STATUS})(,({_ONE_STATUS}))*$"
VARIABLE_PATTERN = r'^[^:"\\\u0000]{1,200}:[^\u0000]*$'
"""``name:value``: a name of 1-200 characters without a colon, quote or backslash."""
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# Built at run time from the core's tuples, so a status is defined once (in status.py).
Status: Any = Literal.__getitem__(STATUS_VALUES)
Direction: Any = Literal.__getitem__(MESSAGE_DIRECTIONS)
Filter: Any = Literal.__getitem__(tuple(FILTER_GROUPS))
SortBy: Any = Literal.__getitem__(tuple(k for k in SORT_FIELDS if k == to_camel(k)))


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
        of the silent U+FFFD that servers substitute. A list-typed parameter may repeat
        (``variable=a:1&variable=b:2``); any other keeps its last value."""
        return cls.model_validate(_parse_query(raw, _repeatable(cls)))

    @field_validator("*", mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        problem = unfit_text(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value


def _decode(part: bytes) -> str:
    # surrogateescape keeps invalid bytes visible (as lone surrogates) for _plain_text
    return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


@functools.cache
def _repeatable(model: type[Query]) -> frozenset[str]:
    """The query-string names of a model's list-typed fields."""
    return frozenset(
        f.alias or name
        for name, f in model.model_fields.items()
        if typing.get_origin(f.annotation) in (types.UnionType, typing.Union)
        and any(typing.get_origin(a) is list for a in typing.get_args(f.annotation))
    )


def _parse_query(raw: bytes, repeatable: frozenset[str] = frozenset()) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name, _, value in (p.partition(b"=") for p in raw.split(b"&") if p):
        key = _decode(name)
        problem = unfit_text(key)
        if problem:  # pydantic cannot even report a key with a lone surrogate
            shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InvalidParameter(shown, f"is not a parameter name: it {problem}")
        if key in repeatable:
            query.setdefault(key, []).append(_decode(value))
        else:
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
    filter: Filter | None = Field(
        None, description="Status group: completed means any terminal status"
    )
    chatbot_id: str | None = Field(None, min_length=1)
    conversation_id: str | None = Field(None, min_length=1)
    search: str | None = Field(
        None, max_length=200, description="Substring of the customer's name or phone"
    )
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=2**31)
    sort_by: SortBy = "startedAt"
    sort_order: Annotated[Literal["ASC", "DESC"], Field(description="ASC or DESC, any case")] = (
        "DESC"
    )
    start_date: AwareDatetime | None = Field(
        None,
        description="ISO 8601 with a timezone, within years 1-9999 in UTC; "
        "sessions started at or after it",
    )
    end_date: AwareDatetime | None = Field(
        None,
        description="ISO 8601 with a timezone, within years 1-9999 in UTC; "
        "sessions started at or before it",
    )
    cursor: str | None = Field(
        None,
        min_length=1,
        description="nextCursor of the previous page: keyset paging, same sort required",
    )
    path: str | None = Field(
        None,
        min_length=1,
        description="Comma-separated node ids (needs chatbotId): only sessions whose "
        "current path through the flow is exactly this (as /analytics/paths lists them)",
    )
    version: str | None = Field(
        None,
        min_length=1,
        description="A flow version name: only sessions that started with that version "
        "of their chatbot's flow (with path: one version's path, as /analytics/paths "
        "counts it)",
    )

    # the advanced filters
    node_id: str | None = Field(
        None, min_length=1, description="Only sessions that executed this node at least once"
    )
    completion_reason: str | None = Field(
        None, min_length=1, description="Only sessions that ended with this reason"
    )
    min_messages: int | None = Field(None, ge=0, le=2**31 - 1, description="messageCount at least")
    max_messages: int | None = Field(None, ge=0, le=2**31 - 1, description="messageCount at most")
    min_duration: float | None = Field(
        None,
        ge=0,
        le=10**10,
        description="Seconds, at least: completedAt - startedAt once ended, "
        "now - startedAt while active",
    )
    max_duration: float | None = Field(
        None, ge=0, le=10**10, description="Seconds, at most (as minDuration)"
    )
    has_error: bool | None = Field(
        None,
        description="true: sessions with an error in a node, LLM call or tool call; false: without",
    )
    variable: list[str] | None = Field(
        None,
        max_length=10,
        description="Repeatable name:value, all must hold: the top-level variable name "
        "equals value (a quoted JSON string matches only that string; a JSON number, "
        "true, false or null matches that value or the same text; else the text)",
        # checked by the query service, which names the field "variable"
        json_schema_extra={"items": {"type": "string", "pattern": VARIABLE_PATTERN}},
    )
    q: str | None = Field(
        None,
        max_length=200,
        description="Words of a message's text: sessions with a message having every "
        "word (any case; a word ending in * is a prefix)",
    )

    @field_validator("sort_order", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("variable", mode="before")
    @classmethod
    def _each_plain(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else ():
            problem = unfit_text(item) if isinstance(item, str) else None
            if problem:
                raise ValueError(problem)
        return value


_PAGING = {"limit", "offset", "cursor", "sort_by", "sort_order"}
_FILTER_FIELDS: dict[str, Any] = {
    name: (info.annotation, info)
    for name, info in ListQuery.model_fields.items()
    if name not in _PAGING
}


class _JsonQuery(Query):
    """List parameters in a JSON body: strict JSON types (a date is an ISO string, not a
    number of seconds; a count a number)."""

    model_config = ConfigDict(strict=True)


StopFilter: Any = pydantic.create_model(
    "StopFilter",
    __base__=_JsonQuery,
    __doc__="The list parameters of a POST /stop filter (camelCase, as in the query string).",
    __module__=__name__,
    **_FILTER_FIELDS,
)
"""ListQuery's selecting fields: a field the list gains is a stop filter too."""


class SearchMessagesQuery(Query):
    """Query parameters of ``GET /search/messages``."""

    q: str = Field(
        min_length=1,
        max_length=200,
        description="The words to find, all in one message (any case; a word ending "
        "in * is a prefix: ref* finds Refund)",
    )
    chatbot_id: str | None = Field(None, min_length=1, description="Only this chatbot")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, min_length=1, description="nextCursor of the previous page")


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


class StopManyBody(_Model):
    """The JSON body of ``POST /stop``: ``ids``, or a ``filter`` of list parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ids: list[Annotated[str, Field(pattern=UUID_PATTERN)]] | None = Field(
        None, max_length=MAX_STOPS, description=f"Session ids, at most {MAX_STOPS}"
    )
    filter: StopFilter | None = Field(
        None,
        description="List parameters as in the query string of GET / (no paging or "
        f"sorting; at least one): the active sessions matching them, at most {MAX_STOPS}",
    )


class EraseBody(_Model):
    """The JSON body of ``POST /erase``: exactly one of ``phone``, ``conversationId`` and
    ``sessionId``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    phone: str | None = Field(
        None, min_length=1, max_length=64, description="The customer's phone number, as reported"
    )
    conversation_id: str | None = Field(
        None, min_length=1, max_length=200, description="The engine's conversation id"
    )
    session_id: str | None = Field(None, pattern=UUID_PATTERN, description="One session's id")


class AuditQuery(Query):
    """Query parameters of ``GET /audit``."""

    action: Literal["erase", "read"] | None = Field(None, description="Only these records")
    session_id: str | None = Field(
        None, pattern=UUID_PATTERN, description="The reads of this session, and its erasure"
    )
    limit: int = Field(100, ge=1, le=1000, description="At most this many, newest first")
    before: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Only records older than this record id"
    )


class AlertsQuery(Query):
    """Query parameters of ``GET /alerts``."""

    limit: int = Field(50, ge=1, le=500, description="At most this many, newest first")
    before: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Only alerts older than this alert id"
    )
    rule_id: str | None = Field(None, pattern=UUID_PATTERN, description="Only this rule's alerts")
    chatbot_id: str | None = Field(
        None, min_length=1, max_length=200, description="Only this chatbot's alerts"
    )


AlertKind = Literal["session_ended", "stuck", "node_rate"]
TargetType = Literal["webhook", "slack", "teams", "email"]


class AlertTargetBody(_Model):
    """A target of a new rule: ``url`` (webhook, slack, teams), ``secret`` (webhook; made
    when not given), ``to`` (email)."""

    model_config = ConfigDict(extra="forbid")

    type: TargetType
    url: str | None = Field(None, max_length=2000, description="An http(s) URL")
    secret: str | None = Field(None, min_length=16, max_length=200)
    to: list[str] | None = Field(None, min_length=1, max_length=20, description="E-mail addresses")


class AlertRuleBody(_Model):
    """The JSON body of ``POST /alerts/rules``. ``params`` by kind: ``statuses``,
    ``reasons`` (session_ended); ``status``, ``longerThan`` seconds (stuck); ``metric``
    (dropOff, error), ``threshold`` 0-1, ``window`` seconds (900 or more), ``minSessions``,
    ``nodeId``, ``version`` (node_rate, which needs chatbotIds)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: AlertKind
    chatbot_ids: list[str] | None = Field(None, max_length=100, description="Empty: every chatbot")
    params: dict[str, Any] | None = None
    targets: list[AlertTargetBody] | None = Field(None, max_length=10)


class AlertTarget(_Model):
    """A rule's target as listed: a chat webhook's URL shortened (it is the credential),
    a webhook's secret as its last four characters."""

    type: TargetType
    url: str | None = None
    secret_hint: str | None = None
    to: list[str] | None = None


class AlertRule(_Model):
    """An alert rule, defined in the host's code (``source`` code) or through the API."""

    id: str
    name: str
    kind: AlertKind
    chatbot_ids: list[str]
    params: dict[str, Any]
    targets: list[AlertTarget]
    source: Literal["code", "api"]
    created_by: str | None
    created_at: str | None
    updated_at: str | None


class AlertRuleCreated(AlertRule):
    """A new rule, with its webhook targets' secrets by position (``null`` for others):
    the only time they are returned."""

    secrets: list[str | None]


class AlertDelivery(_Model):
    """One target's delivery of an alert: pending (being retried), delivered or failed."""

    type: TargetType
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    error: str | None
    delivered_at: str | None


class Alert(_Model):
    """An alert a rule fired: ``link`` is the dashboard's route (``#/sessions/<id>``, or
    ``#/analytics?...`` for a node rate), ``url`` the same under the host's dashboard
    address when it configured one."""

    id: int
    rule_id: str
    kind: AlertKind
    chatbot_id: str
    session_id: str | None
    node_id: str | None
    title: str
    link: str
    url: str | None
    details: dict[str, Any]
    fired_at: str
    resolved_at: str | None
    deliveries: list[AlertDelivery]


ALERT_MODELS: tuple[type[BaseModel], ...] = (AlertRule, AlertRuleCreated, Alert)
"""The ``/alerts`` answers (built by sessiontrack.notify; these document them)."""


# --- /webhooks ------------------------------------------------------------------------------

_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
WEBHOOK_URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(:{_PORT})?(/[^\u0000-\u0020]*)?$"
"""An http(s) URL with a host (what ``check_url`` takes, narrowed to a plain host name)."""
EventName: Any = Literal.__getitem__(tuple(sorted(WIRE_NAMES.values())))


class WebhookBody(_Model):
    """The JSON body of ``POST /webhooks``; ``null`` is the default for any field but
    ``url``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=WEBHOOK_URL_PATTERN, description="An http(s) URL")
    events: list[EventName] | None = Field(
        None, max_length=100, description="The live event names delivered; empty: every event"
    )
    chatbot_ids: (
        list[Annotated[str, Field(min_length=1, max_length=200, pattern="^[^\\u0000]*$")]] | None
    ) = Field(None, max_length=100, description="The chatbots delivered; empty: every chatbot")
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        pattern="^[\\u0020-\\u007e]*$",
        description="The signing secret (printable); made (whsec_...) when not given",
    )
    batch: int | None = Field(None, ge=1, le=MAX_BATCH, description="Events per POST at the most")
    description: str | None = Field(None, max_length=500, pattern="^[^\\u0000]*$")


class Webhook(_Model):
    """A webhook subscription as listed: the secret only as its last four characters;
    ``cursor`` the sequence number of the last event delivered (or filtered out), ``lag``
    the events committed after it (of every kind)."""

    id: str
    url: str
    description: str
    events: list[EventName]
    chatbot_ids: list[str]
    batch: int
    state: Literal["active", "paused"]
    paused_reason: str | None
    failures: int
    created_by: str | None
    created_at: str
    updated_at: str
    secret_hint: str
    cursor: int | None
    lag: int | None


class WebhookCreated(Webhook):
    """A new subscription with its secret: the only time it is returned."""

    secret: str


class WebhookDelivery(_Model):
    """One delivery attempt: ``statusCode`` is null when no answer came, ``error`` null
    for a success."""

    id: int
    webhook_id: str
    at: str
    first_seq: int
    last_seq: int
    events: int
    attempt: int
    status_code: int | None
    latency_ms: float
    error: str | None


class DeliveriesQuery(Query):
    """Query parameters of ``GET /webhooks/{webhookId}/deliveries``."""

    limit: int = Field(50, ge=1, le=1000, description="At most this many, newest first")


WEBHOOK_MODELS: tuple[type[BaseModel], ...] = (Webhook, WebhookCreated, WebhookDelivery)
"""The ``/webhooks`` answers (built by sessiontrack.notify; these document them)."""


DATE_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)
TZ_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
_DATE_HELP = (
    "An ISO date (a whole local day in tz) or an ISO datetime (without an offset: in tz), "
    "floored to the quarter-hour; "
)


class VersionsQuery(Query):
    """Query parameters of ``GET /analytics/versions``."""

    chatbot_id: str = Field(min_length=1, description="The chatbot")


class AnalyticsQuery(VersionsQuery):
    """Query parameters of ``GET /analytics/summary`` and ``/analytics/nodes``."""

    version: str | None = Field(
        None,
        min_length=1,
        description="A flow version, or all (every version); default the chatbot's current one",
    )
    start_date: str | None = Field(
        None,
        pattern=DATE_PATTERN,
        description=_DATE_HELP + "sessions started from it on (default: 6 days before today)",
    )
    end_date: str | None = Field(
        None,
        pattern=DATE_PATTERN,
        description=_DATE_HELP + "a date includes that day (default: today); at most 400 days",
    )
    tz: str = Field(
        "UTC", min_length=1, max_length=64, pattern=TZ_PATTERN, description="IANA time zone"
    )
    format: Literal["json", "csv"] = Field("json", description="json, or csv (text/csv)")


class PathsQuery(AnalyticsQuery):
    """Query parameters of ``GET /analytics/paths``."""

    limit: int = Field(20, ge=1, le=100, description="The most frequent this many paths")


class FunnelQuery(AnalyticsQuery):
    """Query parameters of ``GET /analytics/funnel``."""

    steps: str = Field(min_length=1, description="1 to 20 node ids, comma-separated, in order")


NOT_EXPORTED = ("limit", "offset", "cursor")
"""List parameters ``GET /export`` refuses: it streams every matching session."""


class ExportQuery(ListQuery):
    """Query parameters of ``GET /export``: the list parameters but paging, and ``format``.

    A subclass, so that every list parameter and its checks apply to the export as well."""

    format: Literal["jsonl", "csv"] = Field(
        "jsonl", description="jsonl (one session detail a line) or csv (one list item a row)"
    )

    @field_validator(*NOT_EXPORTED, mode="before")
    @classmethod
    def _no_paging(cls, value: Any) -> Any:
        raise ValueError("an export has no pages: it streams every matching session")


# --- responses: derived from the dataclasses of sessiontrack.models --------------------


@dataclasses.dataclass(frozen=True)
class Derived:
    """How a response model was made from a dataclass: every dataclass field is on the
    wire except ``hidden``; ``computed`` are dataclass properties added to it."""

    source: type
    model: type[BaseModel]
    hidden: frozenset[str]
    computed: frozenset[str]


DERIVED: list[Derived] = []


def _derive(
    source: type,
    name: str,
    *,
    doc: str | None = None,
    base: type[_Model] = _Model,
    narrow: Mapping[str, Any] | None = None,
    hidden: frozenset[str] = frozenset(),
    computed: Mapping[str, Any] | None = None,
) -> Any:
    """A response model with one required field per field of dataclass ``source`` that
    ``base`` lacks, typed as the dataclass types it unless ``narrow`` says otherwise (an enum
    for a status, the wire model of a nested dataclass). ``narrow`` values are a type or a
    ``(type, FieldInfo)`` pair. Typed ``Any``: mypy cannot see fields made at run time."""
    hints = typing.get_type_hints(source)
    narrow = narrow or {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(source):
        if f.name in hidden or f.name in base.model_fields:
            continue
        wanted = narrow.get(f.name, hints[f.name])
        fields[f.name] = wanted if isinstance(wanted, tuple) else (wanted, ...)
    fields.update({k: (v, ...) for k, v in (computed or {}).items()})
    model = pydantic.create_model(name, __base__=base, __doc__=doc, __module__=__name__, **fields)
    inherited = [d.computed for d in DERIVED if d.model is base]
    DERIVED.append(Derived(source, model, hidden, frozenset(computed or ()).union(*inherited)))
    return model


def _list_of(model: Any) -> Any:
    return types.GenericAlias(list, (model,))  # list[model], for a model made at run time


Session = _derive(
    models.SessionSummary,
    "Session",
    doc="A session as it appears in lists.",
    narrow={"status": Status},
    computed={"is_active": bool},
)
NodeExecution = _derive(models.NodeExecution, "NodeExecution")
NodeTotals = _derive(
    models.NodeTotals,
    "NodeTotals",
    doc="One node's executions and the LLM and tool calls made in it.",
)
LLMCall = _derive(
    models.LLMCall, "LLMCall", doc="A call to a language model; ``seq`` is its sequence number."
)
ToolCall = _derive(
    models.ToolCall,
    "ToolCall",
    doc="A tool call; ``arguments`` and ``result`` are any JSON value, as reported.",
)
Message = _derive(
    models.Message,
    "Message",
    doc="A message; ``id`` is its event sequence number (use it as ``before``).",
    narrow={"direction": Direction},
    # the channel's own id is for engines correlating deliveries, not for dashboards
    hidden=frozenset({"channel_message_id"}),
)


class FlowData(_Model):
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


SessionDetail = _derive(
    models.SessionDetail,
    "SessionDetail",
    doc="A session with its history, variables, newest messages and the flow it ran.",
    base=Session,
    narrow={
        "node_executions": _list_of(NodeExecution),
        "messages": _list_of(Message),
        "flow_data": FlowData,
        "node_totals": _list_of(NodeTotals),
        "llm_call_history": _list_of(LLMCall),
        "tool_call_history": _list_of(ToolCall),
    },
    # the engine's metadata is free-form and may hold anything: not served
    hidden=frozenset({"metadata"}),
)
SessionPage = _derive(
    models.Page,
    "SessionPage",
    narrow={
        "data": _list_of(Session),
        "next_cursor": (
            str | None,
            Field(None, description="Pass as cursor for the next page (cost independent of depth)"),
        ),
        "total_exact": (
            bool,
            Field(
                True,
                description="false: more than total sessions match the advanced filters "
                "(they count 1,000 at most)",
            ),
        ),
    },
)
Stats = _derive(models.Stats, "Stats")
MessageMatch = _derive(
    models.MessageMatch,
    "MessageMatch",
    doc="A message a search found; highlights are [start, end) ranges of the matched "
    "words in text, in Unicode code points.",
    narrow={"direction": Direction},
)
MessageSearchPage = _derive(
    models.MessageSearchPage,
    "MessageSearchPage",
    narrow={
        "data": _list_of(MessageMatch),
        "next_cursor": (
            str | None,
            Field(None, description="Pass as cursor for the next page; null on the last"),
        ),
    },
)


class Chatbot(_Model):
    id: str
    name: str


StopManyResult = _derive(
    models.StopManyResult,
    "StopManyResult",
    doc="What POST /stop did: session ids stopped, already ended, and not found.",
)

ErasureResult = _derive(
    models.ErasureResult,
    "ErasureResult",
    doc="What POST /erase removed (row counts) and the id of its audit record.",
)
AuditRecord = _derive(
    models.AuditRecord,
    "AuditRecord",
    doc="An erasure (keyKind, keyHash: HMAC-SHA256 of the key, counts) or a recorded read "
    "(sessionId, what).",
)


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


# --- analytics answers (plain dicts from tracker.analytics; these document them) -------


class _Answer(_Model):
    model_config = ConfigDict(extra="forbid")


Number = float | None
"""A figure that is ``null`` when there is nothing to count."""


class _Range(_Answer):
    chatbot_id: str
    version: str = Field(description="The version answered for, or all")
    start_date: AwareDatetime = Field(description="Start of the half-open range, in tz")
    end_date: AwareDatetime = Field(description="End of the half-open range, in tz")
    tz: str


class HistogramBucket(_Answer):
    le: int | None = Field(description="Upper bound in seconds; null for the last bucket")
    sessions: int


class Duration(_Answer):
    mean: Number
    p50: Number
    p90: Number
    p99: Number
    histogram: list[HistogramBucket] = Field(description="Ended sessions by duration")


class MessageFigures(_Answer):
    mean: Number
    p50: Number
    p90: Number


class Mean(_Answer):
    mean: Number


class P50(_Answer):
    p50: Number


class P50P90(_Answer):
    p50: Number
    p90: Number


class Tokens(_Answer):
    input: int
    output: int


class Day(_Answer):
    date: datetime.date
    started: int
    completed: int
    expired: int
    stopped: int


class AnalyticsSummary(_Range):
    """Sessions started in the range (seconds; rates 0..1)."""

    sessions: int
    active: int
    by_status: dict[str, int]
    by_reason: dict[str, int]
    completion_rate: Number
    duration: Duration
    messages: MessageFigures
    nodes: Mean
    tokens: Tokens
    cost: float
    daily: list[Day]


class Exits(_Answer):
    completed: int
    expired: int
    stopped: int
    active: int


class NodeFigures(_Answer):
    node_id: str
    label: str | None
    type: str | None
    sessions: int
    visits: int
    exits: Exits
    drop_off_rate: Number
    bot_time: P50P90 = Field(description="Milliseconds")
    wait_time: P50P90 = Field(description="Milliseconds")
    errors: int


class EdgeFigures(_Answer):
    source: str
    target: str
    sessions: int
    share: Number


class AnalyticsNodes(_Range):
    """Per node and edge of the flow (times at nodes in milliseconds)."""

    sessions: int
    flow_data: FlowData
    nodes: list[NodeFigures]
    edges: list[EdgeFigures]


class PathFigures(_Answer):
    nodes: list[str]
    sessions: int
    share: Number
    completion_rate: Number
    duration: P50 = Field(description="Seconds")


class AnalyticsPaths(_Range):
    """The most frequent paths, most sessions first."""

    sessions: int
    paths: list[PathFigures]


class StepTime(_Answer):
    p50: Number
    sessions: int = Field(
        description="Sessions the median is of: the newest 5,000 at the most (the step's "
        "sessions count them all)"
    )


class StepFigures(_Answer):
    node_id: str
    label: str | None
    sessions: int
    conversion: Number
    overall: Number
    time_from_previous: StepTime = Field(description="Seconds")


class AnalyticsFunnel(_Range):
    """Sessions reaching each step in order."""

    sessions: int
    steps: list[StepFigures]


class VersionFigures(_Answer):
    version: str
    registered_at: AwareDatetime | None
    sessions: int


class AnalyticsVersions(_Answer):
    """A chatbot's flow versions, newest first."""

    chatbot_id: str
    current: str | None
    versions: list[VersionFigures]


# --- rendering ----------------------------------------------------------------------------

_FREE_FORM: tuple[Any, ...] = (
    dict[str, Any],
    dict[str, Any] | None,
    list[dict[str, Any]],
    Any,
)
"""Field types holding the engine's own JSON (variables, payloads, flow graphs, tool
arguments and results)."""


def dump(model: BaseModel) -> Any:
    """The JSON of an answer. Free-form JSON is copied as stored rather than walked by
    pydantic, whose serializer gives up at 255 levels: nothing the hooks accepted may
    make a read fail."""
    spec = _free_form(type(model))
    body = model.model_dump(mode="json", by_alias=True, exclude=spec or None)
    return _put_back(model, body, spec) if spec else body


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@functools.cache
def _free_form(cls: type[BaseModel]) -> dict[str, Any]:
    """Where free-form fields sit in ``cls``, as a pydantic ``exclude`` specification."""
    spec: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        annotation: Any = field.annotation
        args = typing.get_args(annotation)
        if annotation in _FREE_FORM:
            spec[name] = True
        elif _is_model(annotation) and (inner := _free_form(annotation)):
            spec[name] = inner
        elif (
            typing.get_origin(annotation) is list
            and _is_model(args[0])
            and (inner := _free_form(args[0]))
        ):
            spec[name] = {"__all__": inner}
    return spec


def _put_back(model: BaseModel, body: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the excluded fields back in place, in the model's field order."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        inner, value = spec.get(name), getattr(model, name)
        if inner is None:
            out[key] = body[key]
        elif inner is True:
            out[key] = value
        elif "__all__" in inner:
            items = zip(value, body[key], strict=True)
            out[key] = [_put_back(v, b, inner["__all__"]) for v, b in items]
        else:
            out[key] = _put_back(value, body[key], inner)
    return out


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Session,
    SessionDetail,
    SessionPage,
    Message,
    Stats,
    MessageMatch,
    MessageSearchPage,
    Chatbot,
    StopResult,
    StopManyResult,
    ErasureResult,
    AuditRecord,
    Error,
    AnalyticsSummary,
    AnalyticsNodes,
    AnalyticsPaths,
    AnalyticsFunnel,
    AnalyticsVersions,
)
