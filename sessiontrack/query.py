"""The query service (``tracker.sessions``): every read of session data goes through it.

Its methods mirror the HTTP routes; the HTTP layer only translates. Arguments are checked
here and a bad one raises :class:`~sessiontrack.errors.InvalidParameter` naming it. A
``principal`` limited to some chatbots sees only those: lists are filtered, and other
sessions are "not found".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ._ids import normalize_session_id
from .abc import Store
from .errors import InvalidParameter, SessionNotFound
from .models import (
    Message,
    MessageMatch,
    MessageSearchPage,
    Page,
    Principal,
    SessionDetail,
    SessionSummary,
    Stats,
)
from .status import ACTIVE_STATUSES, ALL_STATUSES, TERMINAL_STATUSES
from .store import ExportOrder, SessionFilter
from .store._filters import JsonScalar, VariableTest
from .store._search import MAX_TERMS, highlights, terms

FILTER_GROUPS: dict[str, frozenset[str] | None] = {
    "all": None,
    "active": ACTIVE_STATUSES,
    "completed": TERMINAL_STATUSES,
}
SORT_FIELDS = {
    "startedAt": "started_at",
    "started_at": "started_at",
    "updatedAt": "updated_at",
    "updated_at": "updated_at",
}
MAX_LIMIT = 100
MAX_VARIABLES = 10
"""At most this many ``variable`` tests in one list query."""
COUNT_LIMIT = 1000
"""A list with advanced filters counts this many matches at most (``SessionQueries``'
``count_limit``): past it the page has ``total`` = the limit and ``total_exact=False``
(``totalExact: false``). Counting them all would read every match."""
_SURROGATE = re.compile("[\ud800-\udfff]")

# Aliases: inside the class, ``list`` names the query method, not the builtin.
SummaryList = list[SessionSummary]
MessageList = list[Message]
ChatbotList = list[dict[str, Any]]
IdList = list[str]


class SessionQueries:
    """Reads sessions, messages and statistics from a store."""

    def __init__(self, store: Store, *, count_limit: int = COUNT_LIMIT) -> None:
        self._store = store
        self._count_limit = count_limit

    async def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        filter: str | None = None,
        chatbot_id: str | None = None,
        conversation_id: str | None = None,
        search: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        sort_by: str = "startedAt",
        sort_order: str = "DESC",
        limit: int = 20,
        offset: int = 0,
        cursor: str | None = None,
        path: str | Sequence[str] | None = None,
        version: str | None = None,
        node_id: str | None = None,
        completion_reason: str | None = None,
        min_messages: int | None = None,
        max_messages: int | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        has_error: bool | None = None,
        variable: str | Sequence[str] | None = None,
        now: datetime | None = None,
        q: str | None = None,
        principal: Principal | None = None,
    ) -> Page[SessionSummary]:
        """A page of sessions, newest first by default.

        ``status`` is one status or several; ``filter`` is a group (``all``, ``active``,
        ``completed`` — the last meaning any terminal status); both narrow the result.
        ``search`` matches a case-insensitive substring of the customer's name or phone
        (the name only, for a principal without ``can_see_pii``).
        ``cursor`` (the ``next_cursor`` of the previous page) continues with a keyset query
        whose cost does not grow with depth; it must be used with the same sort.
        ``path`` (node ids, a list or comma-separated; needs ``chatbot_id``) keeps the
        sessions whose current path through the flow is exactly that, as
        ``tracker.analytics.paths`` lists them. ``version`` (a flow version name) keeps the
        sessions that started with that version of their chatbot's flow (``flow_version``):
        with ``path``, the sessions of one version's path, as the paths report counts them.

        The advanced filters (see docs/http-api.md): ``node_id`` keeps the sessions that
        executed that node at least once; ``completion_reason`` the ones that ended with
        that reason; ``min_messages``/``max_messages`` bound ``message_count``;
        ``min_duration``/``max_duration`` (seconds, inclusive) bound the duration,
        ``completed_at - started_at`` once ended and ``now - started_at`` while active
        (``now`` defaults to the current time); ``has_error`` keeps the sessions with (or,
        ``False``, without) an error in a node, LLM call or tool call; ``variable``
        (``name:value``, one or a list: all must hold) keeps the sessions whose top-level
        variable ``name`` equals ``value``: a quoted JSON string matches only that string;
        a JSON number, ``true``, ``false`` or ``null`` matches that value or the same text
        as a string; anything else matches that text.

        ``q`` keeps the sessions with a message whose text has every word of it (a word
        ending in ``*`` is a prefix: ``refund*`` finds "Refunds"), as
        :meth:`search_messages` finds messages.
        """
        sort_col = SORT_FIELDS.get(sort_by) if isinstance(sort_by, str) else None
        if sort_col is None:
            raise InvalidParameter(
                "sortBy", f"must be one of startedAt, updatedAt, got {sort_by!r}"
            )
        order = str(sort_order).upper()
        if order not in ("ASC", "DESC"):
            raise InvalidParameter("sortOrder", f"must be ASC or DESC, got {sort_order!r}")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidParameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidParameter("offset", "must be a non-negative integer")
        cursor = _text(cursor, "cursor")
        after = _decode_cursor(cursor, sort_col, order) if cursor else None
        f = self.session_filter(
            status=status,
            filter=filter,
            chatbot_id=chatbot_id,
            conversation_id=conversation_id,
            search=search,
            start_date=start_date,
            end_date=end_date,
            path=path,
            version=version,
            node_id=node_id,
            completion_reason=completion_reason,
            min_messages=min_messages,
            max_messages=max_messages,
            min_duration=min_duration,
            max_duration=max_duration,
            has_error=has_error,
            variable=variable,
            now=now,
            q=q,
            principal=principal,
        )
        items, total, more = await self._store.list_sessions(
            f,
            sort_by=sort_col,
            descending=order == "DESC",
            limit=limit,
            offset=0 if after else offset,
            after=after,
        )
        next_cursor = _encode_cursor(items[-1], sort_col, order) if more and items else None
        capped = f.advanced and f.count_limit is not None and total > f.count_limit
        return Page(
            data=items,
            total=self._count_limit if capped else total,
            total_exact=not capped,
            limit=limit,
            offset=offset,
            has_next=more,
            has_previous=offset > 0 or after is not None,
            next_cursor=next_cursor,
        )

    def session_filter(
        self,
        *,
        status: str | Iterable[str] | None = None,
        filter: str | None = None,
        chatbot_id: str | None = None,
        conversation_id: str | None = None,
        search: str | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        path: str | Sequence[str] | None = None,
        version: str | None = None,
        node_id: str | None = None,
        completion_reason: str | None = None,
        min_messages: int | None = None,
        max_messages: int | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        has_error: bool | None = None,
        variable: str | Sequence[str] | None = None,
        now: datetime | None = None,
        q: str | None = None,
        principal: Principal | None = None,
    ) -> SessionFilter:
        """The validated filter of :meth:`list`'s filter arguments (all but paging and
        sort), limited to the chatbots ``principal`` may see: what :meth:`list`,
        :meth:`export` and bulk operations select sessions with."""
        start_date = _utc(start_date, "startDate")
        end_date = _utc(end_date, "endDate")
        conversation_id = _text(conversation_id, "conversationId")
        version = _text(version, "version")
        search = _text(search, "search")
        return SessionFilter(
            statuses=_statuses(status, filter),
            chatbot_ids=_chatbots(chatbot_id, principal),
            conversation_id=conversation_id or None,
            search=search.strip() or None if search else None,
            # who may not see phone numbers may not find them digit by digit either
            search_phones=principal is None or principal.can_see_pii,
            start=start_date,
            end=end_date,
            path_keys=_path_keys(path, chatbot_id),
            version=version or None,
            count_limit=self._count_limit,
            **_advanced(
                node_id=node_id,
                completion_reason=completion_reason,
                min_messages=min_messages,
                max_messages=max_messages,
                min_duration=min_duration,
                max_duration=max_duration,
                has_error=has_error,
                variable=variable,
                now=now,
            ),
            words=_words(q),
        )

    def export(
        self,
        *,
        format: str = "jsonl",
        sort_by: str = "startedAt",
        sort_order: str = "DESC",
        principal: Principal | None = None,
        mask: Callable[[str], str | None] | None = None,
        progress: Callable[[int], None] | None = None,
        on_batch: Callable[[IdList], Awaitable[None]] | None = None,
        metadata: bool = True,
        **filters: Any,
    ) -> AsyncIterator[bytes]:
        """Every session matching ``filters`` (the arguments of :meth:`session_filter`),
        as a stream of bytes: ``jsonl``, one session's whole detail a line (every message,
        node execution and call), or ``csv``, one list item a row plus ``durationSeconds``.
        See docs/export.md for both formats.

        The arguments are checked now (:class:`~sessiontrack.errors.InvalidParameter`);
        the stream reads the store in keyset batches as it is consumed, so its memory is
        one batch's. For a ``principal`` without ``can_see_pii``, phone numbers go through
        ``mask`` (default: left out). ``progress`` gets the running count of sessions
        written, ``on_batch`` each batch's session ids before it is sent. ``metadata=False``
        leaves the engine's ``metadata`` out of the JSON Lines (the HTTP API never serves
        it; an import then gives every session empty metadata).
        """
        from . import _export

        if format not in _export.FORMATS:
            raise InvalidParameter("format", f"must be jsonl or csv, got {format!r}")
        sort_col = SORT_FIELDS.get(sort_by) if isinstance(sort_by, str) else None
        if sort_col is None:
            raise InvalidParameter(
                "sortBy", f"must be one of startedAt, updatedAt, got {sort_by!r}"
            )
        order = str(sort_order).upper()
        if order not in ("ASC", "DESC"):
            raise InvalidParameter("sortOrder", f"must be ASC or DESC, got {sort_order!r}")
        f = self.session_filter(principal=principal, **filters)
        masking: Callable[[str], str | None] | None = None
        if principal is not None and not principal.can_see_pii:
            masking = mask or _hidden
        stream = _export.csv_stream if format == "csv" else _export.jsonl_stream
        return stream(
            self._store,
            f,
            ExportOrder(sort_by=sort_col, descending=order == "DESC"),
            mask=masking,
            progress=progress,
            on_batch=on_batch,
            metadata=metadata,
        )

    async def search_messages(
        self,
        q: str,
        *,
        chatbot_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        principal: Principal | None = None,
    ) -> MessageSearchPage:
        """Messages whose text has every word of ``q`` (case-insensitive whole words; a
        word ending in ``*`` is a prefix: ``ref*`` finds "Refund"), newest first, with the
        ranges of the matched words; a query of punctuation only finds nothing. ``cursor`` (the
        ``next_cursor`` of the previous page) continues.
        A principal limited to some chatbots finds only their messages."""
        words = _words(q)
        if words is None:
            raise InvalidParameter("q", "is required: the words to find")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidParameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        cursor = _text(cursor, "cursor")
        before = _decode_search_cursor(cursor) if cursor else None
        if not words:
            return MessageSearchPage(data=[])
        hits = await self._store.search_messages(
            list(words),
            chatbot_ids=_chatbots(chatbot_id, principal),
            limit=limit + 1,
            before=before,
        )
        data = [
            MessageMatch(
                session_id=h.session_id,
                message_id=h.seq,
                chatbot_id=h.chatbot_id,
                direction=h.data["direction"],
                timestamp=h.at,
                text=h.data.get("text"),
                highlights=highlights(h.data.get("text"), list(words)),
            )
            for h in hits[:limit]
        ]
        more = len(hits) > limit
        return MessageSearchPage(
            data=data, next_cursor=_encode_search_cursor(data[-1].message_id) if more else None
        )

    async def active(
        self,
        *,
        chatbot_id: str | None = None,
        principal: Principal | None = None,
        limit: int = 1000,
    ) -> SummaryList:
        """Active sessions (running or waiting), most recently updated first."""
        items, _, _ = await self._store.list_sessions(
            SessionFilter(statuses=ACTIVE_STATUSES, chatbot_ids=_chatbots(chatbot_id, principal)),
            sort_by="updated_at",
            descending=True,
            limit=limit,
            offset=0,
            after=None,
        )
        return items

    async def completed(self, /, **kwargs: Any) -> Page[SessionSummary]:
        """Like :meth:`list` with ``filter="completed"`` (any terminal status)."""
        return await self.list(filter="completed", **kwargs)

    async def by_chatbot(self, /, chatbot_id: str, **kwargs: Any) -> Page[SessionSummary]:
        """Like :meth:`list` for one chatbot."""
        return await self.list(chatbot_id=chatbot_id, **kwargs)

    async def get(
        self,
        session_id: str,
        *,
        principal: Principal | None = None,
        message_limit: int = 100,
        call_limit: int | None = 100,
    ) -> SessionDetail:
        """A session's detail with its newest ``message_limit`` messages and its newest
        ``call_limit`` LLM and tool calls of each kind (oldest first; ``None``: all). The
        totals and the per-node figures count every call."""
        sid = _session_id(session_id)
        detail = await self._store.get_session(
            sid, message_limit=message_limit, call_limit=call_limit
        )
        if detail is None or (principal is not None and not principal.may_see(detail.chatbot_id)):
            raise SessionNotFound(sid)
        return detail

    async def messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before: int | None = None,
        principal: Principal | None = None,
    ) -> MessageList:
        """Messages of a session, oldest first; ``limit`` and ``before`` (a message id)
        page backwards from the newest."""
        sid = _session_id(session_id)
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise InvalidParameter("limit", "must be a positive integer")
        if before is not None and (not isinstance(before, int) or before < 1):
            raise InvalidParameter("before", "must be a message id (a positive integer)")
        head = await self._store.session_head(sid)
        if head is None or (principal is not None and not principal.may_see(head[0])):
            raise SessionNotFound(sid)
        return await self._store.messages(sid, head[2], limit=limit, before=before)

    async def stats(
        self,
        *,
        principal: Principal | None = None,
        chatbot_id: str | None = None,
        now: datetime | None = None,
    ) -> Stats:
        """Active, completed since midnight UTC, total, and counts by status."""
        now = now or datetime.now(UTC)
        midnight = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
        return await self._store.stats(chatbot_ids=_chatbots(chatbot_id, principal), since=midnight)

    async def chatbots(self, *, principal: Principal | None = None) -> ChatbotList:
        """Registered chatbots the principal may see."""
        bots = await self._store.chatbots()
        return [b for b in bots if principal is None or principal.may_see(b["chatbot_id"])]


def _hidden(phone: str) -> None:
    return None


def _session_id(value: object) -> str:
    try:
        return normalize_session_id(value, "id")
    except (TypeError, ValueError) as exc:
        raise InvalidParameter("id", str(exc)) from None


def _statuses(status: str | Iterable[str] | None, group: str | None) -> frozenset[str] | None:
    chosen: frozenset[str] | None = None
    if status:
        wanted = frozenset(status.split(",") if isinstance(status, str) else status)
        unknown = wanted - ALL_STATUSES
        if unknown:
            raise InvalidParameter(
                "status",
                f"unknown status {sorted(unknown)[0]!r}; one of {', '.join(sorted(ALL_STATUSES))}",
            )
        chosen = wanted
    if group is not None:
        if group not in FILTER_GROUPS:
            raise InvalidParameter("filter", f"must be all, active or completed, got {group!r}")
        members = FILTER_GROUPS[group]
        if members is not None:
            chosen = members if chosen is None else chosen & members
    return chosen


def unfit_text(value: str) -> str | None:
    """Why a database cannot compare ``value``, or ``None``: PostgreSQL refuses NUL, and
    no driver can encode a lone surrogate (nor can HTTP carry one)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if _SURROGATE.search(value):
        return "must be valid UTF-8 text (no lone surrogates)"
    return None


def _text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(field, f"must be a string, got {type(value).__name__}")
    problem = unfit_text(value)
    if problem:
        raise InvalidParameter(field, problem)
    return value


def _words(q: str | None) -> tuple[str, ...] | None:
    """The words of a message query (``None`` for no query or a blank one)."""
    q = _text(q, "q")
    if q is None or not q.strip():
        return None
    words = terms(q)  # none (only punctuation): nothing matches
    if len(words) > MAX_TERMS:
        raise InvalidParameter("q", f"must have at most {MAX_TERMS} words")
    return tuple(words)


def _encode_search_cursor(message_id: int) -> str:
    raw = json.dumps(["m", message_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_search_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, message_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidParameter("cursor", "is not a cursor this API returned") from None
    if kind != "m" or type(message_id) is not int or not 1 <= message_id < 2**63:
        raise InvalidParameter("cursor", "is not a cursor this API returned")
    return message_id


def _utc(value: datetime | None, field: str) -> datetime | None:
    """An aware datetime in UTC; the extremes of ``datetime`` overflow on the way
    (``0001-01-01T00:00+14:00`` is in year 0), which no stored time can match anyway."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidParameter(field, "must be a timezone-aware datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidParameter(
            field, f"{value.isoformat()} is outside the years 1 to 9999 once converted to UTC"
        ) from None


def _chatbots(chatbot_id: str | None, principal: Principal | None) -> frozenset[str] | None:
    chatbot_id = _text(chatbot_id, "chatbotId")
    allowed = principal.chatbot_ids if principal is not None else None
    if chatbot_id:
        return frozenset({chatbot_id}) & allowed if allowed is not None else frozenset({chatbot_id})
    return allowed


def _path_keys(path: str | Sequence[str] | None, chatbot_id: str | None) -> frozenset[str] | None:
    """The ``an_traces.path_key`` values of a path: a path of exactly ``MAX_PATH`` nodes
    may also be the kept head of a longer one (the paths report lists both alike)."""
    if path is None:
        return None
    from .analytics._rollup import MAX_PATH, path_key

    nodes = path.split(",") if isinstance(path, str) else path
    if not chatbot_id:
        raise InvalidParameter("path", "needs chatbotId: a path runs through one chatbot's flow")
    if not isinstance(nodes, Sequence) or not nodes:
        raise InvalidParameter("path", "must be one node id or more")
    for node in nodes:
        if not isinstance(node, str) or not node:
            raise InvalidParameter("path", "must be node ids (non-empty text), comma-separated")
        problem = unfit_text(node)
        if problem:
            raise InvalidParameter("path", problem)
    if len(nodes) > MAX_PATH:
        raise InvalidParameter("path", f"must have at most {MAX_PATH} node ids")
    keys = {path_key(list(nodes))}
    if len(nodes) == MAX_PATH:
        keys.add(path_key(list(nodes), truncated=True))
    return frozenset(keys)


def _encode_cursor(last: SessionSummary, sort_col: str, order: str) -> str:
    value: datetime = getattr(last, sort_col)
    raw = json.dumps([sort_col, order, value.isoformat(), last.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort_col: str, order: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        col, cur_order, value, sid = json.loads(raw)
        when = datetime.fromisoformat(value)
        sid = normalize_session_id(sid)
        # We write UTC times: a naive one would be read as local time, a shifted one
        # could overflow on conversion.
        if when.utcoffset() != timedelta(0):
            raise ValueError(value)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidParameter("cursor", "is not a cursor this API returned") from None
    if (col, cur_order) != (sort_col, order):
        raise InvalidParameter("cursor", "was made for another sortBy/sortOrder")
    return when, sid


# --- the advanced filters ------------------------------------------------------------------


def _advanced(
    *,
    node_id: str | None,
    completion_reason: str | None,
    min_messages: int | None,
    max_messages: int | None,
    min_duration: float | None,
    max_duration: float | None,
    has_error: bool | None,
    variable: str | Sequence[str] | None,
    now: datetime | None,
) -> dict[str, Any]:
    """SessionFilter's advanced fields, checked (a bad one names its camelCase field)."""
    # a range whose maximum is below its minimum is valid and matches nothing
    low_m = _count(min_messages, "minMessages")
    high_m = _count(max_messages, "maxMessages")
    low_d = _seconds(min_duration, "minDuration")
    high_d = _seconds(max_duration, "maxDuration")
    if has_error is not None and not isinstance(has_error, bool):
        raise InvalidParameter("hasError", "must be true or false")
    now = _utc(now, "now")
    if now is None and (low_d is not None or high_d is not None):
        now = datetime.now(UTC)
    return {
        "node_id": _nonempty(node_id, "nodeId"),
        "completion_reason": _nonempty(completion_reason, "completionReason"),
        "min_messages": low_m,
        "max_messages": high_m,
        "min_duration": low_d,
        "max_duration": high_d,
        "now": now,
        "has_error": has_error,
        "variables": _variables(variable),
    }


def _nonempty(value: str | None, field: str) -> str | None:
    value = _text(value, field)
    if value == "":
        raise InvalidParameter(field, "must not be empty")
    return value


def _count(value: int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidParameter(field, f"must be an integer from 0 to {2**31 - 1}")
    return value


def _seconds(value: float | None, field: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= 10**10  # about 317 years: past any stored duration
    ):
        raise InvalidParameter(field, "must be a number of seconds from 0 to 10000000000")
    return float(value)


def _variables(value: str | Sequence[str] | None) -> tuple[VariableTest, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or len(items) > MAX_VARIABLES:
        raise InvalidParameter("variable", f"must be at most {MAX_VARIABLES} name:value tests")
    return tuple(_variable_test(item) for item in items)


def _variable_test(item: object) -> VariableTest:
    if not isinstance(item, str):
        raise InvalidParameter("variable", f"must be name:value text, got {type(item).__name__}")
    problem = unfit_text(item)
    if problem:
        raise InvalidParameter("variable", problem)
    name, colon, raw = item.partition(":")
    if not colon or not name:
        raise InvalidParameter("variable", f"must be name:value, got {item!r}")
    if '"' in name or "\\" in name or len(name) > 200:
        raise InvalidParameter(
            "variable", 'the name must be at most 200 characters, without " or \\'
        )
    return VariableTest(name, _json_candidates(raw))


def _json_candidates(raw: str) -> tuple[JsonScalar, ...]:
    """What ``raw`` matches: a quoted JSON string only itself; a JSON number (finite, within
    64 bits), ``true``, ``false`` or ``null`` that value or its text; else the text."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return (raw,)
    if isinstance(parsed, str):
        return (parsed,)
    if parsed is None or isinstance(parsed, bool):
        return (parsed, raw)
    if isinstance(parsed, int) and -(2**63) <= parsed < 2**63:
        return (parsed, raw)
    if isinstance(parsed, float) and math.isfinite(parsed):
        return (parsed, raw)
    return (raw,)
